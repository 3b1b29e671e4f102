"""Position-management plans on PostgreSQL and Redis with the in-process paper venue.

Outcomes are read where they matter: the stop at the venue, our orders and positions, and the
plan's events. Prices move through brokers.paper.feed.publish_price (the plans' trigger runs in
risk.services.apply_price; Celery runs eagerly).
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.services import grant_account_access
from brokers.adapters.paper import PaperBroker
from brokers.interface import Capability
from brokers.paper import venue
from brokers.paper.models import VenueOrder
from brokers.paper.venue import VenueError
from orders import groups, plan_service, services, tasks
from orders.domain import BracketSpec, Level, OrderIntent, OrderRole, OrderSide, OrderSource, OrderStatus, OrderType
from orders.models import Order, PlanEventKind, PlanStatus, Position, PositionPlan
from orders.plans import parse_plan_request
from tests.conftest import client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
D = Decimal


def buy(quantity: int, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def sell(quantity: int, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    return OrderIntent(symbol="MES", side=OrderSide.SELL, quantity=quantity, order_type=OrderType.MARKET, **kwargs)


def open_position(account, intent: OrderIntent, commit, stop_ticks: int | None = None) -> Position:  # type: ignore[no-untyped-def]
    bracket = BracketSpec(stop_loss=Level(ticks=stop_ticks)) if stop_ticks else None
    with commit():
        services.submit_order(account=account, intent=intent, source=OrderSource.API, bracket=bracket)
    return Position.objects.get(account=account)


def attach(position: Position, commit, **body) -> PositionPlan:  # type: ignore[no-untyped-def]
    with commit():
        return plan_service.attach_plan(
            position=position, request=parse_plan_request(body, now=timezone.now()), source="api"
        )


def stop_leg(account) -> Order:  # type: ignore[no-untyped-def]
    leg = groups.protective_leg(
        account_id=account.pk,
        instrument_id=Position.objects.get(account=account).instrument_id,
        role=OrderRole.STOP_LOSS,
    )
    assert leg is not None
    return leg


def venue_stop(order: Order) -> VenueOrder:
    return VenueOrder.objects.get(client_order_id=order.client_order_id)


def kinds(plan: PositionPlan) -> list[str]:
    return list(plan.events.order_by("occurred_at", "id").values_list("kind", flat=True))


def move(paper, commit, *prices: str) -> None:  # type: ignore[no-untyped-def]
    for price in prices:
        with commit():
            paper.price("MESZ6", price)


def refuse_venue_modifies(monkeypatch, reason_for) -> None:  # type: ignore[no-untyped-def]
    """The venue refuses the changes `reason_for(ticket)` gives a reason for (one or a batch)."""
    real = venue.modify_orders

    def modify_orders(tickets):  # type: ignore[no-untyped-def]
        reasons = [reason_for(ticket) for ticket in tickets]
        taken = iter(real([t for t, reason in zip(tickets, reasons, strict=True) if not reason]))
        return [VenueError(reason) if reason else next(taken) for reason in reasons]

    monkeypatch.setattr(venue, "modify_orders", modify_orders)


@pytest.fixture
def published(monkeypatch):  # type: ignore[no-untyped-def]
    events: list[tuple[int, str, dict]] = []
    monkeypatch.setattr(plan_service, "publish_account_event", lambda *args: events.append(args))
    return events


# -- Starting a plan -------------------------------------------------------------------------------


def test_plan_takes_r_from_the_brackets_stop(alice_account, commit, published):
    position = open_position(alice_account, buy(10), commit, stop_ticks=40)

    plan = attach(position, commit)

    plan.refresh_from_db()
    assert (plan.side, plan.entry_price, plan.initial_stop_price, plan.initial_quantity) == (
        "long",
        D("5000.00"),
        D("4990.00"),
        10,
    )
    assert plan.partial_exits == [{"r": "1.5", "percent": 50}, {"r": "2.5", "percent": 30}, {"r": "4", "percent": 20}]
    assert kinds(plan) == [PlanEventKind.STARTED]
    assert "R = 10" in plan.events.get().detail
    assert [(account, kind) for account, kind, _ in published] == [(alice_account.pk, "plan.updated")]
    assert published[0][2]["events"][0]["kind"] == "started"


def test_plan_on_a_position_without_a_stop_gives_it_one_at_the_venue(alice_account, commit):
    position = open_position(alice_account, sell(2), commit)

    plan = attach(position, commit, initial_stop_ticks=20)

    leg = stop_leg(alice_account)
    assert (leg.side, leg.stop_price, leg.quantity) == (OrderSide.BUY, D("5005.00"), 2)
    assert (venue_stop(leg).status, venue_stop(leg).stop_price) == ("working", D("5005.00"))
    assert (plan.side, plan.initial_stop_price) == ("short", D("5005.00"))


def test_plan_without_any_stop_is_refused_and_nothing_is_stored(alice_account, commit):
    position = open_position(alice_account, buy(1), commit)

    with pytest.raises(plan_service.InvalidPlan) as refused:
        attach(position, commit)

    assert refused.value.code == "initial_stop_required"
    assert not PositionPlan.objects.exists()
    assert not Order.objects.filter(role=OrderRole.STOP_LOSS).exists()


def test_a_new_plan_replaces_the_active_one(alice_account, commit):
    position = open_position(alice_account, buy(2), commit, stop_ticks=40)
    first = attach(position, commit)

    second = attach(position, commit, trail_ticks=8)

    first.refresh_from_db()
    assert first.status == PlanStatus.CANCELED and kinds(first)[-1] == PlanEventKind.FINISHED
    assert PositionPlan.objects.get(status=PlanStatus.ACTIVE).pk == second.pk


# -- Acting on prices ------------------------------------------------------------------------------


def test_partial_exits_at_r_multiples_go_through_the_order_path(alice_account, paper, commit, published):
    position = open_position(alice_account, buy(10), commit, stop_ticks=40)
    plan = attach(position, commit)

    move(paper, commit, "5015.00")  # 1.5R: 50%

    position.refresh_from_db()
    assert position.quantity == 5
    exit_order = Order.objects.get(source=OrderSource.PLAN)
    assert (exit_order.side, exit_order.quantity, exit_order.status) == (OrderSide.SELL, 5, OrderStatus.FILLED)
    event = plan.events.get(kind=PlanEventKind.PARTIAL_EXIT)
    assert (event.order_id, event.price, event.payload["quantity"]) == (exit_order.pk, D("5015.00"), 5)
    # The stop follows the position's size (orders.groups), at the venue too.
    leg = stop_leg(alice_account)
    assert (leg.remaining_quantity, venue_stop(leg).remaining) == (5, 5)

    move(paper, commit, "5016.00", "5025.00")  # 2.5R: 30% of 10

    position.refresh_from_db()
    assert position.quantity == 2
    plan.refresh_from_db()
    assert plan.exits_done == 2
    assert list(Order.objects.filter(source=OrderSource.PLAN).order_by("pk").values_list("quantity", flat=True)) == [
        5,
        3,
    ]
    assert "plan.updated" in {kind for _, kind, _ in published}


def test_partial_exit_happens_when_the_plan_placed_the_stop_itself(alice_account, paper, commit):
    # The stop the plan placed is a PLAN-source order like the exits, but a resting stop, not a
    # close on its way: it must not use up the contracts the exit may close.
    position = open_position(alice_account, buy(4), commit)
    plan = attach(position, commit, initial_stop_ticks=40, partial_exits=[{"r": "1", "percent": 50}])
    assert stop_leg(alice_account).source == OrderSource.PLAN

    move(paper, commit, "5010.00")  # 1R

    position.refresh_from_db()
    assert position.quantity == 2
    assert plan.events.get(kind=PlanEventKind.PARTIAL_EXIT).payload["quantity"] == 2


def test_a_partial_exit_the_broker_rejects_becomes_a_failed_plan_event_once(alice_account, paper, commit):
    position = open_position(alice_account, buy(10), commit, stop_ticks=40)
    plan = attach(position, commit)
    venue.inject_fault("reject_next_order")

    move(paper, commit, "5015.00", "5015.25", "5015.50")  # 1.5R: the exit goes out and is refused

    exit_order = Order.objects.get(source=OrderSource.PLAN)
    assert exit_order.status == OrderStatus.REJECTED
    position.refresh_from_db()
    assert position.quantity == 10
    failed = plan.events.get(kind=PlanEventKind.FAILED)  # once, though evaluated again after
    assert failed.order_id == exit_order.pk
    assert "rejected by the broker" in failed.detail and "simulated rejection" in failed.detail
    assert failed.payload["rejected_exit"] == plan.events.get(kind=PlanEventKind.PARTIAL_EXIT).pk


def test_breakeven_moves_the_stop_at_the_venue(alice_account, paper, commit):
    position = open_position(alice_account, buy(2), commit, stop_ticks=40)
    plan = attach(position, commit, partial_exits=[], breakeven_after_ticks=8, breakeven_offset_ticks=1)

    move(paper, commit, "5001.75")  # 7 ticks: nothing yet
    leg = stop_leg(alice_account)
    assert venue_stop(leg).stop_price == D("4990.00")

    move(paper, commit, "5002.00")

    leg.refresh_from_db()
    assert (leg.stop_price, venue_stop(leg).stop_price) == (D("5000.25"), D("5000.25"))
    plan.refresh_from_db()
    assert plan.breakeven_done
    event = plan.events.get(kind=PlanEventKind.BREAKEVEN)
    assert (event.payload, event.order_id) == ({"from": "4990.00", "to": "5000.25"}, leg.pk)


def test_trailing_stop_follows_then_the_stop_fills_and_the_plan_finishes(alice_account, paper, commit, published):
    position = open_position(alice_account, buy(2), commit, stop_ticks=40)
    plan = attach(
        position, commit, partial_exits=[], trail_after_ticks=12, trail_ticks=8, trail_steps=[{"r": "1", "ticks": 4}]
    )

    move(paper, commit, "5003.00")  # 12 ticks: trailing starts 8 behind
    leg = stop_leg(alice_account)
    assert venue_stop(leg).stop_price == D("5001.00")
    move(paper, commit, "5006.00", "5005.00")  # higher, then a dip: the stop stays
    assert venue_stop(leg).stop_price == D("5004.00")
    move(paper, commit, "5010.00")  # 1R: tightened to 4 ticks behind
    assert venue_stop(leg).stop_price == D("5009.00")

    move(paper, commit, "5008.75")  # through the stop

    position.refresh_from_db()
    assert position.quantity == 0
    plan.refresh_from_db()
    assert plan.status == PlanStatus.DONE
    trail_moves = [e.payload["to"] for e in plan.events.filter(kind=PlanEventKind.TRAIL).order_by("id")]
    assert trail_moves == ["5001.00", "5004.00", "5009.00"]
    assert kinds(plan)[-1] == PlanEventKind.FINISHED
    assert published[-1][2]["status"] == "done"


def test_one_price_moves_every_plans_stop_in_one_batch_sent_once(paper, commit, monkeypatch):
    accounts = [paper.open_account(f"Trail {n}", ref=f"PAPER-T{n}") for n in range(3)]
    plans = []
    for account in accounts:
        position = open_position(account, buy(1), commit, stop_ticks=40)
        plans.append(attach(position, commit, partial_exits=[], trail_after_ticks=4, trail_ticks=8))
    batches: list[list[int]] = []
    real_send = services.send_modifies_to_broker
    monkeypatch.setattr(
        services,
        "send_modifies_to_broker",
        lambda *, order_ids: (batches.append(order_ids), real_send(order_ids=order_ids)),
    )

    move(paper, commit, "5002.00")  # 8 ticks up: every plan trails 8 behind, at 5000.00

    legs = [stop_leg(account) for account in accounts]
    assert batches == [sorted(leg.pk for leg in legs)]  # one batch, not one send per stop
    assert [venue_stop(leg).stop_price for leg in legs] == [D("5000.00")] * 3
    assert [(leg.stop_price, leg.pending_change) for leg in legs] == [(D("5000.00"), {})] * 3
    for plan in plans:
        assert plan.events.get(kind=PlanEventKind.TRAIL).payload == {"from": "4990.00", "to": "5000.00"}


def test_a_stop_move_is_booked_from_the_answer_only(alice_account, paper, commit, monkeypatch):
    position = open_position(alice_account, buy(1), commit, stop_ticks=40)
    attach(position, commit, partial_exits=[], trail_after_ticks=4, trail_ticks=8)
    pushed: list[list[dict]] = []
    monkeypatch.setattr(venue, "_push_target", lambda: lambda stream_key, events: pushed.append(events))

    move(paper, commit, "5002.00")

    leg = stop_leg(alice_account)
    assert (leg.stop_price, leg.pending_change, venue_stop(leg).stop_price) == (D("5000.00"), {}, D("5000.00"))
    assert leg.events.filter(type="modified").count() == 1
    # The venue's answer carried the changed stop: its stream had nothing more to say.
    assert [e for events in pushed for e in events if e.get("clientOrderId") == leg.client_order_id] == []


def test_a_batch_whose_answer_is_lost_is_reconciled_not_resent(paper, commit, monkeypatch):
    accounts = [paper.open_account(f"Trail {n}", ref=f"PAPER-T{n}") for n in range(2)]
    for account in accounts:
        attach(
            open_position(account, buy(1), commit, stop_ticks=40),
            commit,
            partial_exits=[],
            trail_after_ticks=4,
            trail_ticks=8,
        )
    calls: list[int] = []
    real = venue.modify_orders
    monkeypatch.setattr(venue, "modify_orders", lambda tickets: (calls.append(len(tickets)), real(tickets))[1])
    venue.inject_fault("lose_response")  # the venue moves both stops; the answer never arrives

    move(paper, commit, "5002.00")

    legs = [stop_leg(account) for account in accounts]
    assert calls == [2]  # one request for both, never sent again
    for leg in legs:
        assert leg.events.filter(type="outcome_unknown").count() == 1
        # Reconciliation (eager here) took the broker's stop as ours.
        assert (leg.stop_price, leg.pending_change, venue_stop(leg).stop_price) == (D("5000.00"), {}, D("5000.00"))


def test_a_price_during_a_round_is_evaluated_by_that_round(alice_account, paper, commit):
    position = open_position(alice_account, buy(1), commit, stop_ticks=40)
    attach(position, commit, partial_exits=[], trail_after_ticks=4, trail_ticks=8)
    redis = plan_service.get_redis()
    redis.set(plan_service._evaluation_slot("MESZ6"), "1")  # a round is running (another worker)

    move(paper, commit, "5002.00")

    leg = stop_leg(alice_account)
    assert venue_stop(leg).stop_price == D("4990.00")  # not evaluated twice at once
    with commit():
        plan_service.evaluate_round("MESZ6")  # the running round finishes its run ...

    leg = stop_leg(alice_account)
    assert (leg.stop_price, venue_stop(leg).stop_price) == (D("5000.00"), D("5000.00"))  # ... and ran again
    assert not redis.exists(plan_service._evaluation_slot("MESZ6"))  # the next price starts a round
    move(paper, commit, "5003.00")
    assert venue_stop(stop_leg(alice_account)).stop_price == D("5001.00")


def test_a_stop_move_refused_in_a_batch_leaves_the_others_moved(paper, commit, monkeypatch):
    accounts = [paper.open_account(f"Trail {n}", ref=f"PAPER-T{n}") for n in range(2)]
    for account in accounts:
        attach(
            open_position(account, buy(1), commit, stop_ticks=40),
            commit,
            partial_exits=[],
            trail_after_ticks=4,
            trail_ticks=8,
        )
    refused = stop_leg(accounts[0]).client_order_id
    refuse_venue_modifies(
        monkeypatch, lambda ticket: "stop price too close" if ticket["client_order_id"] == refused else ""
    )

    move(paper, commit, "5002.00")

    kept, moved = (stop_leg(account) for account in accounts)
    assert (venue_stop(kept).stop_price, kept.stop_price, kept.pending_change) == (D("4990.00"), D("4990.00"), {})
    assert (venue_stop(moved).stop_price, moved.stop_price) == (D("5000.00"), D("5000.00"))


def test_short_plan_trails_down(alice_account, paper, commit):
    position = open_position(alice_account, sell(1), commit, stop_ticks=20)
    attach(position, commit, partial_exits=[], trail_after_ticks=0, trail_ticks=4)

    move(paper, commit, "4998.00")
    assert venue_stop(stop_leg(alice_account)).stop_price == D("4999.00")
    move(paper, commit, "4998.50", "4996.00")  # against it (the stop stays), then further down

    assert venue_stop(stop_leg(alice_account)).stop_price == D("4997.00")


def test_time_exit_closes_the_rest(alice_account, paper, commit):
    position = open_position(alice_account, buy(3), commit, stop_ticks=40)
    plan = attach(position, commit, exit_at=(timezone.now() + timedelta(seconds=30)).isoformat())
    PositionPlan.objects.filter(pk=plan.pk).update(exit_at=timezone.now() - timedelta(seconds=1))  # time passes

    with commit():
        tasks.evaluate_plans_task.delay("MESZ6")  # what attach_plan scheduled for exit_at

    position.refresh_from_db()
    plan.refresh_from_db()
    assert position.quantity == 0
    assert plan.time_exit_done and plan.status == PlanStatus.DONE
    assert kinds(plan) == [PlanEventKind.STARTED, PlanEventKind.TIME_EXIT, PlanEventKind.FINISHED]
    assert Order.objects.get(source=OrderSource.PLAN).quantity == 3


def test_a_refused_stop_move_keeps_the_old_stop_is_recorded_and_asked_again(alice_account, paper, commit, monkeypatch):
    position = open_position(alice_account, buy(1), commit, stop_ticks=40)
    plan = attach(position, commit, partial_exits=[], breakeven_after_ticks=8)
    refusals = iter(["Stop price too close to the market (simulated)."])
    refuse_venue_modifies(monkeypatch, lambda ticket: next(refusals, ""))

    move(paper, commit, "5002.00")

    leg = stop_leg(alice_account)
    failed = plan.events.get(kind=PlanEventKind.FAILED)
    assert "refused" in failed.detail and "stays at 4990.00" in failed.detail and "asking again" in failed.detail
    assert leg.events.filter(type="modify_rejected").count() == 1
    # The follow-up asked again, and the broker took it this time.
    assert (leg.stop_price, venue_stop(leg).stop_price) == (D("5000.00"), D("5000.00"))
    assert [e.kind for e in plan.events.order_by("id")] == [
        PlanEventKind.STARTED,
        PlanEventKind.BREAKEVEN,
        PlanEventKind.FAILED,
        PlanEventKind.BREAKEVEN,
    ]


def test_a_stop_the_broker_always_refuses_is_given_up_after_three_refusals(alice_account, paper, commit, monkeypatch):
    position = open_position(alice_account, buy(1), commit, stop_ticks=40)
    plan = attach(position, commit, partial_exits=[], breakeven_after_ticks=8)

    refuse_venue_modifies(monkeypatch, lambda ticket: "Modifications are disabled (simulated).")

    move(paper, commit, "5002.00", "5002.25", "5002.50", "5002.75")

    leg = stop_leg(alice_account)
    assert (leg.stop_price, venue_stop(leg).stop_price) == (D("4990.00"), D("4990.00"))
    failed = list(plan.events.filter(kind=PlanEventKind.FAILED).order_by("id"))
    assert len(failed) == plan_service.MAX_STOP_REFUSALS
    assert "no more stop moves" in failed[-1].detail
    assert leg.events.filter(type="modify_rejected").count() == plan_service.MAX_STOP_REFUSALS


# -- Program defaults ----------------------------------------------------------------------------


def test_program_default_plan_starts_when_a_position_opens_and_only_once(alice_account, paper, commit):
    program = alice_account.program
    program.default_position_plan = {"initial_stop_ticks": 40, "partial_exits": [], "breakeven_after_ticks": 8}
    program.save()

    position = open_position(alice_account, buy(2), commit)

    plan = PositionPlan.objects.get(position=position)
    assert (plan.source, plan.initial_stop_price, plan.breakeven_after_ticks) == ("program", D("4990.00"), 8)
    leg = stop_leg(alice_account)
    assert venue_stop(leg).stop_price == D("4990.00")
    # Cancelled by the trader: a scale-in does not start it again.
    plan_service.cancel_plan(plan=plan)
    with commit():
        services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
    assert PositionPlan.objects.filter(status=PlanStatus.ACTIVE).count() == 0
    # Flat, then a new position: a new default plan.
    with commit():
        services.close_position(position=Position.objects.get(account=alice_account))
    open_position(alice_account, sell(1), commit)
    assert PositionPlan.objects.get(status=PlanStatus.ACTIVE).side == "short"


def test_a_default_plan_that_cannot_start_does_not_stop_the_fill(alice_account, commit):
    program = alice_account.program
    program.default_position_plan = {"partial_exits": []}  # no stop to measure R from
    program.save()

    position = open_position(alice_account, buy(1), commit)

    assert position.quantity == 1
    assert not PositionPlan.objects.exists()


# -- Emulated trailing stop orders -------------------------------------------------------------------


@pytest.fixture
def emulated_trailing(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(PaperBroker, "capabilities", PaperBroker.capabilities - {Capability.TRAILING_STOP})


def test_emulated_trailing_stop_goes_out_as_a_stop_and_we_move_it(alice_account, paper, commit, emulated_trailing):
    with commit():
        services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
        trail = services.submit_order(
            account=alice_account,
            intent=OrderIntent(
                symbol="MES", side=OrderSide.SELL, quantity=1, order_type=OrderType.TRAILING_STOP, trail_amount=D("2")
            ),
            source=OrderSource.API,
        ).order
    at_venue = venue_stop(trail)
    assert (at_venue.order_type, at_venue.stop_price, at_venue.trail_amount) == ("stop", D("4998.00"), None)

    move(paper, commit, "5005.00")
    trail.refresh_from_db()
    assert (venue_stop(trail).stop_price, trail.stop_price) == (D("5003.00"), D("5003.00"))
    move(paper, commit, "5004.00")  # against us: it stays
    assert venue_stop(trail).stop_price == D("5003.00")

    move(paper, commit, "5003.00")

    trail.refresh_from_db()
    assert trail.status == OrderStatus.FILLED
    assert Position.objects.get(account=alice_account).quantity == 0
    assert trail.events.filter(type="modified").count() == 1


def test_native_trailing_stops_are_left_to_the_broker(alice_account, paper, commit, monkeypatch):
    with commit():
        services.submit_order(account=alice_account, intent=buy(1), source=OrderSource.API)
        services.submit_order(
            account=alice_account,
            intent=OrderIntent(
                symbol="MES", side=OrderSide.SELL, quantity=1, order_type=OrderType.TRAILING_STOP, trail_amount=D("2")
            ),
            source=OrderSource.API,
        )
    asked = []
    monkeypatch.setattr(services, "modify_order", lambda **kwargs: asked.append(kwargs))

    move(paper, commit, "5005.00")

    assert asked == []


# -- API -------------------------------------------------------------------------------------------


def plan_url(position: Position) -> str:
    return f"/api/v1/positions/{position.pk}/plan/"


def test_api_attaches_reads_and_cancels_a_plan(alice_api, alice_account, paper, commit):
    position = open_position(alice_account, buy(4), commit)

    with commit():
        created = alice_api.post(
            plan_url(position),
            {"initial_stop": "4995.00", "breakeven_after_ticks": 8, "trail_ticks": 8, "trail_after_ticks": 12},
            format="json",
        )

    assert created.status_code == 201
    body = created.json()
    assert (body["status"], body["side"], body["initial_stop_price"], body["entry_price"]) == (
        "active",
        "long",
        "4995.00",
        "5000.00",
    )
    assert [e["kind"] for e in body["events"]] == ["started"]
    plan = PositionPlan.objects.get()
    assert plan.created_by.username == "alice"
    assert venue_stop(stop_leg(alice_account)).stop_price == D("4995.00")

    move(paper, commit, "5002.00")
    read = alice_api.get(plan_url(position)).json()
    assert read["breakeven_done"] is True and [e["kind"] for e in read["events"]] == ["started", "breakeven"]

    with commit():
        deleted = alice_api.delete(plan_url(position))

    assert deleted.status_code == 200 and deleted.json()["status"] == "canceled"
    assert [e["kind"] for e in deleted.json()["events"]] == ["started", "breakeven", "finished"]
    assert venue_stop(stop_leg(alice_account)).stop_price == D("5000.00")  # the stop stays where it is
    assert alice_api.delete(plan_url(position)).json()["code"] == "plan_not_found"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (
            {"initial_stop": "4990", "partial_exits": [{"r": 1, "percent": 60}, {"r": 2, "percent": 50}]},
            "partial_exits_over_100",
        ),
        ({"initial_stop": "5010.00"}, "initial_stop_wrong_side"),
        ({"initial_stop": "4990.10"}, "price_off_tick"),
        ({}, "initial_stop_required"),
        ({"initial_stop": "4990", "trail": 8}, "unknown_field"),
    ],
)
def test_api_refuses_a_bad_plan_with_a_code_and_a_sentence_and_stores_nothing(
    alice_api, alice_account, commit, body, code
):
    position = open_position(alice_account, buy(1), commit)

    response = alice_api.post(plan_url(position), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["detail"].endswith(".")
    assert not PositionPlan.objects.exists()
    assert not Order.objects.filter(role=OrderRole.STOP_LOSS).exists()


def test_api_hides_other_traders_positions_and_refuses_watchers(alice_account, bob_api, commit):
    position = open_position(alice_account, buy(1), commit, stop_ticks=40)
    watcher = UserFactory(username="walt")
    with commit():
        grant_account_access(user=watcher, account=alice_account, can_trade=False)

    assert bob_api.get(plan_url(position)).status_code == 404
    assert bob_api.post(plan_url(position), {}, format="json").status_code == 404
    assert bob_api.delete(plan_url(position)).status_code == 404
    refused = client_for(watcher).post(plan_url(position), {}, format="json")
    assert refused.status_code == 403
    assert not PositionPlan.objects.exists()
