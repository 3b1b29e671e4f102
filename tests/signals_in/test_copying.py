"""The copier's arithmetic, without a database: desired state, orders toward it, drift, slippage."""

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from signals_in.copying import (
    InvalidCopierLink,
    Leg,
    desired_positions,
    desired_quantity,
    drifted,
    follower_root,
    follower_symbol,
    legs_toward,
    slippage_ticks,
    validate_symbol_map,
)

D = Decimal


@pytest.mark.parametrize(
    ("leader", "ratio", "cap", "expected"),
    [
        (2, "1", None, 2),
        (3, "0.5", None, 1),  # 1.5 rounds toward zero
        (-3, "0.5", None, -1),  # -1.5 toward zero, not -2
        (1, "0.5", None, 0),
        (-1, "0.999", None, 0),
        (4, "2.5", None, 10),
        (4, "2.5", 6, 6),
        (-4, "2.5", 6, -6),
        (0, "3", 5, 0),
    ],
)
def test_desired_quantity_scales_rounds_toward_zero_and_caps(leader, ratio, cap, expected):
    assert desired_quantity(leader, ratio=D(ratio), max_quantity=cap) == expected


@given(
    leader=st.integers(min_value=-500, max_value=500),
    ratio=st.decimals(min_value=D("0.001"), max_value=D("50"), places=3),
    cap=st.none() | st.integers(min_value=0, max_value=100),
)
def test_desired_never_exceeds_the_cap_and_keeps_the_leaders_sign_or_zero(leader, ratio, cap):
    desired = desired_quantity(leader, ratio=ratio, max_quantity=cap)

    if cap is not None:
        assert abs(desired) <= cap
    assert desired == 0 or (desired > 0) == (leader > 0)
    assert abs(desired) <= abs(leader * ratio)  # never more than the follower's share


def test_desired_positions_add_mapped_products_before_rounding_and_keep_flat_ones():
    # ES and MES both trade MES at the follower; 1 * 0.5 + 1 * 0.5 is 1, not 0 + 0.
    desired = desired_positions([("MES", 1), ("MES", 1), ("NQ", 0)], ratio=D("0.5"), max_quantity=None)

    assert desired == {"MES": 1, "NQ": 0}


@pytest.mark.parametrize(
    ("symbol", "root", "mapping", "expected"),
    [
        ("ESZ6", "ES", {"ES": "MES"}, "MESZ6"),
        ("NQH7", "NQ", {"ES": "MES"}, "NQH7"),  # unmapped: the same contract
        ("ES", "ES", {"ES": "MES"}, "MES"),
        ("esz6", "es", {"ES": "MES"}, "MESZ6"),
    ],
)
def test_follower_symbol_keeps_the_expiry_in_the_mapped_product(symbol, root, mapping, expected):
    assert follower_symbol(leader_symbol=symbol, leader_root=root, symbol_map=mapping) == expected


def test_follower_root_is_the_same_product_when_unmapped():
    assert follower_root("CL", {"ES": "MES"}) == "CL"


@pytest.mark.parametrize(
    ("actual", "desired", "expected"),
    [
        (0, 0, []),
        (0, 2, [Leg("buy", 2, reduces=False)]),
        (0, -3, [Leg("sell", 3, reduces=False)]),
        (2, 5, [Leg("buy", 3, reduces=False)]),
        (-2, -5, [Leg("sell", 3, reduces=False)]),
        (5, 2, [Leg("sell", 3, reduces=True)]),
        (5, 0, [Leg("sell", 5, reduces=True)]),
        (-4, 0, [Leg("buy", 4, reduces=True)]),
        (2, -1, [Leg("sell", 2, reduces=True), Leg("sell", 1, reduces=False)]),  # close, then open
        (-3, 2, [Leg("buy", 3, reduces=True), Leg("buy", 2, reduces=False)]),
    ],
)
def test_legs_toward_the_desired_position(actual, desired, expected):
    assert legs_toward(actual=actual, desired=desired) == expected


@given(actual=st.integers(min_value=-50, max_value=50), desired=st.integers(min_value=-50, max_value=50))
def test_legs_reach_the_desired_position_and_no_leg_crosses_flat(actual, desired):
    position = actual
    for leg in legs_toward(actual=actual, desired=desired):
        after = position + leg.signed_quantity
        assert leg.quantity > 0
        assert position == 0 or after == 0 or (after > 0) == (position > 0), "a leg went through flat"
        assert leg.reduces == (position != 0 and abs(after) < abs(position))
        position = after
    assert position == desired


@pytest.mark.parametrize(
    ("desired", "actual", "tolerance", "expected"),
    [(2, 2, 0, False), (2, 1, 0, True), (2, 1, 1, False), (2, 0, 1, True), (-1, 1, 1, True)],
)
def test_drift_is_a_difference_beyond_the_tolerance(desired, actual, tolerance, expected):
    assert drifted(desired=desired, actual=actual, tolerance=tolerance) is expected


@pytest.mark.parametrize(
    ("side", "leader", "follower", "expected"),
    [
        ("buy", "5000.00", "5000.50", "2.00"),  # bought 2 ticks higher: worse
        ("buy", "5000.00", "4999.75", "-1.00"),  # bought lower: better
        ("sell", "5000.00", "4999.50", "2.00"),  # sold lower: worse
        ("sell", "5000.00", "5000.25", "-1.00"),
        ("buy", "5000.00", "5000.125", "0.50"),  # an average between ticks
        ("sell", "5000.00", "5000.00", "0.00"),
    ],
)
def test_slippage_in_ticks_is_positive_when_the_follower_did_worse(side, leader, follower, expected):
    ticks = slippage_ticks(side=side, leader_price=D(leader), follower_price=D(follower), tick_size=D("0.25"))
    assert ticks == D(expected)


def test_symbol_map_is_cleaned_to_upper_case_roots():
    assert validate_symbol_map({" es ": "mes", "NQ": "MNQ"}) == {"ES": "MES", "NQ": "MNQ"}
    assert validate_symbol_map(None) == {} and validate_symbol_map({}) == {}


@pytest.mark.parametrize("bad", [["ES", "MES"], "ES=MES", {"ES": 5}, {"ES": ""}, {"E S": "MES"}, {"ES": "MES!"}])
def test_symbol_map_of_the_wrong_shape_is_refused_with_a_sentence(bad):
    with pytest.raises(InvalidCopierLink) as refused:
        validate_symbol_map(bad)
    assert refused.value.code == "invalid_symbol_map"
    assert "product root" in refused.value.detail
