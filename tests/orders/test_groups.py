"""Brackets, OCO pairs and the position's context, through the in-process paper venue.

Outcomes are read where they matter: our orders and groups, and the orders at the venue.
"""

from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from brokers.adapters.paper import PaperBroker
from brokers.interface import Capability
from brokers.paper import venue
from brokers.paper.models import VenueContract, VenueOrder
from orders import groups, services
from orders.domain import (
    BracketSpec,
    Level,
    OrderIntent,
    OrderRole,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionEffect,
    SideConflict,
)
from orders.models import Order, OrderGroup, OrderGroupStatus, Position

pytestmark = pytest.mark.django_db
D = Decimal


def market(side: OrderSide, quantity: int, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol="MES", side=side, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def limit(side: OrderSide, quantity: int, price: str) -> OrderIntent:
    return OrderIntent(symbol="MES", side=side, quantity=quantity, order_type=OrderType.LIMIT, limit_price=D(price))


def bracket(stop: str | int | None = None, target: str | int | None = None) -> BracketSpec:
    def level(value: str | int | None) -> Level | None:
        if value is None:
            return None
        return Level(ticks=value) if isinstance(value, int) else Level(price=D(value))

    return BracketSpec(stop_loss=level(stop), take_profit=level(target))


def submit(account, intent, **kwargs) -> Order:  # type: ignore[no-untyped-def]
    return services.submit_order(account=account, intent=intent, source=OrderSource.API, **kwargs).order


def legs(entry: Order) -> dict[str, Order]:
    return {leg.role: leg for leg in Order.objects.filter(group_id=entry.group_id).order_by("pk")}


def live_legs(account, role: str) -> list[Order]:  # type: ignore[no-untyped-def]
    return list(
        Order.objects.filter(
            account=account,
            role=role,
            status__in=[OrderStatus.NEW, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED],
        )
    )


def at_venue(order: Order) -> VenueOrder:
    return VenueOrder.objects.get(client_order_id=order.client_order_id)


def position(account) -> int:  # type: ignore[no-untyped-def]
    held = Position.objects.filter(account=account).first()
    return held.quantity if held else 0


@pytest.fixture
def emulated_oco(monkeypatch):  # type: ignore[no-untyped-def]
    """The paper broker without native OCO links: propdesk cancels and resizes the legs itself."""
    monkeypatch.setattr(PaperBroker, "capabilities", PaperBroker.capabilities - {Capability.OCO})


# -- Brackets ----------------------------------------------------------------------------------------


def test_bracket_legs_wait_for_the_entry_then_go_out_linked_and_sized(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, limit(OrderSide.BUY, 2, "4995.00"), bracket=bracket("4990.00", "5010.00"))

    held = legs(entry)
    assert held[OrderRole.STOP_LOSS].status == OrderStatus.HELD
    assert held[OrderRole.TAKE_PROFIT].status == OrderStatus.HELD
    assert not VenueOrder.objects.exclude(client_order_id=entry.client_order_id).exists()  # nothing else sent

    with commit():
        paper.price("MESZ6", "4995.00")

    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    assert (stop.status, target.status) == (OrderStatus.ACCEPTED, OrderStatus.ACCEPTED)
    venue_stop, venue_target = at_venue(stop), at_venue(target)
    assert (venue_stop.side, venue_stop.order_type, venue_stop.quantity, venue_stop.stop_price) == (
        "sell",
        "stop",
        2,
        D("4990.00"),
    )
    assert (venue_target.order_type, venue_target.quantity, venue_target.limit_price) == ("limit", 2, D("5010.00"))
    assert venue_stop.oco_group == venue_target.oco_group == f"pd-g{entry.group_id}"
    assert OrderGroup.objects.get(pk=entry.group_id).status == OrderGroupStatus.ACTIVE


def test_tick_offsets_count_from_the_average_fill(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.SELL, 1), bracket=bracket(8, 12))

    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    # Short from 5000.00: the stop 8 ticks above, the target 12 ticks below.
    assert (at_venue(stop).stop_price, at_venue(target).limit_price) == (D("5002.00"), D("4997.00"))
    assert (stop.side, target.side) == (OrderSide.BUY, OrderSide.BUY)


