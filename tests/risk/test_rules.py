"""Pure tests of risk/rules.py: account status and trading state against frozen snapshots and intents."""

import dataclasses

import pytest

from accounts.domain import AccountStatus, TradingState
from orders.domain import OrderIntent, OrderSide, OrderType
from risk.rules import (
    PRE_TRADE_RULES,
    AccountSnapshot,
    Denial,
    account_status_allows,
    evaluate_pre_trade,
    increases_exposure,
    trading_state_allows,
)

BUY, SELL = OrderSide.BUY, OrderSide.SELL


def order(side: OrderSide, quantity: int = 1, *, symbol: str = "MES", liquidation: bool = False) -> OrderIntent:
    return OrderIntent(
        symbol=symbol, side=side, quantity=quantity, order_type=OrderType.MARKET, is_liquidation=liquidation
    )


def snapshot(
    *,
    status: AccountStatus = AccountStatus.ACTIVE,
    state: TradingState = TradingState.ACTIVE,
    position: int = 0,
    working: tuple[int, int] = (0, 0),
) -> AccountSnapshot:
    return AccountSnapshot(status=status, trading_state=state, positions={"MES": position}, working={"MES": working})


def codes(intent: OrderIntent, snap: AccountSnapshot) -> list[str]:
    return [denial.code for denial in evaluate_pre_trade(intent, snap)]


def test_snapshot_and_intent_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot().status = AccountStatus.CLOSED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        order(BUY).quantity = 2  # type: ignore[misc]


def test_rules_run_in_a_fixed_order():
    assert PRE_TRADE_RULES == (account_status_allows, trading_state_allows)


# -- Halted ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "position"),
    [
        (order(BUY), 0),
        (order(SELL), 0),
        (order(BUY, 3), 2),
        (order(SELL, 1), 2),  # even a reducing order, unless it is a liquidation
    ],
)
def test_halted_account_denies_normal_orders(intent, position):
    denial = trading_state_allows(intent, snapshot(state=TradingState.HALTED, position=position))
    assert denial is not None
    assert (denial.rule, denial.code) == ("trading_state", "account_halted")
    assert "halted" in denial.detail
    assert codes(intent, snapshot(state=TradingState.HALTED, position=position)) == ["account_halted"]


@pytest.mark.parametrize(
    ("intent", "position"),
    [(order(SELL, 2, liquidation=True), 2), (order(BUY, 1, liquidation=True), -3), (order(SELL, liquidation=True), 0)],
)
def test_halted_account_allows_liquidation_orders(intent, position):
    assert trading_state_allows(intent, snapshot(state=TradingState.HALTED, position=position)) is None
    assert evaluate_pre_trade(intent, snapshot(state=TradingState.HALTED, position=position)) == []


# -- Reducing only ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("position", "working", "intent"),
    [
        (2, (0, 0), order(SELL, 1)),  # takes off part
        (2, (0, 0), order(SELL, 2)),  # takes off all
        (-3, (0, 0), order(BUY, 3)),
        (5, (0, 2), order(SELL, 3)),  # 3 + 2 already working == 5
        (2, (4, 0), order(SELL, 2)),  # working buys are not on the reducing side
        (-2, (0, 7), order(BUY, 1)),
    ],
)
def test_reducing_account_allows_order_when_it_only_reduces(position, working, intent):
    snap = snapshot(state=TradingState.REDUCING, position=position, working=working)
    assert not increases_exposure(intent, snap)
    assert trading_state_allows(intent, snap) is None
    assert evaluate_pre_trade(intent, snap) == []


@pytest.mark.parametrize(
    ("position", "working", "intent"),
    [
        (0, (0, 0), order(BUY, 1)),  # opens
        (0, (0, 0), order(SELL, 1)),  # opens short
        (2, (0, 0), order(BUY, 1)),  # adds to long
        (-2, (0, 0), order(SELL, 1)),  # adds to short
        (2, (0, 0), order(SELL, 3)),  # flips long to short
        (-1, (0, 0), order(BUY, 2)),  # flips short to long
        (2, (0, 2), order(SELL, 1)),  # working sells already take off the whole position
        (-3, (2, 0), order(BUY, 2)),  # 2 + 2 working would flip
        (0, (0, 0), order(BUY, 1, symbol="ES")),  # a position in MES does not make ES reducing
    ],
)
def test_reducing_account_denies_order_when_it_opens_adds_or_flips(position, working, intent):
    snap = snapshot(state=TradingState.REDUCING, position=position, working=working)
    assert increases_exposure(intent, snap)
    denial = trading_state_allows(intent, snap)
    assert denial is not None
    assert (denial.rule, denial.code) == ("trading_state", "account_reducing")
    assert intent.symbol in denial.detail
    assert codes(intent, snap) == ["account_reducing"]


