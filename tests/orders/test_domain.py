"""Pure tests of orders/domain.py: the order state table, report and fill mapping, validation, position arithmetic."""

from collections import deque
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brokers.interface import ReportedStatus
from brokers.ticks import normalize_price
from orders.domain import (
    ALLOWED_TRANSITIONS,
    CANCELABLE_STATUSES,
    FLAT,
    MAX_ORDER_QUANTITY,
    WORKING_STATUSES,
    InvalidOrder,
    InvalidTransition,
    OrderIntent,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionState,
    TimeInForce,
    average_fill_price,
    can_transition,
    check_transition,
    position_after_fill,
    status_after_fill,
    status_for_report,
    unrealized_pnl,
    validate_order_intent,
    validate_price,
    validate_quantity,
)

S = OrderStatus
R = ReportedStatus
ES_TICK = Decimal("0.25")
ZN_TICK = Decimal("0.015625")
MES_POINT_VALUE = Decimal("5")

# The hypothesis tests run inside the project's autouse Redis-flushing fixture; flushing once
# per test (not per example) is fine for pure code.
PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def reachable_from(start: OrderStatus) -> set[OrderStatus]:
    seen, queue = {start}, deque([start])
    while queue:
        for target in ALLOWED_TRANSITIONS[queue.popleft()]:
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


# -- The state table ---------------------------------------------------------------------


def test_state_table_lists_every_status_exactly_once():
    assert set(ALLOWED_TRANSITIONS) == set(OrderStatus)
    assert all(targets <= set(OrderStatus) for targets in ALLOWED_TRANSITIONS.values())


@pytest.mark.parametrize("terminal", [S.DENIED, S.REJECTED, S.FILLED])
def test_terminal_status_has_no_exits(terminal):
    assert ALLOWED_TRANSITIONS[terminal] == frozenset()
    assert not any(can_transition(terminal, target) for target in OrderStatus)


def test_no_status_transitions_to_itself():
    assert not any(status in targets for status, targets in ALLOWED_TRANSITIONS.items())


def test_every_status_is_reachable_from_held_and_all_but_held_from_new():
    assert reachable_from(S.HELD) == set(OrderStatus)
    assert reachable_from(S.NEW) == set(OrderStatus) - {S.HELD}  # a sent order is never held again


@pytest.mark.parametrize("status", sorted(WORKING_STATUSES))
def test_working_status_can_still_end_when_order_is_working(status):
    assert {S.FILLED, S.CANCELED, S.EXPIRED} <= ALLOWED_TRANSITIONS[status]


@pytest.mark.parametrize("ended", [S.CANCELED, S.EXPIRED])
def test_fill_that_raced_the_end_is_allowed_when_order_is_canceled_or_expired(ended):
    assert ALLOWED_TRANSITIONS[ended] == frozenset({S.FILLED})
    check_transition(ended, S.FILLED)  # does not raise


def test_cancel_is_refused_when_order_is_filled():
    assert not can_transition(S.FILLED, S.CANCELED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.FILLED, S.CANCELED),
        (S.NEW, S.FILLED),
        (S.NEW, S.ACCEPTED),
        (S.ACCEPTED, S.SUBMITTED),
        (S.ACCEPTED, S.REJECTED),
        (S.CANCELED, S.ACCEPTED),
        (S.REJECTED, S.ACCEPTED),
        (S.EXPIRED, S.CANCELED),
        (S.PARTIALLY_FILLED, S.ACCEPTED),
    ],
)
def test_check_transition_raises_when_move_is_illegal(current, target):
    with pytest.raises(InvalidTransition) as raised:
        check_transition(current, target)
    assert (raised.value.current, raised.value.target) == (current, target)
    assert str(raised.value) == f"An order cannot go from {current} to {target}."


@pytest.mark.parametrize(("current", "target"), [(c, t) for c, targets in ALLOWED_TRANSITIONS.items() for t in targets])
def test_check_transition_passes_when_move_is_in_table(current, target):
    check_transition(current, target)