def test_an_average_fill_between_ticks_keeps_each_leg_at_least_its_ticks_away(alice_account, paper, commit):
    VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=1)
    with commit():
        entry = submit(alice_account, limit(OrderSide.BUY, 2, "5000.25"), bracket=bracket(4, 4))
        paper.price("MESZ6", "5000.25")  # first contract at 5000.25 ...
    with commit():
        paper.price("MESZ6", "5000.00")  # ... the second at 5000.00: average 5000.125

    entry.refresh_from_db()
    assert entry.avg_fill_price == D("5000.125")
    # Activated at the first fill (5000.25): stop 4 ticks below, target 4 ticks above.
    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    assert (stop.stop_price, target.limit_price) == (D("4999.25"), D("5001.25"))
    assert at_venue(stop).quantity == at_venue(target).quantity == 2  # resized with the second fill


@pytest.mark.parametrize(
    ("side", "stop", "target", "field"),
    [
        (OrderSide.BUY, "5001.00", "5010.00", "stop_loss"),  # a long's stop above the entry
        (OrderSide.BUY, "4990.00", "4999.00", "take_profit"),  # a long's target below
        (OrderSide.SELL, "4990.00", "4980.00", "stop_loss"),  # a short's stop below
        (OrderSide.BUY, "4990.00", "4980.00", "stop_loss"),  # stop beyond the target
    ],
)
def test_a_bracket_on_the_wrong_side_is_refused_and_nothing_is_stored(alice_account, paper, side, stop, target, field):
    with pytest.raises(services.InvalidOrder) as refused:
        submit(alice_account, market(side, 1), bracket=bracket(stop, target))

    assert refused.value.code == "bracket_wrong_side"
    assert refused.value.field == field
    assert "must be" in refused.value.detail
    assert not Order.objects.exists() and not OrderGroup.objects.exists()


def test_stop_fill_cancels_the_target_at_the_venue_and_ends_the_context(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 2), bracket=bracket(8, 8))
    with commit():
        paper.price("MESZ6", "4998.00")

    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    assert (stop.status, target.status) == (OrderStatus.FILLED, OrderStatus.CANCELED)
    assert at_venue(target).status == "canceled"
    assert position(alice_account) == 0
    assert OrderGroup.objects.get(pk=entry.group_id).status == OrderGroupStatus.DONE


def test_oco_pair_touched_in_one_price_move_fills_exactly_one_leg(alice_account, paper, commit):
    with commit():
        group = groups.submit_oco(
            account=alice_account,
            intents=(
                OrderIntent(
                    symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.STOP, stop_price=D("5005.00")
                ),
                limit(OrderSide.SELL, 1, "5008.00"),
            ),
            source=OrderSource.API,
            created_by=None,
        )
    with commit():
        paper.price("MESZ6", "5010.00")  # through both: the buy stop and the sell limit

    at_the_venue = VenueOrder.objects.filter(oco_group=f"pd-g{group.pk}")
    assert sorted(at_the_venue.values_list("status", flat=True)) == ["canceled", "filled"]
    assert sorted(group.legs.values_list("status", flat=True)) == [OrderStatus.CANCELED, OrderStatus.FILLED]
    assert position(alice_account) == 1


def test_partial_fill_of_the_target_reduces_the_stop(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 3), bracket=bracket(8, "5001.00"))
    VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=1)
    with commit():
        paper.price("MESZ6", "5001.00")  # the target trades 1 of 3

    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    assert position(alice_account) == 2
    assert (target.status, target.filled_quantity) == (OrderStatus.PARTIALLY_FILLED, 1)
    assert stop.remaining_quantity == 2 and at_venue(stop).quantity == 2