def test_reducing_account_counts_working_orders_on_reducing_side():
    snap = snapshot(state=TradingState.REDUCING, position=2, working=(0, 2))
    assert codes(order(SELL, 1), snap) == ["account_reducing"]
    assert codes(order(SELL, 1), snapshot(state=TradingState.REDUCING, position=2, working=(0, 1))) == []


def test_reducing_only_looks_at_the_orders_symbol():
    snap = AccountSnapshot(
        status=AccountStatus.ACTIVE,
        trading_state=TradingState.REDUCING,
        positions={"MES": 2, "ES": -1},
        working={"MES": (0, 0), "ES": (1, 0)},
    )
    assert codes(order(SELL, 2, symbol="MES"), snap) == []
    assert codes(order(BUY, 1, symbol="ES"), snap) == ["account_reducing"]  # the working buy already flattens ES


def test_reducing_account_with_no_position_entry_treats_symbol_as_flat():
    snap = AccountSnapshot(status=AccountStatus.ACTIVE, trading_state=TradingState.REDUCING)
    assert codes(order(SELL, 1), snap) == ["account_reducing"]


@pytest.mark.parametrize("intent", [order(BUY, 1), order(SELL, 5), order(BUY, 10_000)])
def test_active_account_allows_any_order(intent):
    assert evaluate_pre_trade(intent, snapshot(position=2, working=(3, 3))) == []


# -- Account status ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [AccountStatus.BREACHED, AccountStatus.CLOSED])
@pytest.mark.parametrize("intent", [order(BUY), order(SELL, 1)])
def test_breached_or_closed_account_denies_non_liquidation_orders(status, intent):
    denial = account_status_allows(intent, snapshot(status=status, position=2))
    assert denial == Denial(
        rule="account_status",
        code=f"account_{status.value}",
        detail=f"The account is {status.value}: it can only close what is open.",
    )
    assert codes(intent, snapshot(status=status, position=2)) == [f"account_{status.value}"]


@pytest.mark.parametrize(
    ("status", "code"), [(AccountStatus.BREACHED, "account_breached"), (AccountStatus.CLOSED, "account_closed")]
)
def test_account_status_code_is_plain_text(status, code):
    denial = account_status_allows(order(BUY), snapshot(status=status))
    assert denial is not None
    assert denial.code == code
    assert denial.as_dict() == {"rule": "account_status", "code": code, "detail": denial.detail}


@pytest.mark.parametrize("status", [AccountStatus.BREACHED, AccountStatus.CLOSED])
def test_breached_or_closed_account_allows_liquidation_orders(status):
    intent = order(SELL, 2, liquidation=True)
    assert account_status_allows(intent, snapshot(status=status, position=2)) is None
    assert evaluate_pre_trade(intent, snapshot(status=status, position=2)) == []


@pytest.mark.parametrize("status", [AccountStatus.ACTIVE, AccountStatus.PASSED])
def test_account_status_rule_passes_when_account_is_not_breached_or_closed(status):
    assert account_status_allows(order(BUY), snapshot(status=status)) is None


# -- All denials ------------------------------------------------------------------------------------


def test_evaluate_pre_trade_returns_every_denial_in_rule_order():
    snap = snapshot(status=AccountStatus.BREACHED, state=TradingState.HALTED)
    denials = evaluate_pre_trade(order(BUY), snap)
    assert [(d.rule, d.code) for d in denials] == [
        ("account_status", "account_breached"),
        ("trading_state", "account_halted"),
    ]


def test_evaluate_pre_trade_returns_both_when_closed_and_reducing_order_adds():
    snap = snapshot(status=AccountStatus.CLOSED, state=TradingState.REDUCING, position=1)
    assert codes(order(BUY, 1), snap) == ["account_closed", "account_reducing"]


@pytest.mark.parametrize(
    ("status", "state", "position", "intent", "expected"),
    [
        (AccountStatus.ACTIVE, TradingState.ACTIVE, 0, order(BUY), []),
        (AccountStatus.ACTIVE, TradingState.HALTED, 0, order(BUY), ["account_halted"]),
        (AccountStatus.ACTIVE, TradingState.HALTED, 2, order(SELL, 2, liquidation=True), []),
        (AccountStatus.BREACHED, TradingState.ACTIVE, 2, order(SELL, 2, liquidation=True), []),
        (AccountStatus.BREACHED, TradingState.HALTED, 2, order(SELL, 2, liquidation=True), []),
        (AccountStatus.BREACHED, TradingState.REDUCING, 2, order(SELL, 1), ["account_breached"]),
        # A liquidation that would flip is still refused while reducing.
        (AccountStatus.ACTIVE, TradingState.REDUCING, 2, order(SELL, 3, liquidation=True), ["account_reducing"]),
    ],
)
def test_evaluate_pre_trade_table(status, state, position, intent, expected):
    assert codes(intent, snapshot(status=status, state=state, position=position)) == expected
