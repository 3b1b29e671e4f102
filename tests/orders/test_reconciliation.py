"""Reconciliation with the paper venue made to drift: outcomes in our books, at the venue, and in
the stored runs and discrepancies."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone

from brokers.paper import venue
from brokers.paper.models import VenueOrder
from orders import reconciliation, services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType, PositionEffect
from orders.models import (
    DiscrepancyKind,
    Fill,
    Order,
    Position,
    ReconciliationOutcome,
    ReconciliationRun,
)
from orders.reconciliation import correcting_trades

pytestmark = pytest.mark.django_db

D = Decimal
GATE_ON = override_settings(RECONCILIATION_MAX_AGE=timedelta(seconds=60))


def market(side: OrderSide, quantity: int, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol="MES", side=side, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def limit(side: OrderSide, quantity: int, price: str) -> OrderIntent:
    return OrderIntent(symbol="MES", side=side, quantity=quantity, order_type=OrderType.LIMIT, limit_price=D(price))


def submit(account, intent) -> Order:  # type: ignore[no-untyped-def]
    return services.submit_order(account=account, intent=intent, source=OrderSource.API).order


def fresh(*orders: Order) -> None:
    for order in orders:
        order.refresh_from_db()


def reconcile(account, commit) -> ReconciliationRun:  # type: ignore[no-untyped-def]
    with commit():
        return reconciliation.reconcile_account(account_id=account.pk, trigger="staff")


def kinds(run: ReconciliationRun) -> list[str]:
    return sorted(run.found.values_list("kind", flat=True))


def held(account) -> tuple[int, Decimal]:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account).first()
    return (position.quantity, position.avg_price) if position else (0, D(0))


@pytest.fixture
def queued_tasks():  # type: ignore[no-untyped-def]
    """Celery stops running tasks inline: they go to Redis and wait, as when no worker is up."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True


# -- In line ------------------------------------------------------------------------------------


def test_run_is_clean_when_books_match(alice_account, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))
        submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))

    run = reconcile(alice_account, commit)

    assert (run.outcome, run.discrepancies, run.error) == (ReconciliationOutcome.CLEAN, 0, "")
    assert run.trigger == "staff" and run.finished_at >= run.started_at
    assert held(alice_account) == (2, D("5000.00"))


# -- Fills ----------------------------------------------------------------------------------------


def test_missed_fill_is_applied_once_when_run_twice(alice_account, commit):
    venue.inject_fault("lose_events")  # the venue's push with the fill never arrives
    with commit():
        order = submit(alice_account, market(OrderSide.BUY, 2))
    fresh(order)
    assert order.status == OrderStatus.ACCEPTED  # the answer said "filled"; only fills move an order
    assert not Fill.objects.exists()

    first = reconcile(alice_account, commit)
    second = reconcile(alice_account, commit)

    assert first.outcome == ReconciliationOutcome.CORRECTED
    assert kinds(first) == [DiscrepancyKind.MISSED_FILL]
    missed = first.found.get()
    assert missed.order_id == order.pk and missed.symbol == "MESZ6"
    assert "never reached our books" in missed.detail and "Applied once" in missed.correction
    assert (second.outcome, second.discrepancies) == (ReconciliationOutcome.CLEAN, 0)
    assert Fill.objects.filter(account=alice_account).count() == 1
    assert held(alice_account) == (2, D("5000.00"))
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 2)
    alice_account.refresh_from_db()
    assert alice_account.balance == D("50000") - D("0.74")  # the fee, charged once


def test_position_closed_on_the_venue_is_adopted_through_its_fill(alice_account, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))
    venue.inject_fault("lose_events")
    with commit():
        venue.close_position(account_ref="PAPER-A1", symbol="MESZ6")  # the venue's own button, no client id

    assert held(alice_account)[0] == 2  # we heard nothing
    run = reconcile(alice_account, commit)

    assert kinds(run) == [DiscrepancyKind.EXTERNAL_ORDER, DiscrepancyKind.MISSED_FILL]
    assert held(alice_account)[0] == 0
    closing = Order.objects.get(account=alice_account, source=OrderSource.EXTERNAL)
    assert (closing.side, closing.quantity, closing.status) == (OrderSide.SELL, 2, OrderStatus.FILLED)
    assert closing.events.filter(type="adopted").exists()
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN


# -- Orders -------------------------------------------------------------------------------------


def test_order_placed_on_the_venue_is_adopted_as_external(alice_account, commit):
    venue.inject_fault("lose_events")
    with commit():
        venue.place_order(
            account_ref="PAPER-A1",
            client_order_id=None,
            symbol="MESZ6",
            side="sell",
            quantity=3,
            order_type="limit",
            limit_price=D("5010.00"),
        )

    run = reconcile(alice_account, commit)

    adopted = Order.objects.get(account=alice_account)
    assert (adopted.source, adopted.status) == (OrderSource.EXTERNAL, OrderStatus.ACCEPTED)
    assert (adopted.side, adopted.quantity, adopted.limit_price) == (OrderSide.SELL, 3, D("5010.00"))
    assert kinds(run) == [DiscrepancyKind.EXTERNAL_ORDER]
    assert run.found.get().order_id == adopted.pk
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN
    assert Order.objects.filter(account=alice_account).count() == 1


def test_vanished_order_is_settled_canceled_and_nothing_is_resent(alice_account, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    fresh(order)
    assert order.status == OrderStatus.ACCEPTED
    venue.drop_order(account_ref="PAPER-A1", client_order_id=order.client_order_id)

    run = reconcile(alice_account, commit)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    vanished = order.events.get(type="vanished")
    assert (vanished.from_status, vanished.to_status) == (OrderStatus.ACCEPTED, OrderStatus.CANCELED)
    assert kinds(run) == [DiscrepancyKind.VANISHED_ORDER]
    assert run.found.get().order_id == order.pk
    assert not VenueOrder.objects.exists()
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN


def test_order_cancelled_on_the_venue_unheard_is_brought_in_line(alice_account, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    venue.inject_fault("lose_events")
    with commit():
        venue.cancel_order(account_ref="PAPER-A1", client_order_id=order.client_order_id)

    run = reconcile(alice_account, commit)

    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELED
    assert kinds(run) == [DiscrepancyKind.STATUS]
    assert run.found.get().correction == "accepted -> canceled"


def test_order_we_hold_canceled_but_working_at_the_venue_is_cancelled_there(alice_account, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    # Our books say canceled (e.g. a cancel answer that lied); the venue still works it.
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.CANCELED)

    run = reconcile(alice_account, commit)

    assert VenueOrder.objects.get(client_order_id=order.client_order_id).status == "canceled"
    found = run.found.get()
    assert (found.kind, found.order_id, found.correction) == (
        DiscrepancyKind.STATUS,
        order.pk,
        "Cancelled at the broker.",
    )
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN


def test_unknown_submission_is_resolved_by_client_id_and_never_resent(alice_account, commit, queued_tasks, settings):
    with commit():
        order = submit(alice_account, market(OrderSide.BUY, 2))
    venue.inject_fault("lose_response")  # the venue fills it, its answer is lost ...
    venue.inject_fault("lose_events")  # ... and so is its push: only asking can tell
    services.send_orders_to_broker(order_ids=[order.pk])
    order.refresh_from_db()
    assert order.status == OrderStatus.SUBMITTED
    Order.objects.filter(pk=order.pk).update(submitted_at=timezone.now() - settings.ORDER_UNRESOLVED_AFTER * 2)

    run = reconcile(alice_account, commit)

    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == (OrderStatus.FILLED, 2)
    assert order.events.filter(type="reconciled").exists()
    assert kinds(run) == [DiscrepancyKind.UNRESOLVED_ORDER]
    assert run.found.get().correction == "submitted -> filled, 1 fill(s) applied"
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1
    assert held(alice_account) == (2, D("5000.00"))


def test_recent_submission_is_left_to_its_own_answer(alice_account, commit, queued_tasks):
    with commit():
        order = submit(alice_account, market(OrderSide.BUY, 1))
    Order.objects.filter(pk=order.pk).update(status=OrderStatus.SUBMITTED, submitted_at=timezone.now())

    run = reconcile(alice_account, commit)

    assert Order.objects.get(pk=order.pk).status == OrderStatus.SUBMITTED
    assert run.outcome == ReconciliationOutcome.CLEAN
    assert not VenueOrder.objects.exists()


def test_submission_that_never_arrived_is_rejected_after_the_grace_period(alice_account, paper, commit, settings):
    from tests.factories import OrderFactory

    order = OrderFactory(
        account=alice_account,
        instrument=paper.mes,
        status=OrderStatus.SUBMITTED,
        submitted_at=timezone.now() - settings.ORDER_LOST_AFTER - timedelta(seconds=1),
    )

    run = reconcile(alice_account, commit)

    order.refresh_from_db()
    assert order.status == OrderStatus.REJECTED
    assert kinds(run) == [DiscrepancyKind.UNRESOLVED_ORDER]
    assert "no record" in run.found.get().detail and "not resent" in run.found.get().correction
    assert not VenueOrder.objects.exists()


# -- Positions ----------------------------------------------------------------------------------


def test_position_opened_before_propdesk_knew_the_account_is_adopted(alice_account, commit):
    venue.open_position_directly(account_ref="PAPER-A1", symbol="MESZ6", quantity=3, avg_price=D("5001.25"))

    run = reconcile(alice_account, commit)

    assert held(alice_account) == (3, D("5001.25"))
    assert kinds(run) == [DiscrepancyKind.POSITION]
    found = run.found.get()
    assert found.detail.startswith("The broker holds +3 MESZ6 @ 5001.25; our books had +0")
    assert "Adopted as placed outside propdesk: buy 3 @ 5001.25" in found.correction
    adopted = Order.objects.get(account=alice_account)
    assert (adopted.source, adopted.status, found.order_id) == (OrderSource.EXTERNAL, OrderStatus.FILLED, adopted.pk)
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN
    assert Fill.objects.filter(account=alice_account).count() == 1


def test_position_that_differs_without_fills_is_set_to_the_brokers(alice_account, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))
    # The venue now says short 1 @ 5005, and no fill we can see explains it.
    venue.open_position_directly(account_ref="PAPER-A1", symbol="MESZ6", quantity=-1, avg_price=D("5005.00"))

    run = reconcile(alice_account, commit)

    assert held(alice_account) == (-1, D("5005.00"))
    assert kinds(run) == [DiscrepancyKind.POSITION]
    assert "sell 2 @ 5000.00; sell 1 @ 5005.00" in run.found.get().correction
    assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN


@pytest.mark.parametrize(
    ("held_qty", "held_avg", "wanted", "wanted_avg", "expected"),
    [
        (0, "0", 3, "5001.25", [("buy", 3, "5001.25")]),
        (0, "0", -2, "5000", [("sell", 2, "5000")]),
        (2, "5000", 0, "0", [("sell", 2, "4990")]),
        (2, "5000", 5, "5002", [("buy", 3, "5003.33333333")]),  # (5*5002 - 2*5000) / 3
        (5, "5000", 2, "5000", [("sell", 3, "4990")]),
        (2, "5000", -1, "5005", [("sell", 2, "4990"), ("sell", 1, "5005")]),
        (-3, "5000", 1, "4995", [("buy", 3, "4990"), ("buy", 1, "4995")]),
    ],
)
def test_correcting_trades(held_qty, held_avg, wanted, wanted_avg, expected):
    trades = correcting_trades(
        held=held_qty, held_avg=D(held_avg), wanted=wanted, wanted_avg=D(wanted_avg), close_price=D("4990")
    )
    assert [(side, quantity, price) for side, quantity, price in trades] == [(s, q, D(p)) for s, q, p in expected]


# -- Failures and the gate on new risk --------------------------------------------------------------


def test_unreachable_broker_makes_a_failed_run(alice_account, commit):
    venue.inject_fault("unavailable")

    run = reconcile(alice_account, commit)

    assert run.outcome == ReconciliationOutcome.FAILED
    assert "could not be asked" in run.error


def test_gate_denies_new_risk_until_the_first_run_passes(alice_account, commit):
    with GATE_ON:
        with commit():
            order = submit(alice_account, market(OrderSide.BUY, 1))
        fresh(order)
        assert order.status == OrderStatus.DENIED
        assert order.denials[0]["code"] == "reconciliation_pending"
        assert not VenueOrder.objects.exists()

        reconcile(alice_account, commit)
        with commit():
            order = submit(alice_account, market(OrderSide.BUY, 1))
        fresh(order)
        assert order.status == OrderStatus.FILLED


def test_gate_lets_reducing_orders_through_after_a_failed_run_and_lifts_after_a_clean_one(alice_account, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))
    with GATE_ON:
        venue.inject_fault("unavailable")
        failed = reconcile(alice_account, commit)
        assert failed.outcome == ReconciliationOutcome.FAILED

        with commit():
            added = submit(alice_account, market(OrderSide.BUY, 1))
            reduced = submit(alice_account, market(OrderSide.SELL, 1, position_effect=PositionEffect.REDUCE))
        fresh(added, reduced)
        assert added.status == OrderStatus.DENIED
        denial = added.denials[0]
        assert (denial["rule"], denial["code"]) == ("reconciliation", "reconciliation_failed")
        assert f"failed at {failed.started_at:%Y-%m-%d %H:%M:%S} UTC" in denial["detail"]
        assert "could not be asked" in denial["detail"]
        assert reduced.status == OrderStatus.FILLED
        assert held(alice_account)[0] == 1

        assert reconcile(alice_account, commit).outcome == ReconciliationOutcome.CLEAN
        with commit():
            again = submit(alice_account, market(OrderSide.BUY, 1))
        fresh(again)
        assert again.status == OrderStatus.FILLED
        assert held(alice_account)[0] == 2