# -- Broker status reports ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        # Any "the broker has it" report acknowledges a submitted order, and only that.
        (S.SUBMITTED, R.WORKING, S.ACCEPTED),
        (S.SUBMITTED, R.PARTIALLY_FILLED, S.ACCEPTED),
        (S.SUBMITTED, R.FILLED, S.ACCEPTED),  # fills drive fill progress, not status reports
        (S.ACCEPTED, R.WORKING, None),
        (S.ACCEPTED, R.FILLED, None),
        (S.PARTIALLY_FILLED, R.FILLED, None),
        # Stale acknowledgements after fills are ignored.
        (S.FILLED, R.WORKING, None),
        (S.FILLED, R.PARTIALLY_FILLED, None),
        (S.PARTIALLY_FILLED, R.WORKING, None),
        (S.CANCELED, R.WORKING, None),
        # A working report while our cancel is pending changes nothing.
        (S.PENDING_CANCEL, R.WORKING, None),
        (S.PENDING_CANCEL, R.PARTIALLY_FILLED, None),
        # Cancel, reject and expire map onto ours when the table allows it.
        (S.SUBMITTED, R.CANCELED, S.CANCELED),
        (S.ACCEPTED, R.CANCELED, S.CANCELED),
        (S.PARTIALLY_FILLED, R.CANCELED, S.CANCELED),
        (S.PENDING_CANCEL, R.CANCELED, S.CANCELED),
        (S.SUBMITTED, R.REJECTED, S.REJECTED),
        (S.SUBMITTED, R.EXPIRED, S.EXPIRED),
        (S.ACCEPTED, R.EXPIRED, S.EXPIRED),
        (S.PENDING_CANCEL, R.EXPIRED, S.EXPIRED),
        # ...and are ignored when it does not, or when nothing changes.
        (S.CANCELED, R.CANCELED, None),
        (S.FILLED, R.CANCELED, None),
        (S.FILLED, R.EXPIRED, None),
        (S.ACCEPTED, R.REJECTED, None),
        (S.REJECTED, R.CANCELED, None),
        (S.EXPIRED, R.CANCELED, None),
        (S.NEW, R.EXPIRED, None),
    ],
)
def test_status_for_report_maps_broker_status(current, reported, expected):
    assert status_for_report(current, reported) == expected


@pytest.mark.parametrize("current", list(OrderStatus))
@pytest.mark.parametrize("reported", list(ReportedStatus))
def test_status_for_report_only_proposes_legal_moves(current, reported):
    target = status_for_report(current, reported)
    assert target is None or (target != current and can_transition(current, target))


# -- Fills -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "filled", "expected"),
    [
        (S.SUBMITTED, 1, S.PARTIALLY_FILLED),
        (S.SUBMITTED, 3, S.FILLED),
        (S.ACCEPTED, 1, S.PARTIALLY_FILLED),
        (S.ACCEPTED, 3, S.FILLED),
        (S.PARTIALLY_FILLED, 2, None),
        (S.PARTIALLY_FILLED, 3, S.FILLED),
        (S.PENDING_CANCEL, 1, None),  # the cancel stays pending
        (S.PENDING_CANCEL, 3, S.FILLED),
        (S.CANCELED, 2, None),  # a partial fill racing the cancel leaves it cancelled
        (S.CANCELED, 3, S.FILLED),
        (S.FILLED, 3, None),
    ],
)
def test_status_after_fill_of_three_lot_order(current, filled, expected):
    assert status_after_fill(current, filled_quantity=filled, quantity=3) == expected


# -- Order intents and prices -----------------------------------------------------------------


def intent(order_type: OrderType, **kwargs) -> OrderIntent:  # type: ignore[no-untyped-def]
    values = {"symbol": "MES", "side": OrderSide.BUY, "quantity": 1, "order_type": order_type} | kwargs
    return OrderIntent(**values)


@pytest.mark.parametrize(
    ("order_type", "prices", "code", "field"),
    [
        (OrderType.LIMIT, {}, "price_required", "limit_price"),
        (OrderType.STOP, {}, "price_required", "stop_price"),
        (OrderType.STOP_LIMIT, {"stop_price": Decimal("5000")}, "price_required", "limit_price"),
        (OrderType.STOP_LIMIT, {"limit_price": Decimal("5000")}, "price_required", "stop_price"),
        (OrderType.MARKET, {"limit_price": Decimal("5000")}, "unexpected_price", "limit_price"),
        (OrderType.MARKET, {"stop_price": Decimal("5000")}, "unexpected_price", "stop_price"),
        (
            OrderType.LIMIT,
            {"limit_price": Decimal("5000"), "stop_price": Decimal("5001")},
            "unexpected_price",
            "stop_price",
        ),
        (
            OrderType.STOP,
            {"limit_price": Decimal("5000"), "stop_price": Decimal("5001")},
            "unexpected_price",
            "limit_price",
        ),
    ],
)
def test_validate_order_intent_refuses_when_prices_do_not_fit_type(order_type, prices, code, field):
    with pytest.raises(InvalidOrder) as raised:
        validate_order_intent(intent(order_type, **prices), tick_size=ES_TICK)
    assert (raised.value.code, raised.value.field) == (code, field)


