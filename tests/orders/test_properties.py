"""Properties on the database: random broker report sequences, and brackets under random price paths."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from brokers.interface import BrokerFill, BrokerOrder, ReportedStatus
from brokers.paper.models import VenueContract, VenueOrder
from orders import booking, services
from orders.domain import (
    ALLOWED_TRANSITIONS,
    BracketSpec,
    Level,
    OrderIntent,
    OrderRole,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
)
from orders.models import Fill, Order, Position

pytestmark = pytest.mark.django_db(transaction=False)
D = Decimal
DB_PROPERTY = settings(
    max_examples=25,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# -- Random broker reports --------------------------------------------------------------------------


def test_random_broker_reports_keep_the_state_table_and_apply_each_fill_once(alice_account, commit):
    account = alice_account
    connection_id = account.broker_connection_id
    counter = iter(range(10**6))

    class ReportSequence(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            n = next(counter)
            self.order = Order.objects.create(
                client_order_id=f"pd-prop-{n}",
                account=account,
                instrument_id=Order._meta.get_field("instrument").related_model.objects.get(symbol="MESZ6").pk,
                side="buy",
                quantity=5,
                order_type=OrderType.LIMIT,
                limit_price=D("4990"),
                source=OrderSource.API,
                status=OrderStatus.SUBMITTED,
            )
            self.held_before = self._held()
            self.applied: dict[str, int] = {}
            self.clock = timezone.now()

        def _held(self) -> int:
            position = Position.objects.filter(account=account, instrument__symbol="MESZ6").first()
            return position.quantity if position else 0

        def _tick(self) -> timezone.datetime:
            self.clock += timedelta(milliseconds=1)
            return self.clock

        @rule(status=st.sampled_from(list(ReportedStatus)), filled=st.integers(0, 5))
        def status_report(self, status: ReportedStatus, filled: int) -> None:
            report = BrokerOrder(
                account_ref=account.broker_account_id,
                broker_order_id=f"b-{self.order.pk}",
                client_order_id=self.order.client_order_id,
                symbol="MESZ6",
                side="buy",
                quantity=5,
                order_type="limit",
                status=status,
                filled_quantity=filled,
                avg_fill_price=None,
                limit_price=D("4990"),
                stop_price=None,
                reason="",
                occurred_at=self._tick(),
            )
            with commit():
                booking.apply_broker_reports(connection_id=connection_id, reports=[report])

        @rule(fill_no=st.integers(0, 6), quantity=st.integers(1, 2), repeat=st.booleans())
        def fill_report(self, fill_no: int, quantity: int, repeat: bool) -> None:
            fill_id = f"f-{self.order.pk}-{fill_no}"
            if fill_id not in self.applied and sum(self.applied.values()) + quantity > 5:
                return  # a broker never fills more than the order
            quantity = self.applied.get(fill_id, quantity)  # a repeated fill id is the same fill
            fill = BrokerFill(
                account_ref=account.broker_account_id,
                fill_id=fill_id,
                broker_order_id=f"b-{self.order.pk}",
                client_order_id=self.order.client_order_id,
                symbol="MESZ6",
                side="buy",
                quantity=quantity,
                price=D("4990"),
                fee=D("0.37"),
                occurred_at=self._tick(),
            )
            reports = [fill, fill] if repeat else [fill]
            with commit():
                booking.apply_broker_reports(connection_id=connection_id, reports=reports)
            self.applied.setdefault(fill_id, quantity)

        @invariant()
        def status_moves_only_by_the_state_table(self) -> None:
            order = Order.objects.get(pk=self.order.pk)
            assert order.status in OrderStatus.values
            for event in order.events.exclude(from_status="").exclude(to_status="").exclude(type="fill"):
                if event.from_status != event.to_status:
                    assert OrderStatus(event.to_status) in ALLOWED_TRANSITIONS[OrderStatus(event.from_status)]

        @invariant()
        def fills_apply_exactly_once(self) -> None:
            order = Order.objects.get(pk=self.order.pk)
            fills = Fill.objects.filter(order=order)
            assert sorted(fills.values_list("broker_fill_id", flat=True)) == sorted(self.applied)
            assert order.filled_quantity == sum(self.applied.values())
            assert self._held() - self.held_before == order.filled_quantity
            if order.filled_quantity == order.quantity and order.status != OrderStatus.FILLED:
                # Only a broker contradicting itself (fills on an order it rejected, which is
                # final by the state table) leaves it otherwise, and that is kept on record.
                assert order.status == OrderStatus.REJECTED
                assert order.events.filter(type="fill", detail__contains="fill on an order that was rejected").exists()

    run_state_machine_as_test(ReportSequence, settings=DB_PROPERTY)


# -- Brackets under random price paths ---------------------------------------------------------------


@st.composite
def price_paths(draw: st.DrawFn) -> tuple[int, int, int, int | None, list[int]]:
    quantity = draw(st.integers(1, 4))
    stop_ticks = draw(st.integers(2, 12))
    target_ticks = draw(st.integers(2, 12))
    max_fill = draw(st.one_of(st.none(), st.integers(1, 2)))
    steps = draw(st.lists(st.integers(-6, 6), min_size=1, max_size=14))
    return quantity, stop_ticks, target_ticks, max_fill, steps


def test_after_the_entry_fills_the_position_always_has_exactly_one_stop_of_its_size(paper, alice_account, commit):
    """Entry, then random moves (with partial fills when max_fill is set) and a scale-in: whenever
    the position is open it is covered by exactly one live stop whose unfilled size is the position."""
    from hypothesis import given

    tick = D("0.25")

    @DB_PROPERTY
    @given(path=price_paths())
    def check(path: tuple[int, int, int, int | None, list[int]]) -> None:
        quantity, stop_ticks, target_ticks, max_fill, steps = path
        with commit():
            services.flatten_account(account=alice_account)
            paper.price("MESZ6", "5000.00")
        VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=max_fill)
        with commit():
            services.submit_order(
                account=alice_account,
                intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=quantity, order_type=OrderType.MARKET),
                bracket=BracketSpec(stop_loss=Level(ticks=stop_ticks), take_profit=Level(ticks=target_ticks)),
                source=OrderSource.API,
            )
        price = D("5000.00")
        for i, step in enumerate(steps):
            price += step * tick
            with commit():
                paper.price("MESZ6", str(price))
            if i == 1 and _held(alice_account) > 0:
                with commit():
                    services.submit_order(
                        account=alice_account,
                        intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=1, order_type=OrderType.MARKET),
                        source=OrderSource.API,
                    )
            _assert_covered(alice_account)
        VenueContract.objects.filter(symbol="MESZ6").update(max_fill_size=None)

    check()


def _held(account) -> int:  # type: ignore[no-untyped-def]
    position = Position.objects.filter(account=account, instrument__symbol="MESZ6").first()
    return position.quantity if position else 0


def _assert_covered(account) -> None:  # type: ignore[no-untyped-def]
    held = _held(account)
    stops = Order.objects.filter(
        account=account,
        role=OrderRole.STOP_LOSS,
        status__in=[OrderStatus.NEW, OrderStatus.SUBMITTED, OrderStatus.ACCEPTED, OrderStatus.PARTIALLY_FILLED],
    )
    if held == 0:
        assert not stops.exists()
        assert not VenueOrder.objects.filter(account__ref=account.broker_account_id, status="working").exists()
        return
    assert stops.count() == 1, f"position {held}: {list(stops.values_list('status', 'quantity'))}"
    stop = stops.get()
    assert stop.remaining_quantity == abs(held)
    at_venue = VenueOrder.objects.get(client_order_id=stop.client_order_id)
    assert at_venue.status == "working"
    assert at_venue.quantity - at_venue.filled_quantity == abs(held)
