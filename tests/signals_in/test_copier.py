"""The copier on PostgreSQL with the paper venue: leader fills mirrored to followers, redelivery,
risk denials, reversals, and the loop correcting (or quarantining) a drifted follower."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.domain import TradingState
from brokers.paper import venue
from brokers.paper.models import VenueOrder, VenuePosition
from orders import reconciliation, services
from orders.domain import OrderIntent, OrderSide, OrderSource, OrderStatus, OrderType, PositionEffect
from orders.models import Fill, Order, Position
from risk.services import halt_account, set_trading_state
from signals_in import copier
from signals_in.models import CopierLink, CopierStatus, CopyAction, CopyActionKind, DriftAction
from signals_in.tasks.copier import check_all_followers_task, fills_booked
from tests.factories import FillFactory, OrderFactory

pytestmark = pytest.mark.django_db

D = Decimal


def market(side: OrderSide, quantity: int, effect: PositionEffect = PositionEffect.AUTO) -> OrderIntent:
    return OrderIntent(symbol="ES", side=side, quantity=quantity, order_type=OrderType.MARKET, position_effect=effect)


def held(account, symbol: str) -> int:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account, instrument__symbol=symbol).first()
    return position.quantity if position else 0


def at_venue(account, symbol: str) -> int:  # type: ignore[no-untyped-def]
    position = VenuePosition.objects.filter(account__ref=account.broker_account_id, symbol=symbol).first()
    return position.quantity if position else 0


def actions(link: CopierLink, kind: str | None = None) -> list[CopyAction]:
    rows = CopyAction.objects.filter(link=link).order_by("pk")
    return list(rows.filter(kind=kind) if kind else rows)


@pytest.fixture
def desk(paper, commit):  # type: ignore[no-untyped-def]
    """A leader and two followers: `micro` copies twice the leader's ES as MES, `half` copies half
    of it in ES itself."""
    leader = paper.open_account("Leader", ref="PAPER-L")
    micro_account = paper.open_account("Follower MES", ref="PAPER-F1")
    half_account = paper.open_account("Follower half", ref="PAPER-F2")
    micro = CopierLink.objects.create(leader=leader, follower=micro_account, ratio=D("2"), symbol_map={"ES": "MES"})
    half = CopierLink.objects.create(leader=leader, follower=half_account, ratio=D("0.5"))

    def trade(side: OrderSide, quantity: int, effect: PositionEffect = PositionEffect.AUTO) -> Order:
        with commit():
            intent = market(side, quantity, effect)
            order = services.submit_order(account=leader, intent=intent, source=OrderSource.API).order
        order.refresh_from_db()
        assert order.status == OrderStatus.FILLED
        return order

    class Desk:
        pass

    desk = Desk()
    desk.leader, desk.micro, desk.half, desk.trade = leader, micro, half, trade  # type: ignore[attr-defined]
    return desk


# -- Mirroring -------------------------------------------------------------------------------------


def test_leader_fill_is_mirrored_to_each_follower_with_ratio_and_mapping(desk):
    order = desk.trade(OrderSide.BUY, 2)

    fill = Fill.objects.get(order=order)
    assert held(desk.micro.follower, "MESZ6") == 4 and at_venue(desk.micro.follower, "MESZ6") == 4
    assert held(desk.half.follower, "ESZ6") == 1 and at_venue(desk.half.follower, "ESZ6") == 1
    assert held(desk.micro.follower, "ESZ6") == 0  # mapped: no ES at the micro follower
    for link, symbol, quantity in ((desk.micro, "MESZ6", 4), (desk.half, "ESZ6", 1)):
        (mirror,) = actions(link)
        assert mirror.kind == CopyActionKind.MIRROR and mirror.leader_fill == fill
        assert (mirror.instrument.symbol, mirror.desired_quantity, mirror.actual_quantity) == (symbol, quantity, 0)
        assert mirror.latency_ms is not None and mirror.latency_ms < 5000
        assert mirror.slippage_ticks == D("0.00")  # filled at the leader's price
        copy = mirror.order
        copy.refresh_from_db()
        assert (copy.source, copy.side, copy.quantity, copy.status) == (
            OrderSource.COPIER,
            OrderSide.BUY,
            quantity,
            OrderStatus.FILLED,
        )
        assert copy.client_order_id == services.client_order_id_for(scope="copy", key=f"{link.pk}:{fill.pk}")
        assert VenueOrder.objects.filter(client_order_id=copy.client_order_id).count() == 1
        link.refresh_from_db()
        assert link.last_checked_at is not None  # checked right after the mirror: nothing to correct
    assert not CopyAction.objects.filter(kind=CopyActionKind.CORRECTION).exists()


def test_leader_closing_is_mirrored_and_rounding_leaves_a_half_follower_flat(desk):
    desk.trade(OrderSide.BUY, 3)  # micro +6, half +1 (1.5 toward zero)
    desk.trade(OrderSide.SELL, 2)  # leader +1: micro +2, half 0 (0.5 toward zero)

    assert held(desk.micro.follower, "MESZ6") == 2
    assert held(desk.half.follower, "ESZ6") == 0
    closing = actions(desk.half, CopyActionKind.MIRROR)[-1].order
    assert (closing.side, closing.quantity) == (OrderSide.SELL, 1)


def test_redelivered_fill_copies_once(desk, commit):
    order = desk.trade(OrderSide.BUY, 2)
    fill_ids = list(Fill.objects.filter(order=order).values_list("pk", flat=True))

    with commit():
        fills_booked(fills={desk.leader.pk: fill_ids})  # the listener called again
        copier.mirror_leader_fills(account_id=desk.leader.pk, fill_ids=fill_ids)  # the task redelivered

    assert Order.objects.filter(source=OrderSource.COPIER).count() == 2
    assert CopyAction.objects.filter(kind=CopyActionKind.MIRROR).count() == 2
    assert held(desk.micro.follower, "MESZ6") == 4 and at_venue(desk.micro.follower, "MESZ6") == 4
    assert held(desk.half.follower, "ESZ6") == 1


def test_fills_of_accounts_outside_the_copier_enqueue_nothing(desk, paper):
    bystander = paper.open_account("Bystander", ref="PAPER-X")

    assert copier.copier_roles([bystander.pk]) == (set(), set())
    assert copier.copier_roles([desk.leader.pk]) == ({desk.leader.pk}, set())
    assert copier.copier_roles([desk.half.follower_id]) == (set(), {desk.half.follower_id})
    both = [bystander.pk, desk.leader.pk, desk.half.follower_id]
    assert copier.copier_roles(both) == ({desk.leader.pk}, {desk.half.follower_id})


def test_follower_denied_by_risk_leaves_the_other_followed(desk):
    halt_account(account=desk.half.follower, reason="Staff halt")

    order = desk.trade(OrderSide.BUY, 2)

    assert held(desk.micro.follower, "MESZ6") == 4
    (denied,) = actions(desk.half)
    assert denied.kind == CopyActionKind.DENIED and denied.leader_fill == Fill.objects.get(order=order)
    assert denied.order.status == OrderStatus.DENIED and "account_halted" in str(denied.order.denials)
    assert "denied by risk" in denied.detail
    assert held(desk.half.follower, "ESZ6") == 0 and not VenueOrder.objects.filter(account__ref="PAPER-F2").exists()


def test_halted_follower_still_follows_its_leader_out(desk):
    desk.trade(OrderSide.BUY, 2)
    halt_account(account=desk.micro.follower, reason="Staff halt")

    desk.trade(OrderSide.SELL, 2)

    assert held(desk.micro.follower, "MESZ6") == 0
    out = actions(desk.micro, CopyActionKind.MIRROR)[-1]
    assert (out.order.side, out.order.quantity, out.order.status) == (OrderSide.SELL, 4, OrderStatus.FILLED)


def test_leader_reversal_reverses_the_follower_in_one_explicit_reverse_order(desk):
    desk.trade(OrderSide.BUY, 1)  # micro +2
    desk.trade(OrderSide.SELL, 3, PositionEffect.REVERSE)  # leader -2: micro -4

    assert held(desk.micro.follower, "MESZ6") == -4
    reverse = actions(desk.micro, CopyActionKind.MIRROR)[-1].order
    assert (reverse.side, reverse.quantity, reverse.position_effect) == (OrderSide.SELL, 6, PositionEffect.REVERSE)


def test_reversal_refused_by_risk_closes_the_follower_instead(desk):
    desk.trade(OrderSide.BUY, 1)
    set_trading_state(account=desk.micro.follower, state=TradingState.REDUCING, reason="Near the drawdown")

    reversal = desk.trade(OrderSide.SELL, 3, PositionEffect.REVERSE)

    assert held(desk.micro.follower, "MESZ6") == 0  # out of the long, not into the short
    denied, closed = CopyAction.objects.filter(link=desk.micro, leader_fill__order=reversal).order_by("pk")
    assert denied.kind == CopyActionKind.DENIED and denied.order.denials[0]["code"] == "account_reducing"
    assert closed.kind == CopyActionKind.MIRROR and (closed.order.side, closed.order.quantity) == (OrderSide.SELL, 2)
    assert closed.detail == "Leader sell 3 ESZ6 @ 5000.00: sell 2 MESZ6 (reducing)."
    # The check after the close tried to open the short (refused too); the loop does not hammer
    # risk with the same refused correction every five seconds.
    (retried,) = actions(desk.micro)[3:]
    assert (retried.kind, retried.desired_quantity, retried.actual_quantity) == (CopyActionKind.DENIED, -4, 0)
    check_all_followers_task()
    check_all_followers_task()
    assert Order.objects.filter(account=desk.micro.follower, status=OrderStatus.DENIED).count() == 2
    copier.check_link(link_id=desk.micro.pk, now=timezone.now() + copier.RETRY_REFUSED_AFTER + timedelta(seconds=1))
    assert Order.objects.filter(account=desk.micro.follower, status=OrderStatus.DENIED).count() == 3  # asked again


def test_quarantined_follower_is_not_mirrored_to(desk):
    CopierLink.objects.filter(pk=desk.half.pk).update(status=CopierStatus.QUARANTINED, status_reason="test")

    desk.trade(OrderSide.BUY, 2)

    assert held(desk.micro.follower, "MESZ6") == 4
    assert actions(desk.half) == [] and held(desk.half.follower, "ESZ6") == 0


def test_slippage_is_recorded_when_the_followers_order_fills(db):
    leader_fill = FillFactory(price=D("5000.00"))
    order = OrderFactory(
        source=OrderSource.COPIER,
        side=OrderSide.SELL,
        status=OrderStatus.FILLED,
        filled_quantity=1,
        avg_fill_price=D("4999.50"),
    )
    follower_fill = FillFactory(order=order, side=OrderSide.SELL, price=D("4999.50"))
    link = CopierLink.objects.create(leader=leader_fill.account, follower=order.account)
    mirror = CopyAction.objects.create(link=link, kind=CopyActionKind.MIRROR, leader_fill=leader_fill, order=order)

    checked = copier.record_follower_fills(account_id=order.account_id, fill_ids=[follower_fill.pk])

    mirror.refresh_from_db()
    assert mirror.slippage_ticks == D("2.00")  # sold two ticks below the leader: worse
    assert checked == [link.pk]


# -- The loop ----------------------------------------------------------------------------------------


def drift_micro_follower(desk, commit) -> None:  # type: ignore[no-untyped-def]
    """The micro follower's MES closed on the venue's own platform; reconciliation books it."""
    desk.trade(OrderSide.BUY, 2)
    assert held(desk.micro.follower, "MESZ6") == 4
    venue.inject_fault("lose_events")
    with commit():
        venue.close_position(account_ref="PAPER-F1", symbol="MESZ6")
    with commit():
        reconciliation.reconcile_account(account_id=desk.micro.follower_id, trigger="staff")
    assert held(desk.micro.follower, "MESZ6") == 0 and at_venue(desk.micro.follower, "MESZ6") == 0


def test_loop_corrects_a_drifted_follower(desk, commit):
    drift_micro_follower(desk, commit)

    with commit():
        check_all_followers_task()

    assert held(desk.micro.follower, "MESZ6") == 4 and at_venue(desk.micro.follower, "MESZ6") == 4
    (correction,) = actions(desk.micro, CopyActionKind.CORRECTION)
    assert (correction.desired_quantity, correction.actual_quantity) == (4, 0)
    assert (correction.order.side, correction.order.quantity, correction.order.source) == (
        OrderSide.BUY,
        4,
        OrderSource.COPIER,
    )
    assert correction.order.client_order_id == services.client_order_id_for(
        scope="copy-correction", key=f"{desk.micro.pk}:{correction.instrument_id}:0"
    )
    with commit():
        check_all_followers_task()  # in line again: nothing more
    assert len(actions(desk.micro, CopyActionKind.CORRECTION)) == 1
    assert actions(desk.half, CopyActionKind.CORRECTION) == []


def test_drift_within_the_tolerance_is_let_stand(desk, commit):
    CopierLink.objects.filter(pk=desk.micro.pk).update(drift_tolerance=4)
    drift_micro_follower(desk, commit)

    with commit():
        check_all_followers_task()

    assert held(desk.micro.follower, "MESZ6") == 0
    assert actions(desk.micro, CopyActionKind.CORRECTION) == []


def test_quarantine_setting_quarantines_instead_of_correcting(desk, commit):
    CopierLink.objects.filter(pk=desk.micro.pk).update(on_drift=DriftAction.QUARANTINE)
    drift_micro_follower(desk, commit)

    with commit():
        check_all_followers_task()

    link = CopierLink.objects.get(pk=desk.micro.pk)
    assert link.status == CopierStatus.QUARANTINED and "MESZ6 wanted +4, found +0" in link.status_reason
    (quarantine,) = actions(link, CopyActionKind.QUARANTINE)
    assert (quarantine.desired_quantity, quarantine.actual_quantity) == (4, 0)
    assert held(desk.micro.follower, "MESZ6") == 0  # nothing sent
    desk.trade(OrderSide.BUY, 1)  # no more mirroring until staff resume it
    assert held(desk.micro.follower, "MESZ6") == 0 and held(desk.half.follower, "ESZ6") == 1

    copier.resume_link(link=link)
    (resumed,) = actions(link, CopyActionKind.RESUMED)
    assert resumed.detail.startswith("Resumed by staff")
    CopierLink.objects.filter(pk=link.pk).update(on_drift=DriftAction.CORRECT)
    with commit():
        check_all_followers_task()
    assert held(desk.micro.follower, "MESZ6") == 6


def test_an_order_in_flight_is_not_doubled_by_a_second_check(desk, paper, queued_tasks):
    # The leader holds +2 ES; no worker runs, so the correction stays in flight, unsent.
    Position.objects.create(account=desk.leader, instrument=paper.es, quantity=2, avg_price=D("5000"))

    first = copier.check_link(link_id=desk.micro.pk)
    second = copier.check_link(link_id=desk.micro.pk)

    assert [a.kind for a in first] == [CopyActionKind.CORRECTION] and second == []
    (in_flight,) = Order.objects.filter(account=desk.micro.follower, source=OrderSource.COPIER)
    assert (in_flight.status, in_flight.quantity) == (OrderStatus.NEW, 4)


@pytest.mark.django_db(transaction=True)
def test_a_link_another_check_holds_is_skipped_not_waited_for():
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection, transaction

    from tests.factories import TradingAccountFactory

    link = CopierLink.objects.create(leader=TradingAccountFactory(), follower=TradingAccountFactory())

    def check_elsewhere() -> list[CopyAction]:
        try:
            return copier.check_link(link_id=link.pk)
        finally:
            connection.close()  # the thread's own connection

    with transaction.atomic():
        CopierLink.objects.select_for_update().get(pk=link.pk)  # a check in progress
        with ThreadPoolExecutor(max_workers=1) as pool:
            assert pool.submit(check_elsewhere).result(timeout=10) == []
        assert CopierLink.objects.get(pk=link.pk).last_checked_at is None

    copier.check_link(link_id=link.pk)
    assert CopierLink.objects.get(pk=link.pk).last_checked_at is not None


@pytest.fixture
def queued_tasks():  # type: ignore[no-untyped-def]
    """Celery stops running tasks inline: they go to Redis and wait, as when no worker is up."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True