def test_validate_order_intent_names_type_and_field_when_price_missing():
    with pytest.raises(InvalidOrder) as raised:
        validate_order_intent(intent(OrderType.STOP_LIMIT, stop_price=Decimal("5000")), tick_size=ES_TICK)
    assert raised.value.detail == "A stop limit order needs a limit price."


def test_validate_order_intent_writes_prices_on_grid_and_keeps_the_rest():
    given_intent = intent(
        OrderType.STOP_LIMIT,
        side=OrderSide.SELL,
        quantity=7,
        time_in_force=TimeInForce.GTC,
        limit_price=Decimal("5000.5"),
        stop_price=Decimal("5001"),
        is_liquidation=True,
    )

    valid = validate_order_intent(given_intent, tick_size=ES_TICK)

    assert valid == OrderIntent(
        symbol="MES",
        side=OrderSide.SELL,
        quantity=7,
        order_type=OrderType.STOP_LIMIT,
        time_in_force=TimeInForce.GTC,
        limit_price=Decimal("5000.50"),
        stop_price=Decimal("5001.00"),
        is_liquidation=True,
    )
    assert str(valid.limit_price) == "5000.50"
    assert str(valid.stop_price) == "5001.00"


def test_validate_order_intent_accepts_market_order_without_prices():
    market = intent(OrderType.MARKET, quantity=3)
    assert validate_order_intent(market, tick_size=ES_TICK) == market


def test_validate_order_intent_refuses_off_tick_stop_price():
    with pytest.raises(InvalidOrder) as raised:
        validate_order_intent(intent(OrderType.STOP, stop_price=Decimal("5000.10")), tick_size=ES_TICK)
    assert (raised.value.code, raised.value.field) == ("price_off_tick", "stop_price")


@pytest.mark.parametrize(
    ("quantity", "code"),
    [
        (0, "invalid_quantity"),
        (-1, "invalid_quantity"),
        (True, "invalid_quantity"),
        (1.0, "invalid_quantity"),
        ("2", "invalid_quantity"),
        (MAX_ORDER_QUANTITY + 1, "quantity_too_large"),
    ],
)
def test_quantity_is_refused_when_not_a_sane_whole_number(quantity, code):
    with pytest.raises(InvalidOrder) as raised:
        validate_order_intent(intent(OrderType.MARKET, quantity=quantity), tick_size=ES_TICK)
    assert (raised.value.code, raised.value.field) == (code, "quantity")


@pytest.mark.parametrize("quantity", [1, 2, MAX_ORDER_QUANTITY])
def test_quantity_is_accepted_when_within_limits(quantity):
    validate_quantity(quantity)
    assert validate_order_intent(intent(OrderType.MARKET, quantity=quantity), tick_size=ES_TICK).quantity == quantity


def test_quantity_too_large_names_the_limit():
    with pytest.raises(InvalidOrder) as raised:
        validate_quantity(10_001, field="close_quantity")
    assert raised.value.detail == "quantity 10001 is above the 10000-contract limit for a single order."
    assert raised.value.field == "close_quantity"


@pytest.mark.parametrize(
    "price", ["NaN", "sNaN", "Infinity", "-Infinity", "-1", "-0.25", "0", "0.00", "1e11", "100000000000.25", "1e30"]
)
def test_validate_price_refuses_when_not_a_sane_positive_number(price):
    with pytest.raises(InvalidOrder) as raised:
        validate_price(Decimal(price), tick_size=ES_TICK, field="limit_price")
    assert (raised.value.code, raised.value.field) == ("invalid_price", "limit_price")


def test_validate_price_accepts_largest_price_below_the_cap():
    assert validate_price(Decimal("99999999999.75"), tick_size=ES_TICK, field="limit_price") == Decimal(
        "99999999999.75"
    )