def test_gate_denies_new_risk_when_the_last_good_run_is_too_old(alice_account, commit):
    with GATE_ON:
        run = reconcile(alice_account, commit)
        ReconciliationRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - timedelta(minutes=5))
        with commit():
            order = submit(alice_account, market(OrderSide.BUY, 1))
        fresh(order)
        assert order.denials[0]["code"] == "reconciliation_stale"
        assert "stale since" in order.denials[0]["detail"]


# -- Entry points: beat, worker start, admin ------------------------------------------------------


def test_beat_task_reconciles_every_account_of_enabled_connections(alice_account, bob_account, commit):
    from orders.tasks import reconcile_all_connections_task

    with commit():
        reconcile_all_connections_task.delay(trigger="beat")

    runs = ReconciliationRun.objects.all()
    assert sorted(run.account_id for run in runs) == sorted([alice_account.pk, bob_account.pk])
    assert {run.trigger for run in runs} == {"beat"}


def test_disabled_connection_is_not_reconciled(alice_account, commit):
    alice_account.broker_connection.is_enabled = False
    alice_account.broker_connection.save()

    assert reconciliation.enqueue_reconciliations(trigger="beat") == 0
    assert not ReconciliationRun.objects.exists()


def test_admin_reconcile_now_and_the_run_pages(staff_client, alice_account, commit):
    from accounts.models import TradingAccount
    from tests.conftest import admin_url

    venue.open_position_directly(account_ref="PAPER-A1", symbol="MESZ6", quantity=1, avg_price=D("5000.00"))
    with commit():
        response = staff_client.post(
            admin_url(TradingAccount, "changelist"),
            {"action": "reconcile_selected", "_selected_action": [alice_account.pk]},
        )
    assert response.status_code == 302
    run = ReconciliationRun.objects.get(account=alice_account)
    assert (run.trigger, run.outcome) == ("staff", ReconciliationOutcome.CORRECTED)

    page = staff_client.get(admin_url(TradingAccount, "change", alice_account.pk)).content.decode()
    assert "Last reconciliation with the broker" in page and "Corrected, 1 discrepancies" in page
    runs = staff_client.get(admin_url(ReconciliationRun, "changelist") + "?outcome=corrected").content.decode()
    assert alice_account.name in runs
    detail = staff_client.get(admin_url(ReconciliationRun, "change", run.pk)).content.decode()
    assert "The broker holds +1 MESZ6" in detail
