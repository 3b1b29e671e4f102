"""The order path on PostgreSQL and Redis with the paper venue: outcomes in our books and at the venue."""

from dataclasses import replace
from decimal import Decimal

import pytest

from brokers.paper import venue
from brokers.paper.models import VenueFill, VenueOrder
from orders import booking, services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType, PositionEffect
from orders.models import Fill, Order, Position

pytestmark = pytest.mark.django_db


def buy(quantity: int = 1, symbol: str = "MES", **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def sell(quantity: int = 1, symbol: str = "MES", **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol=symbol, side=OrderSide.SELL, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def test_market_order_fills_and_updates_position_and_balance(alice_account, commit):
    with commit():
        outcome = services.submit_order(account=alice_account, intent=buy(2), source=OrderSource.API)

    order = Order.objects.get(pk=outcome.order.pk)
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == 2
    assert order.avg_fill_price == Decimal("5000.00")
    assert order.broker_order_id
    position = Position.objects.get(account=alice_account)
    assert (position.quantity, position.avg_price) == (2, Decimal("5000.00"))
    fill = Fill.objects.get(order=order)
    assert fill.fee == Decimal("0.74")
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") - Decimal("0.74")
    # The venue has exactly one order with our client id and one fill.
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
    assert VenueFill.objects.filter(order__client_order_id=order.client_order_id).count() == 1
    assert [e.type for e in order.events.order_by("id")] == ["created", "submitted", "accepted", "fill"]


def test_round_trip_realizes_pnl_in_money_from_tick_value(alice_account, paper, commit):
    with commit():
        services.submit_order(account=alice_account, intent=buy(3), source=OrderSource.API)
    with commit():
        paper.price("MESZ6", "5002.50")  # +10 ticks
    with commit():
        services.submit_order(account=alice_account, intent=sell(3), source=OrderSource.API)

    position = Position.objects.get(account=alice_account)
    assert position.quantity == 0
    assert position.realized_pnl == Decimal("37.50")  # 10 ticks * $1.25 * 3
    alice_account.refresh_from_db()
    assert alice_account.balance == Decimal("50000") + Decimal("37.50") - 6 * Decimal("0.37")


# -- Fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def queued_tasks():  # type: ignore[no-untyped-def]
    """Celery stops running tasks inline: they go to Redis and wait, as when no worker is up."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


def submit(account, intent, **kwargs) -> Order:  # type: ignore[no-untyped-def]
    return services.submit_order(account=account, intent=intent, source=OrderSource.API, **kwargs).order


def limit(side: OrderSide, quantity: int, price: str, symbol: str = "MES") -> OrderIntent:
    return OrderIntent(
        symbol=symbol, side=side, quantity=quantity, order_type=OrderType.LIMIT, limit_price=Decimal(price)
    )


# -- Idempotency and denials -------------------------------------------------------------------


def test_same_client_order_id_and_request_returns_the_first_order(alice_account, commit):
    client_id = services.client_order_id_for(scope="user:1", key="abc")
    with commit():
        first = services.submit_order(
            account=alice_account, intent=buy(1), source=OrderSource.API, client_order_id=client_id
        )
    with commit():
        again = services.submit_order(
            account=alice_account, intent=buy(1), source=OrderSource.API, client_order_id=client_id
        )

    assert (first.created, again.created) == (True, False)
    assert again.order.pk == first.order.pk
    assert Order.objects.count() == 1
    assert VenueOrder.objects.filter(client_order_id=client_id).count() == 1
    assert Position.objects.get(account=alice_account).quantity == 1


def test_reused_client_order_id_with_another_request_is_a_conflict(alice_account, commit):
    client_id = services.client_order_id_for(scope="user:1", key="abc")
    with commit():
        submit(alice_account, buy(1), client_order_id=client_id)

    with pytest.raises(services.IdempotencyConflict):
        submit(alice_account, buy(2), client_order_id=client_id)
    assert Order.objects.count() == 1


def test_halted_account_stores_a_denied_order_and_sends_nothing(alice_account, commit):
    from risk.services import halt_account

    halt_account(account=alice_account, reason="test")
    with commit():
        order = submit(alice_account, buy(1))

    order.refresh_from_db()
    assert order.status == OrderStatus.DENIED
    assert order.denials[0]["code"] == "account_halted"
    assert [e.type for e in order.events.order_by("id")] == ["created", "denied"]
    assert not VenueOrder.objects.exists()


def test_halted_account_can_still_close_its_position(alice_account, commit):
    from risk.services import halt_account

    with commit():
        submit(alice_account, buy(2))
    halt_account(account=alice_account, reason="test")
    with commit():
        services.close_position(position=Position.objects.get(account=alice_account))

    assert Position.objects.get(account=alice_account).quantity == 0


def test_reducing_account_may_reduce_but_not_add(alice_account, commit):
    from accounts.domain import TradingState
    from risk.services import set_trading_state

    with commit():
        submit(alice_account, buy(2))
    set_trading_state(account=alice_account, state=TradingState.REDUCING, reason="test")
    with commit():
        added = submit(alice_account, buy(1))
        reduced = submit(alice_account, sell(1))
        # Through flat only as an explicit reverse, which a reducing account may not do.
        flipped = submit(alice_account, replace(sell(2), position_effect=PositionEffect.REVERSE))

    assert Order.objects.get(pk=added.pk).status == OrderStatus.DENIED
    assert Order.objects.get(pk=reduced.pk).status == OrderStatus.FILLED
    assert Order.objects.get(pk=flipped.pk).status == OrderStatus.DENIED  # would go short 1
    assert Position.objects.get(account=alice_account).quantity == 1


# -- Broker answers: rejected, unavailable, unknown -----------------------------------------------


def test_venue_rejection_marks_the_order_rejected_with_the_reason(alice_account, commit):
    venue.inject_fault("reject_next_order")
    with commit():
        order = submit(alice_account, buy(1))

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert "simulated rejection" in order.reason
    assert not Position.objects.filter(account=alice_account).exclude(quantity=0).exists()


def test_unreachable_broker_is_retried_then_the_order_rejected_without_reaching_it(alice_account, commit, monkeypatch):
    monkeypatch.setattr(services, "SEND_RETRY_DELAYS", (0.0, 0.0, 0.0))
    venue.inject_fault("unavailable", times=10)
    with commit():
        order = submit(alice_account, buy(1))

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert "unreachable" in order.reason
    assert order.events.filter(type="broker_unavailable").count() == 4
    assert not VenueOrder.objects.exists()


def test_unreachable_once_then_sent_exactly_once(alice_account, commit, monkeypatch):
    monkeypatch.setattr(services, "SEND_RETRY_DELAYS", (0.0, 0.0, 0.0))
    venue.inject_fault("unavailable", times=1)
    with commit():
        order = submit(alice_account, buy(1))

    assert Order.objects.get(pk=order.pk).status == OrderStatus.FILLED
    assert VenueOrder.objects.count() == 1


def test_lost_answer_leaves_order_unresolved_until_reconciled_by_client_id(alice_account, commit, queued_tasks):
    with commit():
        order = submit(alice_account, buy(2))
    venue.inject_fault("lose_response")
    venue.inject_fault("lose_events")  # the stream lost the fill too: only asking can tell

    services.send_orders_to_broker(order_ids=[order.pk])

    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMITTED  # unknown, not rejected, not resent
    assert order.events.filter(type="outcome_unknown").exists()
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
    assert not Fill.objects.exists()

    with commit():
        services.reconcile_order(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.filled_quantity == 2
    assert Position.objects.get(account=alice_account).quantity == 2
    assert order.events.filter(type="reconciled").exists()
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1


def test_order_that_never_reached_the_broker_is_rejected_after_the_grace_period(alice_account, paper, settings):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import OrderFactory

    order = OrderFactory(
        account=alice_account,
        instrument=paper.mes,
        status=OrderStatus.SUBMITTED,
        submitted_at=timezone.now() - settings.ORDER_LOST_AFTER - timedelta(seconds=1),
    )
    services.reconcile_unresolved_orders()

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert "never arrived" in order.reason
    assert not VenueOrder.objects.exists()  # never resent


def test_recently_submitted_unknown_order_is_left_alone(alice_account, paper):
    from django.utils import timezone

    from tests.factories import OrderFactory

    order = OrderFactory(
        account=alice_account, instrument=paper.mes, status=OrderStatus.SUBMITTED, submitted_at=timezone.now()
    )
    services.reconcile_order(order_id=order.pk)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTED


def test_order_whose_enqueue_was_lost_is_sent_by_the_safety_net(alice_account, paper, commit, queued_tasks):
    from datetime import timedelta

    from django.utils import timezone

    from config.celery import app

    with commit():
        order = submit(alice_account, buy(1))
    Order.objects.filter(pk=order.pk).update(created_at=timezone.now() - timedelta(minutes=1))
    app.conf.task_always_eager = True  # now a worker is "up"
    with commit():
        services.reconcile_unresolved_orders()

    assert Order.objects.get(pk=order.pk).status == OrderStatus.FILLED
    assert VenueOrder.objects.count() == 1


def test_second_send_of_the_same_order_is_a_no_op(alice_account, commit):
    with commit():
        order = submit(alice_account, buy(1))
    with commit():
        services.send_orders_to_broker(order_ids=[order.pk])

    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
    assert Order.objects.get(pk=order.pk).events.filter(type="submitted").count() == 1


# -- Reports: exactly once, out of order ------------------------------------------------------------


def test_the_same_fill_reported_twice_is_applied_once(alice_account, commit):
    from brokers.adapters.paper import PaperBroker

    with commit():
        order = submit(alice_account, buy(2))
    balance = TradingAccountBalance(alice_account)
    fills = PaperBroker(alice_account.broker_connection).list_fills(
        account_ref=alice_account.broker_account_id, since=order.created_at
    )
    assert len(fills) == 1

    with commit():
        assert booking.apply_broker_reports(connection_id=alice_account.broker_connection_id, reports=fills) == []

    assert Fill.objects.count() == 1
    assert Position.objects.get(account=alice_account).quantity == 2
    assert balance.unchanged()


def test_ack_arriving_after_the_fill_does_not_move_the_order_back(alice_account, commit):
    from brokers.adapters.paper import PaperBroker

    with commit():
        order = submit(alice_account, buy(1))
    ack = PaperBroker(alice_account.broker_connection).get_order(
        account_ref=alice_account.broker_account_id, client_order_id=order.client_order_id
    )
    stale = ack.__class__(**{**ack.__dict__, "status": "working", "filled_quantity": 0})
    booking.apply_broker_reports(connection_id=alice_account.broker_connection_id, reports=[stale])

    assert Order.objects.get(pk=order.pk).status == OrderStatus.FILLED


class TradingAccountBalance:
    def __init__(self, account) -> None:  # type: ignore[no-untyped-def]
        self.account = account
        account.refresh_from_db()
        self.before = account.balance

    def unchanged(self) -> bool:
        self.account.refresh_from_db()
        return self.account.balance == self.before


# -- Working orders: limits, partial fills, cancel --------------------------------------------------


def test_limit_order_works_until_the_price_reaches_it(alice_account, paper, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4999.00"))
    assert Order.objects.get(pk=order.pk).status == OrderStatus.ACCEPTED
    with commit():
        paper.price("MESZ6", "4998.75")

    order.refresh_from_db()
    assert order.status == OrderStatus.FILLED
    assert order.avg_fill_price == Decimal("4998.75")  # market or better
    assert Position.objects.get(account=alice_account).quantity == 1


def test_partial_fills_step_the_order_to_filled(alice_account, paper, commit):
    from brokers.paper.models import VenueContract

    VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=1)
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 3, "4999.00"))
    statuses = []
    for price in ("4999.00", "4998.75", "4998.50"):
        with commit():
            paper.price("MESZ6", price)
        order.refresh_from_db()
        statuses.append((order.status, order.filled_quantity))

    assert statuses == [("partially_filled", 1), ("partially_filled", 2), ("filled", 3)]
    assert order.avg_fill_price == Decimal("4998.75")
    assert Fill.objects.filter(order=order).count() == 3


def test_cancel_of_a_working_order_cancels_it_at_the_venue(alice_account, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    with commit():
        services.request_cancel(order=order)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    assert VenueOrder.objects.get(client_order_id=order.client_order_id).status == "canceled"
    assert [e.type for e in order.events.order_by("id")][-2:] == ["cancel_requested", "canceled"]


def test_cancel_before_sending_means_it_never_reaches_the_venue(alice_account, commit, queued_tasks):
    with commit():
        order = submit(alice_account, buy(1))
    services.request_cancel(order=order)
    services.send_orders_to_broker(order_ids=[order.pk])  # the queued send runs late

    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELED
    assert not VenueOrder.objects.exists()


def test_cancel_of_a_filled_order_is_refused(alice_account, commit):
    with commit():
        order = submit(alice_account, buy(1))
    with pytest.raises(services.OrderNotCancelable):
        services.request_cancel(order=order)


# -- Closing and flattening -------------------------------------------------------------------------


def test_partial_then_full_close(alice_account, commit):
    with commit():
        submit(alice_account, buy(3))
    position = Position.objects.get(account=alice_account)
    with commit():
        services.close_position(position=position, quantity=1)
    assert Position.objects.get(pk=position.pk).quantity == 2
    with commit():
        order = services.close_position(position=position)

    assert order.quantity == 2 and order.side == OrderSide.SELL and order.source == OrderSource.CLOSE
    assert Position.objects.get(pk=position.pk).quantity == 0


def test_a_second_close_while_the_first_is_in_flight_is_refused(alice_account, commit, queued_tasks):
    from config.celery import app

    app.conf.task_always_eager = True
    with commit():
        submit(alice_account, buy(2))
    app.conf.task_always_eager = False
    position = Position.objects.get(account=alice_account)
    with commit():
        services.close_position(position=position)

    with pytest.raises(services.NothingToClose):
        services.close_position(position=position)
    assert Order.objects.filter(source=OrderSource.CLOSE).count() == 1


def test_close_more_than_held_is_refused(alice_account, commit):
    with commit():
        submit(alice_account, buy(1))
    with pytest.raises(services.DomainError) as error:
        services.close_position(position=Position.objects.get(account=alice_account), quantity=2)
    assert error.value.code == "close_quantity_too_large"


def test_flatten_cancels_working_orders_and_closes_every_position(alice_account, commit):
    with commit():
        submit(alice_account, buy(2))
        submit(alice_account, buy(1, symbol="ES"))
    with commit():
        working = submit(alice_account, limit(OrderSide.BUY, 1, "4900.00"))
    with commit():
        result = services.flatten_account(account=alice_account)

    assert [o.pk for o in result.canceled] == [working.pk]
    assert sorted(o.quantity for o in result.closing) == [1, 2]
    assert Order.objects.get(pk=working.pk).status == OrderStatus.CANCELED
    assert not Position.objects.open().filter(account=alice_account).exists()
    assert not VenueOrder.objects.filter(status="working").exists()


# -- Valuation ------------------------------------------------------------------------------------


def test_valuation_counts_realized_fees_and_open_pnl_for_the_trade_date(alice_account, paper, commit):
    from orders.selectors import value_account

    with commit():
        submit(alice_account, buy(2))
    with commit():
        paper.price("MESZ6", "5001.00")
    with commit():
        submit(alice_account, sell(1))  # realizes 4 ticks = $5.00
    with commit():
        paper.price("MESZ6", "5002.00")

    valuation = value_account(alice_account)
    alice_account.refresh_from_db()
    assert valuation.day_realized_pnl == Decimal("5.00")
    assert valuation.day_fees == Decimal("1.11")  # 3 contracts at $0.37
    assert valuation.unrealized_pnl == Decimal("10.00")  # 1 contract, 8 ticks
    assert valuation.equity == alice_account.balance + Decimal("10.00")
    assert valuation.day_pnl == Decimal("5.00") - Decimal("1.11") + Decimal("10.00")