@pytest.mark.parametrize(
    ("price", "tick", "sentence"),
    [
        (
            "5000.30",
            "0.25",
            "limit_price 5000.30 is not on the 0.25 tick grid; the nearest valid prices are 5000.25 and 5000.50.",
        ),
        (
            "5000.01",
            "0.25",
            "limit_price 5000.01 is not on the 0.25 tick grid; the nearest valid prices are 5000.00 and 5000.25.",
        ),
        (
            "110.01",
            "0.015625",
            "limit_price 110.01 is not on the 0.015625 tick grid; "
            "the nearest valid prices are 110.000000 and 110.015625.",
        ),
        (
            "1.08527",
            "0.00005",
            "limit_price 1.08527 is not on the 0.00005 tick grid; the nearest valid prices are 1.08525 and 1.08530.",
        ),
        (
            "70.005",
            "0.01",
            "limit_price 70.005 is not on the 0.01 tick grid; the nearest valid prices are 70.00 and 70.01.",
        ),
        (
            "2150.05",
            "0.10",
            "limit_price 2150.05 is not on the 0.1 tick grid; the nearest valid prices are 2150.0 and 2150.1.",
        ),
        (
            "42000.5",
            "1",
            "limit_price 42000.5 is not on the 1 tick grid; the nearest valid prices are 42000 and 42001.",
        ),
    ],
)
def test_price_off_tick_names_the_two_nearest_valid_prices(price, tick, sentence):
    with pytest.raises(InvalidOrder) as raised:
        validate_price(Decimal(price), tick_size=Decimal(tick), field="limit_price")
    assert raised.value.code == "price_off_tick"
    assert raised.value.field == "limit_price"
    assert raised.value.detail == sentence


def test_price_off_tick_writes_tick_plainly_when_tick_is_ten():
    # Ticks of 10 exist (e.g. some index futures); the sentence must not say "1E+1".
    with pytest.raises(InvalidOrder) as raised:
        validate_price(Decimal("5003"), tick_size=Decimal("10"), field="limit_price")
    assert raised.value.detail == (
        "limit_price 5003 is not on the 10 tick grid; the nearest valid prices are 5000 and 5010."
    )


@pytest.mark.parametrize(
    ("price", "tick", "expected"),
    [
        ("5000.5", "0.25", "5000.50"),
        ("5000", "0.25", "5000.00"),
        ("5000.250000", "0.25", "5000.25"),
        ("110.5", "0.015625", "110.500000"),
        ("110.015625", "0.015625", "110.015625"),
        ("1.1", "0.00005", "1.10000"),
    ],
)
def test_validate_price_writes_price_with_tick_decimals_when_on_grid(price, tick, expected):
    valid = validate_price(Decimal(price), tick_size=Decimal(tick), field="limit_price")
    assert str(valid) == expected


ticks_and_sizes = st.sampled_from(
    [Decimal("0.25"), Decimal("0.015625"), Decimal("0.00005"), Decimal("0.01"), Decimal("1")]
)


@PURE
@given(tick=ticks_and_sizes, steps=st.integers(1, 10**8), fraction=st.integers(1, 999))
def test_off_tick_price_is_refused_with_neighbours_one_tick_apart(tick, steps, fraction):
    price = (steps + Decimal(fraction) / 1000) * tick

    with pytest.raises(InvalidOrder) as raised:
        validate_price(price, tick_size=tick, field="limit_price")

    assert raised.value.code == "price_off_tick"
    lower, upper = steps * tick, (steps + 1) * tick
    assert lower < price < upper
    assert raised.value.detail.endswith(
        f"the nearest valid prices are {normalize_price(lower, tick)} and {normalize_price(upper, tick)}."
    )


@PURE
@given(tick=ticks_and_sizes, steps=st.integers(1, 10**8))
def test_on_tick_price_is_accepted_unchanged_in_value(tick, steps):
    price = steps * tick
    assert validate_price(price, tick_size=tick, field="limit_price") == price


# -- Positions and P&L ---------------------------------------------------------------------------


def fill(position: PositionState, side: str, quantity: int, price: str, point_value: Decimal = MES_POINT_VALUE):
    return position_after_fill(position, side=side, quantity=quantity, price=Decimal(price), point_value=point_value)


def test_fill_opens_position_at_fill_price_when_flat():
    assert fill(FLAT, "buy", 2, "5000.25") == (PositionState(2, Decimal("5000.25")), Decimal(0))
    assert fill(FLAT, "sell", 3, "4999.75") == (PositionState(-3, Decimal("4999.75")), Decimal(0))


