"""Pre-trade checks through orders.services.submit_order and POST /api/v1/orders/ on PostgreSQL
with the paper venue: every denied order is stored DENIED with all its denials and never reaches
the venue; allowed ones do."""

import functools
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from brokers.paper.models import VenueOrder, VenuePosition
from orders import services as order_services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, Position
from risk import services as risk_services
from risk.models import ProgramRules, TradingWindow

pytestmark = pytest.mark.django_db
CT = ZoneInfo("America/Chicago")
ORDERS_URL = "/api/v1/orders/"


def rules(account, **figures) -> ProgramRules:  # type: ignore[no-untyped-def]
    row, _ = ProgramRules.objects.update_or_create(program=account.program, defaults=figures)
    return row


def intent(symbol: str, quantity: int = 1, side: OrderSide = OrderSide.BUY, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=side, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def submit(commit, account, order: OrderIntent, source: OrderSource = OrderSource.API) -> Order:  # type: ignore[no-untyped-def]
    with commit():
        placed = order_services.submit_order(account=account, intent=order, source=source).order
    placed.refresh_from_db()
    return placed


def at_venue(order: Order) -> int:
    return VenueOrder.objects.filter(client_order_id=order.client_order_id).count()


def venue_quantity(account, symbol: str) -> int:  # type: ignore[no-untyped-def]
    row = VenuePosition.objects.filter(account__ref=account.broker_account_id, symbol=symbol).first()
    return row.quantity if row else 0


def assert_denied(order: Order, *rules_hit: str) -> None:
    assert order.status == OrderStatus.DENIED
    assert [d["rule"] for d in order.denials] == list(rules_hit)
    assert all(d["code"] and d["detail"] for d in order.denials)
    assert at_venue(order) == 0


# -- Maximum contracts ------------------------------------------------------------------------------


def test_max_contracts_counts_working_limit_orders_and_micros_as_a_tenth(alice_account, paper, commit):
    rules(alice_account, max_contracts=2, micro_weight=Decimal("0.1"))
    working = submit(
        commit, alice_account, OrderIntent("ES", OrderSide.BUY, 1, OrderType.LIMIT, limit_price=Decimal("4900.00"))
    )
    assert working.status == OrderStatus.ACCEPTED  # resting below the market, not filled

    ten_micros = submit(commit, alice_account, intent("MES", 10))  # 1 ES working + 10 x 0.1 = 2
    one_more = submit(commit, alice_account, intent("MES", 1))  # 2.1 > 2

    assert ten_micros.status == OrderStatus.FILLED and venue_quantity(alice_account, "MESZ6") == 10
    assert_denied(one_more, "max_contracts")
    assert "2.1" in one_more.denials[0]["detail"]


def test_max_contracts_counts_micros_as_one_when_weight_is_one(alice_account, paper, commit):
    rules(alice_account, max_contracts=2, micro_weight=Decimal("1"))
    submit(commit, alice_account, OrderIntent("ES", OrderSide.BUY, 1, OrderType.LIMIT, limit_price=Decimal("4900.00")))

    first = submit(commit, alice_account, intent("MES", 1))
    second = submit(commit, alice_account, intent("MES", 1))

    assert first.status == OrderStatus.FILLED
    assert_denied(second, "max_contracts")
    assert venue_quantity(alice_account, "MESZ6") == 1


def test_max_contracts_lets_a_close_through_when_at_the_limit(alice_account, paper, commit):
    rules(alice_account, max_contracts=1, micro_weight=Decimal("1"))
    submit(commit, alice_account, intent("MES", 1))
    rules(alice_account, max_contracts=0)  # tightened while holding

    with commit():
        closing = order_services.close_position(position=Position.objects.get(account=alice_account))

    closing.refresh_from_db()
    assert closing.status == OrderStatus.FILLED
    assert venue_quantity(alice_account, "MESZ6") == 0


# -- Products and automation ------------------------------------------------------------------------


def test_restricted_product_denied_with_422_and_stored_denials(alice_account, alice_api, paper, commit):
    rules(alice_account, restricted_roots=["NQ"])

    with commit():
        response = alice_api.post(
            ORDERS_URL, {"account": alice_account.pk, "symbol": "NQ", "side": "buy", "quantity": 1}, format="json"
        )

    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "risk_denied"
    assert [(d["rule"], d["code"]) for d in body["denials"]] == [("product", "product_not_allowed")]
    assert "NQ" in body["denials"][0]["detail"]
    order = Order.objects.get(pk=body["order"])
    assert_denied(order, "product")
    assert order.denials == body["denials"]
    # Another product still trades.
    allowed = submit(commit, alice_account, intent("ES"))
    assert allowed.status == OrderStatus.FILLED and venue_quantity(alice_account, "ESZ6") == 1


def test_every_denial_listed_when_an_order_breaks_several_rules(alice_account, alice_api, paper, commit):
    rules(
        alice_account,
        restricted_roots=["ES"],
        max_contracts=1,
        daily_loss_mode="soft",
        daily_loss_limit=Decimal("100"),
        adverse_move_ticks=20,
    )

    with commit():
        response = alice_api.post(
            ORDERS_URL, {"account": alice_account.pk, "symbol": "ES", "side": "buy", "quantity": 2}, format="json"
        )

    assert response.status_code == 422
    body = response.json()
    rules_hit = ["product", "max_contracts", "worst_case_loss"]
    assert body["code"] == "risk_denied" and [d["rule"] for d in body["denials"]] == rules_hit
    order = Order.objects.get(pk=body["order"])
    assert_denied(order, *rules_hit)
    assert order.reason.startswith(body["denials"][0]["detail"])


def test_automated_orders_denied_when_program_forbids_automation(alice_account, paper, commit):
    rules(alice_account, automation_allowed=False)

    by_hand = submit(commit, alice_account, intent("MES", 2), source=OrderSource.API)
    from_webhook = submit(commit, alice_account, intent("MES", 1), source=OrderSource.WEBHOOK)

    assert by_hand.status == OrderStatus.FILLED
    assert_denied(from_webhook, "automation")
    assert from_webhook.denials[0]["code"] == "automation_not_allowed"
    # An automated close still goes through: getting flat is always allowed.
    with commit():
        closing = order_services.close_position(
            position=Position.objects.get(account=alice_account), source=OrderSource.WEBHOOK
        )
    closing.refresh_from_db()
    assert closing.status == OrderStatus.FILLED
    assert Position.objects.get(account=alice_account).quantity == 0
    assert venue_quantity(alice_account, "MESZ6") == 0


# -- Worst-case loss ----------------------------------------------------------------------------


def test_order_without_stop_denied_when_adverse_move_would_break_daily_limit(alice_account, paper, commit):
    rules(alice_account, daily_loss_mode="soft", daily_loss_limit=Decimal("100"), adverse_move_ticks=20)

    es = submit(commit, alice_account, intent("ES"))  # 20 ticks x 12.50 = 250 >= 100
    mes = submit(commit, alice_account, intent("MES", 2))  # 20 x 1.25 x 2 = 50 < 100

    assert_denied(es, "worst_case_loss")
    detail = es.denials[0]["detail"]
    assert "250.00" in detail and "20-tick adverse move" in detail and "daily loss limit" in detail
    assert mes.status == OrderStatus.FILLED and venue_quantity(alice_account, "MESZ6") == 2


def test_order_without_stop_denied_when_adverse_move_would_reach_drawdown_floor(alice_account, paper, commit):
    rules(alice_account, drawdown_kind="static", drawdown_amount=Decimal("200"), adverse_move_ticks=20)

    es = submit(commit, alice_account, intent("ES"))  # 250 of loss against 200 of room
    mes = submit(commit, alice_account, intent("MES", 1))

    assert_denied(es, "worst_case_loss")
    assert "drawdown floor" in es.denials[0]["detail"] and "200.00" in es.denials[0]["detail"]
    assert mes.status == OrderStatus.FILLED


# -- Hours ------------------------------------------------------------------------------------------


def test_order_denied_outside_trading_windows_and_allowed_inside(alice_account, alice_api, paper, commit):
    rules(alice_account, time_zone="America/Chicago")
    now = timezone.now().astimezone(CT)
    other_day = (now.weekday() + 3) % 7
    window = TradingWindow.objects.create(
        program=alice_account.program, weekday=other_day, starts_at=time(9, 0), ends_at=time(10, 0)
    )

    with commit():
        response = alice_api.post(
            ORDERS_URL, {"account": alice_account.pk, "symbol": "MES", "side": "buy", "quantity": 1}, format="json"
        )

    assert response.status_code == 422
    assert [d["code"] for d in response.json()["denials"]] == ["outside_trading_hours"]
    assert_denied(Order.objects.get(pk=response.json()["order"]), "trading_hours")

    start = now - timedelta(hours=1)
    window.weekday, window.starts_at, window.ends_at = start.weekday(), start.time(), (now + timedelta(hours=1)).time()
    window.save()
    assert submit(commit, alice_account, intent("MES")).status == OrderStatus.FILLED


def test_order_denied_past_flat_by_but_close_allowed(alice_account, paper, commit, monkeypatch):
    rules(alice_account, flat_by=time(15, 10), time_zone="America/Chicago")
    submit(commit, alice_account, intent("MES", 2))
    # Monday 15:20 CT: past the flat-by time of trade date Monday. check_pre_trade reads the
    # clock through build_snapshots; give it this moment.
    late = datetime(2026, 11, 23, 15, 20, tzinfo=CT)
    monkeypatch.setattr(risk_services, "build_snapshots", functools.partial(risk_services.build_snapshots, now=late))

    opening = submit(commit, alice_account, intent("MES", 1))
    reducing = submit(commit, alice_account, intent("MES", 1, side=OrderSide.SELL))

    assert_denied(opening, "flat_by")
    assert "15:10" in opening.denials[0]["detail"]
    assert reducing.status == OrderStatus.FILLED
    assert venue_quantity(alice_account, "MESZ6") == 1
