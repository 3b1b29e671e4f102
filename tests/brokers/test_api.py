"""Instruments API and the staff-only paper price control."""

import pytest

from brokers.market_data import get_last_price
from brokers.paper import venue
from orders.models import Order, Position

pytestmark = pytest.mark.django_db


def test_instruments_list_the_fourteen_cme_contracts(alice_api, paper):
    body = alice_api.get("/api/v1/instruments/", {"limit": 50}).json()
    by_root = {i["root"]: i for i in body["results"]}
    assert len(by_root) == 14
    assert (by_root["ES"]["tick_size"], by_root["ES"]["tick_value"], by_root["ES"]["point_value"]) == (
        "0.25",
        "12.5",
        "50",
    )
    assert (by_root["ZN"]["tick_size"], by_root["ZN"]["tick_value"]) == ("0.015625", "15.625")
    assert by_root["MES"]["size_class"] == "micro" and by_root["MES"]["mini_equivalent"] == "0.1"


def test_staff_price_moves_the_market_and_fills_working_orders(staff_api, alice_api, alice_account, commit):
    with commit():
        alice_api.post(
            "/api/v1/orders/",
            {
                "account": alice_account.pk,
                "symbol": "MES",
                "side": "buy",
                "quantity": 1,
                "type": "limit",
                "limit_price": "4995",
            },
            format="json",
        )
    with commit():
        response = staff_api.post("/api/v1/sim/prices/", {"symbol": "MES", "price": "4994.75"}, format="json")

    assert response.status_code == 200
    assert response.json() == {"symbol": "MESZ6", "price": "4994.75"}
    assert str(get_last_price("MESZ6")) == "4994.75"
    assert str(venue.market_price("MESZ6")) == "4994.75"
    assert Order.objects.get().status == "filled"
    assert Position.objects.get().quantity == 1


def test_traders_may_not_set_prices(alice_api, paper):
    response = alice_api.post("/api/v1/sim/prices/", {"symbol": "MES", "price": "4000"}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "staff_only"
    assert str(get_last_price("MESZ6")) == "5000.00"


def test_sim_prices_answer_404_when_the_paper_broker_is_disabled(staff_api, paper, settings):
    settings.PAPER_BROKER_ENABLED = False
    response = staff_api.post("/api/v1/sim/prices/", {"symbol": "MES", "price": "4000"}, format="json")
    assert response.status_code == 404
    assert str(get_last_price("MESZ6")) == "5000.00"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"symbol": "MES", "price": "5000.10"}, "price_off_tick"),
        ({"symbol": "MES", "price": "NaN"}, "invalid_price"),
        ({"symbol": "MES", "price": "-1"}, "invalid_price"),
        ({"symbol": "NOPE", "price": "1"}, "unknown_symbol"),
        ({"symbol": "MES"}, "missing_field"),
    ],
)
def test_bad_sim_prices_are_refused(staff_api, paper, body, code):
    response = staff_api.post("/api/v1/sim/prices/", body, format="json")
    assert response.status_code == 400 and response.json()["code"] == code
    assert str(get_last_price("MESZ6")) == "5000.00"


def test_paper_accounts_refuse_orders_when_the_paper_broker_is_disabled(alice_api, alice_account, settings):
    settings.PAPER_BROKER_ENABLED = False
    response = alice_api.post(
        "/api/v1/orders/", {"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 1}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "broker_unavailable" and "disabled" in response.json()["detail"]
    assert not Order.objects.exists()


def test_accounts_on_a_broker_without_an_adapter_refuse_orders(alice_api, alice_account):
    from brokers.models import BrokerConnection

    BrokerConnection.objects.filter(pk=alice_account.broker_connection_id).update(kind="tradovate")
    response = alice_api.post(
        "/api/v1/orders/", {"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 1}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["detail"] == "Orders cannot be sent to Tradovate connections yet."
    assert not Order.objects.exists()