def test_fill_averages_price_when_adding_to_long():
    position, realized = fill(PositionState(1, Decimal("5000")), "buy", 2, "5001")
    assert position == PositionState(3, Decimal("5000.66666667"))  # (5000 + 2 * 5001) / 3
    assert realized == 0


def test_fill_averages_price_when_adding_to_short():
    position, realized = fill(PositionState(-2, Decimal("5000")), "sell", 2, "5010")
    assert position == PositionState(-4, Decimal("5005"))
    assert realized == 0


def test_partial_close_realizes_pnl_times_point_value_and_keeps_average():
    position, realized = fill(PositionState(3, Decimal("5000")), "sell", 1, "5010.25")
    assert position == PositionState(2, Decimal("5000"))
    assert realized == Decimal("51.25")  # 10.25 points * 1 contract * $5


def test_partial_close_of_losing_long_realizes_a_loss():
    position, realized = fill(PositionState(3, Decimal("5000")), "sell", 2, "4990", point_value=Decimal("50"))
    assert position == PositionState(1, Decimal("5000"))
    assert realized == Decimal("-1000")  # -10 points * 2 * $50


def test_full_close_goes_flat_and_realizes_all():
    position, realized = fill(PositionState(2, Decimal("5000.50")), "sell", 2, "5001.75")
    assert position == FLAT
    assert position.avg_price == 0
    assert realized == Decimal("12.5")  # 1.25 * 2 * 5


def test_reversal_through_flat_opens_remainder_at_fill_price():
    position, realized = fill(PositionState(2, Decimal("5000")), "sell", 5, "5010")
    assert position == PositionState(-3, Decimal("5010"))
    assert realized == Decimal("100")  # only the 2 closed contracts realize: 10 * 2 * 5


def test_short_profits_when_bought_back_lower():
    position, realized = fill(PositionState(-2, Decimal("5000")), "buy", 1, "4990")
    assert position == PositionState(-1, Decimal("5000"))
    assert realized == Decimal("50")


def test_short_reversal_opens_long_at_fill_price():
    position, realized = fill(PositionState(-1, Decimal("5000")), "buy", 4, "5002")
    assert position == PositionState(3, Decimal("5002"))
    assert realized == Decimal("-10")


def test_realized_pnl_uses_zn_point_value():
    position, realized = fill(
        PositionState(1, Decimal("112.000000")), "sell", 1, "112.015625", point_value=Decimal("1000")
    )
    assert position == FLAT
    assert realized == Decimal("15.625")  # one ZN tick


@pytest.mark.parametrize(
    ("quantity", "avg", "last", "expected"),
    [
        (2, "5000", "5001.25", "12.5"),
        (-2, "5000", "5001.25", "-12.5"),
        (-2, "5000", "4999", "10"),
        (0, "0", "5000", "0"),
        (3, "5000.66666667", "5000", "-10.0000"),  # -10.00000005 rounded to the money quantum
    ],
)
def test_unrealized_pnl_marks_position_to_last_price(quantity, avg, last, expected):
    pnl = unrealized_pnl(
        quantity=quantity, avg_price=Decimal(avg), last_price=Decimal(last), point_value=MES_POINT_VALUE
    )
    assert pnl == Decimal(expected)
    assert pnl.as_tuple().exponent == -4


def test_average_fill_price_is_fill_price_when_first_fill():
    assert average_fill_price(filled_before=0, avg_before=None, quantity=2, price=Decimal("5000.25")) == Decimal(
        "5000.25"
    )


def test_average_fill_price_weights_by_quantity():
    assert average_fill_price(
        filled_before=2, avg_before=Decimal("5000"), quantity=1, price=Decimal("5001.25")
    ) == Decimal("5000.41666667")
    assert average_fill_price(
        filled_before=1, avg_before=Decimal("5000"), quantity=1, price=Decimal("5001")
    ) == Decimal("5000.5")


# -- Properties --------------------------------------------------------------------------------

BROKER_HOLDS_ORDER = WORKING_STATUSES | {S.CANCELED}  # cancelled orders can still take a racing fill

