"""Accounts API: money figures, scoping and flatten."""

from decimal import Decimal

import pytest

from brokers.paper.models import VenueOrder
from orders.models import Order, Position

pytestmark = pytest.mark.django_db


def buy(api, account, quantity=1, **extra):  # type: ignore[no-untyped-def]
    body = {"account": account.pk, "symbol": "MES", "side": "buy", "quantity": quantity, **extra}
    return api.post("/api/v1/orders/", body, format="json")


def test_account_figures_follow_fills_and_prices(alice_api, alice_account, paper, commit):
    with commit():
        buy(alice_api, alice_account, 2)
    with commit():
        paper.price("MESZ6", "5002.50")

    body = alice_api.get(f"/api/v1/accounts/{alice_account.pk}/").json()
    assert body["balance"] == "49999.26"
    assert body["unrealized_pnl"] == "25.00"  # 2 x 10 ticks x $1.25
    assert body["equity"] == "50024.26"
    assert (body["day_realized_pnl"], body["day_fees"], body["day_pnl"]) == ("0.00", "0.74", "24.26")
    assert body["status"] == "active" and body["trading_state"] == "active"
    assert [(p["symbol"], p["quantity"], p["unrealized_pnl"]) for p in body["positions"]] == [("MESZ6", 2, "25.00")]
    assert body["trade_date"]


def test_traders_list_only_their_accounts_and_staff_all(alice_api, staff_api, alice_account, bob_account):
    mine = alice_api.get("/api/v1/accounts/").json()
    assert [a["name"] for a in mine["results"]] == ["Alice 50K"]
    everyone = staff_api.get("/api/v1/accounts/").json()
    assert {a["name"] for a in everyone["results"]} == {"Alice 50K", "Bob 50K"}
    response = alice_api.get(f"/api/v1/accounts/{bob_account.pk}/")
    assert response.status_code == 404 and response.json()["code"] == "account_not_found"


def test_flatten_cancels_and_closes(alice_api, alice_account, commit):
    with commit():
        buy(alice_api, alice_account, 3)
        buy(alice_api, alice_account, 1, type="limit", limit_price="4900")
    with commit():
        response = alice_api.post(f"/api/v1/accounts/{alice_account.pk}/flatten/")

    assert response.status_code == 202
    body = response.json()
    assert [o["type"] for o in body["canceled"]] == ["limit"]
    assert [(o["side"], o["quantity"], o["source"]) for o in body["closing"]] == [("sell", 3, "flatten")]
    assert Position.objects.get().quantity == 0
    assert not VenueOrder.objects.filter(status="working").exists()
    assert not Order.objects.filter(status__in=["new", "submitted", "accepted"]).exists()


def test_flatten_someone_elses_account_is_not_found(alice_api, bob_api, bob_account, commit):
    with commit():
        buy(bob_api, bob_account)
    response = alice_api.post(f"/api/v1/accounts/{bob_account.pk}/flatten/")
    assert response.status_code == 404
    assert Position.objects.get().quantity == 1


def test_me_names_the_caller(alice_api, alice):
    assert alice_api.get("/api/v1/me/").json() == {"id": alice.pk, "username": "alice", "is_staff": False}


def test_balance_is_decimal_exact_for_zn_ticks(alice_api, alice_account, paper, commit):
    with commit():
        paper.price("ZNH7", "112.000000")
    with commit():
        buy(alice_api, alice_account, 1, symbol="ZN")
    with commit():
        paper.price("ZNH7", "112.015625")  # one tick = $15.625
    with commit():
        alice_api.post(
            "/api/v1/orders/",
            {"account": alice_account.pk, "symbol": "ZN", "side": "sell", "quantity": 1},
            format="json",
        )
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") + Decimal("15.625") - 2 * Decimal("0.85")