def test_scale_in_with_its_own_bracket_merges_into_the_context(alice_account, paper, commit):
    with commit():
        first = submit(alice_account, market(OrderSide.BUY, 1), bracket=bracket("4990.00", "5020.00"))
    with commit():
        paper.price("MESZ6", "5004.00")
    with commit():
        add = submit(alice_account, market(OrderSide.BUY, 2), bracket=bracket("4998.00", "5030.00"))

    context = OrderGroup.objects.get(pk=first.group_id)
    added = OrderGroup.objects.get(pk=add.group_id)
    assert context.status == OrderGroupStatus.ACTIVE
    assert (added.status, added.merged_into_id) == (OrderGroupStatus.DONE, context.pk)
    assert all(leg.status == OrderStatus.CANCELED for leg in legs(add).values() if leg.role != OrderRole.ENTRY)
    stop, target = legs(first)[OrderRole.STOP_LOSS], legs(first)[OrderRole.TAKE_PROFIT]
    assert (at_venue(stop).quantity, at_venue(stop).stop_price) == (3, D("4998.00"))
    assert (at_venue(target).quantity, at_venue(target).limit_price) == (3, D("5030.00"))
    assert (stop.quantity, stop.stop_price, stop.pending_change) == (3, D("4998.00"), {})
    assert len(live_legs(alice_account, OrderRole.STOP_LOSS)) == 1


def test_plain_add_and_partial_exit_resize_the_legs(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 2), bracket=bracket(8, 8))
    with commit():
        submit(alice_account, market(OrderSide.BUY, 1))
    assert at_venue(legs(entry)[OrderRole.STOP_LOSS]).quantity == 3
    with commit():
        submit(alice_account, market(OrderSide.SELL, 2))

    stop, target = legs(entry)[OrderRole.STOP_LOSS], legs(entry)[OrderRole.TAKE_PROFIT]
    assert position(alice_account) == 1
    assert (at_venue(stop).quantity, at_venue(target).quantity) == (1, 1)
    assert (stop.quantity, target.quantity) == (1, 1)


def test_closing_by_hand_cancels_the_legs(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 2), bracket=bracket(8, 8))
    with commit():
        services.close_position(position=Position.objects.get(account=alice_account))

    assert position(alice_account) == 0
    assert {leg.status for leg in legs(entry).values() if leg.role != OrderRole.ENTRY} == {OrderStatus.CANCELED}
    assert not VenueOrder.objects.filter(status="working").exists()


def test_flatten_cancels_held_and_working_legs_and_closes(alice_account, paper, commit):
    with commit():
        working = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"), bracket=bracket(8, 8))
        filled = submit(alice_account, market(OrderSide.BUY, 1), bracket=bracket(8, 8))
    with commit():
        services.flatten_account(account=alice_account)

    assert position(alice_account) == 0
    assert not Order.objects.filter(status__in=[OrderStatus.HELD, OrderStatus.ACCEPTED, OrderStatus.NEW]).exists()
    assert not VenueOrder.objects.filter(status="working").exists()
    assert OrderGroup.objects.get(pk=working.group_id).status == OrderGroupStatus.CANCELED
    assert OrderGroup.objects.get(pk=filled.group_id).status == OrderGroupStatus.DONE