order_events = st.lists(
    st.one_of(
        st.tuples(st.just("report"), st.sampled_from(list(ReportedStatus))),
        st.tuples(st.just("fill"), st.integers(1, 5)),
        st.tuples(st.just("cancel"), st.none()),
        st.tuples(st.just("cancel_refused"), st.none()),
    ),
    max_size=30,
)


@PURE
@given(quantity=st.integers(1, 10), events=order_events)
def test_reports_and_fills_only_move_along_the_table(quantity, events):
    reachable = reachable_from(S.SUBMITTED)
    status, filled = S.SUBMITTED, 0
    for kind, value in events:
        new: OrderStatus | None = None
        if kind == "report":
            new = status_for_report(status, value)
        elif kind == "fill" and status in BROKER_HOLDS_ORDER and filled < quantity:
            filled += min(value, quantity - filled)  # the broker never fills more than is left
            new = status_after_fill(status, filled_quantity=filled, quantity=quantity)
        elif kind == "cancel" and status in CANCELABLE_STATUSES:  # what services.request_cancel does
            new = S.PENDING_CANCEL
        elif kind == "cancel_refused" and status == S.PENDING_CANCEL:  # what reconcile_order does
            new = S.PARTIALLY_FILLED if filled else S.ACCEPTED
        if new is not None:
            assert new != status
            assert can_transition(status, new), f"{status} -> {new} after {kind} {value}"
            status = new
        assert status in reachable
        assert 0 <= filled <= quantity
    assert (status == S.FILLED) == (filled == quantity)


instruments = st.sampled_from(
    [  # (tick size, point value)
        (Decimal("0.25"), Decimal("5")),  # MES
        (Decimal("0.25"), Decimal("50")),  # ES
        (Decimal("0.015625"), Decimal("1000")),  # ZN
        (Decimal("0.00005"), Decimal("125000")),  # 6E
        (Decimal("0.01"), Decimal("1000")),  # CL
        (Decimal("1"), Decimal("5")),  # YM
    ]
)


@PURE
@given(
    instrument=instruments,
    ticks_1=st.integers(1, 10**7),
    ticks_2=st.integers(1, 10**7),
    quantity=st.integers(1, MAX_ORDER_QUANTITY),
    long=st.booleans(),
)
def test_round_trip_realizes_exact_price_difference_times_point_value(instrument, ticks_1, ticks_2, quantity, long):
    tick, point_value = instrument
    p1, p2 = ticks_1 * tick, ticks_2 * tick
    open_side, close_side = ("buy", "sell") if long else ("sell", "buy")

    opened, realized_on_open = position_after_fill(
        FLAT, side=open_side, quantity=quantity, price=p1, point_value=point_value
    )
    closed, realized = position_after_fill(
        opened, side=close_side, quantity=quantity, price=p2, point_value=point_value
    )

    assert opened == PositionState(quantity if long else -quantity, p1)
    assert realized_on_open == 0
    assert closed == FLAT
    direction = 1 if long else -1
    assert realized == (p2 - p1) * quantity * point_value * direction


@PURE
@given(
    instrument=instruments,
    fills=st.lists(st.tuples(st.sampled_from(["buy", "sell"]), st.integers(1, 20), st.integers(1, 10**6)), max_size=12),
    close_ticks=st.integers(1, 10**6),
)
def test_realized_pnl_equals_cash_flow_when_any_fill_sequence_ends_flat(instrument, fills, close_ticks):
    tick, point_value = instrument
    position, realized_total, cash = FLAT, Decimal(0), Decimal(0)
    largest = 0
    for side, quantity, ticks in fills:
        price = ticks * tick
        position, realized = position_after_fill(
            position, side=side, quantity=quantity, price=price, point_value=point_value
        )
        realized_total += realized
        cash += price * quantity * (1 if side == "sell" else -1)
        largest = max(largest, abs(position.quantity))
    if position.quantity:
        close_price = close_ticks * tick
        side = "sell" if position.quantity > 0 else "buy"
        quantity = abs(position.quantity)
        position, realized = position_after_fill(
            position, side=side, quantity=quantity, price=close_price, point_value=point_value
        )
        realized_total += realized
        cash += close_price * quantity * (1 if side == "sell" else -1)

    assert position == FLAT
    # Averages are kept to 8 decimals and money to 4: allow that rounding, nothing more.
    tolerance = (len(fills) + 1) * (largest * point_value * Decimal("1e-8") + Decimal("1e-4"))
    assert abs(realized_total - cash * point_value) <= tolerance
