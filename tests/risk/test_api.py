"""The risk endpoints on PostgreSQL with the paper venue: an account's limits, headroom and
evaluation; violations scoped to the caller; halt and resume by staff."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.domain import TradingState
from brokers.paper.models import VenueOrder
from orders import services as order_services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order
from risk.models import ProgramRules, Violation

pytestmark = pytest.mark.django_db


def rules(account, **figures) -> ProgramRules:  # type: ignore[no-untyped-def]
    row, _ = ProgramRules.objects.update_or_create(program=account.program, defaults=figures)
    return row


def buy(quantity: int = 1, symbol: str = "MES") -> OrderIntent:
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET)


def risk_url(account) -> str:  # type: ignore[no-untyped-def]
    return f"/api/v1/accounts/{account.pk}/risk/"


def violation(account, rule: str, trade_date: date) -> Violation:  # type: ignore[no-untyped-def]
    return Violation.objects.create(
        account=account,
        rule=rule,
        severity="soft",
        action="blocked",
        detail=f"{rule} on {trade_date}",
        trade_date=trade_date,
        occurred_at=timezone.now(),
    )


def room(body: dict, rule: str) -> Decimal:
    return Decimal(next(h for h in body["headroom"] if h["rule"] == rule)["room"])


# -- GET /accounts/{id}/risk/ -----------------------------------------------------------------------


def test_risk_shows_limits_headroom_and_evaluation_for_a_known_position(alice_account, alice_api, paper, commit):
    rules(
        alice_account,
        daily_loss_mode="soft",
        daily_loss_limit=Decimal("500"),
        drawdown_kind="static",
        drawdown_amount=Decimal("2000"),
        max_contracts=5,
        micro_weight=Decimal("0.1"),
        profit_target=Decimal("3000"),
        restricted_roots=["NQ"],
    )
    with commit():
        order_services.submit_order(account=alice_account, intent=buy(2), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "4990.00")  # 2 MES bought at 5000: -10 points x $5 x 2 = -100 open
    fees = Decimal("0.74")  # 0.37 a contract on the paper venue

    response = alice_api.get(risk_url(alice_account))

    assert response.status_code == 200
    body = response.json()
    assert Decimal(body["limits"]["daily_loss_limit"]) == Decimal("500") and body["limits"]["max_contracts"] == 5
    assert body["limits"]["restricted_roots"] == ["NQ"]
    assert room(body, "daily_loss") == Decimal("500") - Decimal("100") - fees
    assert room(body, "drawdown") == Decimal("50000") - fees - Decimal("100") - Decimal("48000")
    assert room(body, "max_contracts") == Decimal("4.8")
    assert Decimal(body["drawdown_floor"]) == Decimal("48000")
    assert Decimal(body["contracts_in_use"]) == Decimal("0.2")
    assert not any(h["breached"] for h in body["headroom"])
    assert body["evaluation"]["status"] == "in_progress"
    assert Decimal(body["evaluation"]["total_profit"]) == -fees
    assert body["evaluation"]["trading_days"] == 1
    assert Decimal(body["metrics"]["loss_buffer"]) == room(body, "daily_loss")
    assert body["metrics"]["active_violations"] == 0


def test_risk_of_someone_elses_account_is_404(alice_api, bob_account):
    response = alice_api.get(risk_url(bob_account))

    assert response.status_code == 404
    assert "headroom" not in response.json()


# -- GET /violations/ -------------------------------------------------------------------------------


def test_violations_list_only_the_callers_accounts(alice_account, bob_account, alice_api):
    today = date(2026, 11, 23)
    mine = violation(alice_account, "daily_loss", today)
    violation(bob_account, "drawdown", today)

    response = alice_api.get("/api/v1/violations/")
    by_account = alice_api.get(f"/api/v1/violations/?account={bob_account.pk}")

    assert response.status_code == 200
    assert [v["id"] for v in response.json()["results"]] == [mine.pk]
    assert by_account.json()["results"] == []


def test_violations_filter_by_rule_account_and_trade_date(alice_account, bob_account, staff_api):
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    a_daily = violation(alice_account, "daily_loss", monday)
    a_flat = violation(alice_account, "flat_by", tuesday)
    b_daily = violation(bob_account, "daily_loss", tuesday)

    def ids(query: str) -> set[int]:
        response = staff_api.get(f"/api/v1/violations/?{query}")
        assert response.status_code == 200
        return {v["id"] for v in response.json()["results"]}

    assert ids("") == {a_daily.pk, a_flat.pk, b_daily.pk}
    assert ids("rule=daily_loss") == {a_daily.pk, b_daily.pk}
    assert ids(f"account={alice_account.pk}") == {a_daily.pk, a_flat.pk}
    assert ids(f"trade_date={tuesday}") == {a_flat.pk, b_daily.pk}
    assert ids(f"account={bob_account.pk}&rule=daily_loss&trade_date={tuesday}") == {b_daily.pk}
    assert ids(f"trade_date={tuesday + timedelta(days=1)}") == set()


# -- Halt and resume --------------------------------------------------------------------------------


def test_trader_cannot_halt_or_resume(alice_account, alice_api):
    halt = alice_api.post(f"/api/v1/accounts/{alice_account.pk}/halt/", {"reason": "mine"}, format="json")
    resume = alice_api.post(f"/api/v1/accounts/{alice_account.pk}/resume/", {"reason": "mine"}, format="json")

    assert halt.status_code == 403 and resume.status_code == 403
    alice_account.refresh_from_db()
    assert alice_account.trading_state == TradingState.ACTIVE
    assert alice_account.history.count() == 1  # only its creation


def test_halt_needs_a_reason(alice_account, staff_api):
    response = staff_api.post(f"/api/v1/accounts/{alice_account.pk}/halt/", {}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] and response.json()["field"] == "reason"
    alice_account.refresh_from_db()
    assert alice_account.trading_state == TradingState.ACTIVE


def test_staff_halt_records_reason_and_who_then_resume_lets_the_account_trade(
    alice_account, alice_api, staff, staff_api, paper, commit
):
    url = f"/api/v1/accounts/{alice_account.pk}"
    with commit():
        halted = staff_api.post(f"{url}/halt/", {"reason": "Copier misfire, checking fills"}, format="json")

    assert halted.status_code == 200 and halted.json()["trading_state"] == "halted"
    alice_account.refresh_from_db()
    assert alice_account.trading_state == TradingState.HALTED
    assert alice_account.trading_state_reason == "Copier misfire, checking fills"
    latest = alice_account.history.latest()
    assert latest.trading_state == TradingState.HALTED and latest.history_user == staff
    with commit():
        denied = alice_api.post(
            "/api/v1/orders/",
            {"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 1},
            format="json",
        )
    assert denied.status_code == 409 and denied.json()["code"] == "account_halted"
    assert Order.objects.get(pk=denied.json()["order"]).status == OrderStatus.DENIED

    with commit():
        resumed = staff_api.post(f"{url}/resume/", {"reason": "Fills match"}, format="json")

    assert resumed.status_code == 200
    alice_account.refresh_from_db()
    assert alice_account.trading_state == TradingState.ACTIVE and alice_account.trading_state_reason == "Fills match"
    latest = alice_account.history.latest()
    assert latest.trading_state == TradingState.ACTIVE and latest.history_user == staff
    with commit():
        placed = alice_api.post(
            "/api/v1/orders/",
            {"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 1},
            format="json",
        )
    assert placed.status_code == 201
    order = Order.objects.get(pk=placed.json()["id"])
    assert order.status == OrderStatus.FILLED
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