def test_cancelling_the_entry_cancels_its_held_legs(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"), bracket=bracket(8, 8))
    with commit():
        services.request_cancel(order=entry)

    assert {leg.status for leg in legs(entry).values()} == {OrderStatus.CANCELED}
    assert OrderGroup.objects.get(pk=entry.group_id).status == OrderGroupStatus.CANCELED


def test_a_restart_loses_nothing_held_legs_go_out_when_a_lost_fill_is_reconciled(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, limit(OrderSide.BUY, 1, "4995.00"), bracket=bracket(8, 8))
    venue.inject_fault("lose_events")  # the entry fills at the venue; the push with its fill is lost
    with commit():
        paper.price("MESZ6", "4995.00")
    assert legs(entry)[OrderRole.STOP_LOSS].status == OrderStatus.HELD  # the fill has not reached us

    with commit():
        services.reconcile_order(order_id=entry.pk)

    assert position(alice_account) == 1
    assert at_venue(legs(entry)[OrderRole.STOP_LOSS]).status == "working"


# -- Emulated links (a broker without OCO) ---------------------------------------------------------------


def test_emulated_stop_fill_cancels_the_target(alice_account, paper, commit, emulated_oco):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 1), bracket=bracket(8, 8))
    assert at_venue(legs(entry)[OrderRole.STOP_LOSS]).oco_group == ""  # not linked at the venue
    with commit():
        paper.price("MESZ6", "4998.00")

    assert legs(entry)[OrderRole.TAKE_PROFIT].status == OrderStatus.CANCELED
    assert at_venue(legs(entry)[OrderRole.TAKE_PROFIT]).status == "canceled"
    assert position(alice_account) == 0


def test_emulated_partial_target_fill_resizes_the_stop_by_modify(alice_account, paper, commit, emulated_oco):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 3), bracket=bracket(8, "5001.00"))
    VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=1)
    with commit():
        paper.price("MESZ6", "5001.00")

    stop = legs(entry)[OrderRole.STOP_LOSS]
    assert (stop.quantity, at_venue(stop).quantity) == (2, 2)
    assert stop.events.filter(type="modified").exists()


# -- Sides ---------------------------------------------------------------------------------------------


def test_an_order_that_would_carry_a_long_through_flat_is_refused_unless_a_reverse(alice_account, paper, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))

    with pytest.raises(SideConflict) as refused:
        submit(alice_account, market(OrderSide.SELL, 3))
    assert refused.value.code == "position_side_conflict"
    assert "reverse" in refused.value.detail
    with pytest.raises(SideConflict):
        submit(alice_account, market(OrderSide.BUY, 1, position_effect=PositionEffect.REDUCE))

    with commit():
        submit(alice_account, market(OrderSide.SELL, 3, position_effect=PositionEffect.REVERSE))
    assert position(alice_account) == -1


def test_working_orders_against_the_position_count(alice_account, paper, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 2))
        submit(alice_account, limit(OrderSide.SELL, 1, "5010.00"))

    with pytest.raises(SideConflict, match="at most 1 to reduce"):
        submit(alice_account, limit(OrderSide.SELL, 2, "5011.00"))
    with commit():
        submit(alice_account, limit(OrderSide.SELL, 1, "5011.00"))  # exactly to flat: fine


# -- OCO pairs -------------------------------------------------------------------------------------------


def test_oco_pair_one_fill_cancels_the_other(alice_account, paper, commit):
    with commit():
        group = groups.submit_oco(
            account=alice_account,
            intents=(
                replace(limit(OrderSide.BUY, 1, "4990.00"), order_type=OrderType.LIMIT),
                OrderIntent(
                    symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.STOP, stop_price=D("5010.00")
                ),
            ),
            source=OrderSource.API,
            created_by=None,
        )
    with commit():
        paper.price("MESZ6", "5010.00")

    buy_limit, buy_stop = group.legs.order_by("pk")
    assert (buy_stop.status, buy_limit.status) == (OrderStatus.FILLED, OrderStatus.CANCELED)
    assert at_venue(buy_limit).status == "canceled"
    group.refresh_from_db()
    assert group.status == OrderGroupStatus.DONE
    assert position(alice_account) == 1


# -- Modify --------------------------------------------------------------------------------------------------


def test_modify_changes_our_record_only_when_the_broker_confirms(alice_account, paper, commit, monkeypatch):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 2, "4990.00"))
    sent = []
    monkeypatch.setattr("orders.tasks.send_modifies_to_broker_task.delay", lambda ids: sent.append(ids))
    # Hold the send: the change waits, our terms stay as they are.
    with commit():
        services.modify_order(order=order, change=services.OrderChange(limit_price=D("4992.50"), quantity=3))
    order.refresh_from_db()
    assert order.limit_price == D("4990.00") and order.quantity == 2
    assert order.pending_change["limit_price"] == "4992.50"
    with pytest.raises(services.ChangePending):
        services.modify_order(order=order, change=services.OrderChange(limit_price=D("4991.00")))

    services.send_modifies_to_broker(order_ids=sent[0])

    order.refresh_from_db()
    assert (order.limit_price, order.quantity, order.pending_change) == (D("4992.50"), 3, {})
    assert (at_venue(order).limit_price, at_venue(order).quantity) == (D("4992.50"), 3)
    assert [e.type for e in order.events.order_by("id")][-2:] == ["modify_requested", "modified"]
    # When we sent it and when the venue made it: the change's latency, on our side and theirs.
    confirmed = order.events.get(type="modified").payload
    sent_at, made_at = (datetime.fromisoformat(confirmed[k]) for k in ("sent_at", "broker_time"))
    assert sent_at <= made_at == at_venue(order).updated_at


def test_modify_refused_by_the_broker_leaves_the_old_terms_and_says_why(alice_account, paper, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    venue.cancel_order(account_ref="PAPER-A1", client_order_id=order.client_order_id)  # gone at the venue; we lag

    with commit():
        services.modify_order(order=order, change=services.OrderChange(limit_price=D("4991.00")))

    order.refresh_from_db()
    assert order.limit_price == D("4990.00") and order.pending_change == {}
    refused = order.events.get(type="modify_rejected")
    assert "Refused by the broker" in refused.detail


def test_modify_whose_answer_is_lost_is_settled_by_reconciliation(alice_account, paper, commit):
    with commit():
        order = submit(alice_account, limit(OrderSide.BUY, 1, "4990.00"))
    venue.inject_fault("lose_response")
    # The change reaches the venue, its answer does not: unknown, so it is never sent again;
    # the reconcile task (inline here) asks the venue and takes its terms.
    with commit():
        services.modify_order(order=order, change=services.OrderChange(limit_price=D("4991.00")))

    order.refresh_from_db()
    assert (order.limit_price, order.pending_change) == (D("4991.00"), {})
    types = [e.type for e in order.events.order_by("id")]
    assert types[-3:] == ["modify_requested", "outcome_unknown", "modified"]
    assert VenueOrder.objects.filter(client_order_id=order.client_order_id).count() == 1


def test_a_stop_leg_cannot_be_moved_through_the_market(alice_account, paper, commit):
    with commit():
        entry = submit(alice_account, market(OrderSide.BUY, 1), bracket=bracket(8, 8))

    with pytest.raises(services.InvalidOrder, match="must be below the market"):
        services.modify_order(
            order=legs(entry)[OrderRole.STOP_LOSS], change=services.OrderChange(stop_price=D("5001.00"))
        )
    with pytest.raises(services.InvalidOrder) as managed:
        services.modify_order(order=legs(entry)[OrderRole.STOP_LOSS], change=services.OrderChange(quantity=5))
    assert managed.value.code == "leg_quantity_managed"


# -- Trailing stops (native at the paper venue) --------------------------------------------------------------


def test_native_trailing_stop_follows_the_market_and_fills(alice_account, paper, commit):
    with commit():
        submit(alice_account, market(OrderSide.BUY, 1))
        trail = submit(
            alice_account,
            OrderIntent(
                symbol="MES", side=OrderSide.SELL, quantity=1, order_type=OrderType.TRAILING_STOP, trail_amount=D("2")
            ),
        )
    assert trail.stop_price == D("4998.00")
    with commit():
        paper.price("MESZ6", "5005.00")
    trail.refresh_from_db()
    assert (at_venue(trail).stop_price, trail.stop_price) == (D("5003.00"), D("5003.00"))
    with commit():
        paper.price("MESZ6", "5003.00")

    trail.refresh_from_db()
    assert trail.status == OrderStatus.FILLED
    assert position(alice_account) == 0
