"""Pure tests of risk/rules.py: every pre-trade rule as a table of (intent, snapshot) -> denial code."""

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from accounts.domain import AccountStatus, TradingState
from orders.domain import OrderIntent, OrderSide, OrderType
from risk.domain import ContractInfo, ContractRule, EffectiveRules
from risk.hours import EarlyClose, Release, Window
from risk.rules import (
    PRE_TRADE_RULES,
    AccountSnapshot,
    Denial,
    ReconciliationStatus,
    account_status_allows,
    automation_allows,
    evaluate_pre_trade,
    hours_allow,
    increases_exposure,
    loss_room_allows,
    max_contracts_allow,
    product_allowed,
    reconciliation_allows,
    soft_block_allows,
    trading_state_allows,
    worst_case_loss,
)

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
MARKET, LIMIT, STOP, STOP_LIMIT = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT
CHICAGO = ZoneInfo("America/Chicago")

MES = ContractInfo("MESM6", "MES", is_micro=True, tick_size=D("0.25"), tick_value=D("1.25"))
ES = ContractInfo("ESM6", "ES", is_micro=False, tick_size=D("0.25"), tick_value=D("12.50"))
MNQ = ContractInfo("MNQM6", "MNQ", is_micro=True, tick_size=D("0.25"), tick_value=D("0.50"))
CL = ContractInfo("CLN6", "CL", is_micro=False, tick_size=D("0.01"), tick_value=D("10.00"))
CONTRACTS = {c.symbol: c for c in (MES, ES, MNQ, CL)}
LAST_PRICES = {"MESM6": D("5000.00"), "ESM6": D("5000.00"), "MNQM6": D("18000.00"), "CLN6": D("70.00")}

NOW = datetime(2026, 5, 12, 10, 0, tzinfo=CHICAGO)  # an ordinary Tuesday morning


def ct(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 5, 12, hour, minute, second, tzinfo=CHICAGO)


def order(
    side: OrderSide,
    quantity: int = 1,
    symbol: str = "MESM6",
    *,
    kind: OrderType = MARKET,
    limit: str | None = None,
    stop: str | None = None,
    stop_loss: str | None = None,
    liquidation: bool = False,
    automated: bool = False,
) -> OrderIntent:
    return OrderIntent(
        symbol=symbol,
        side=side,
        quantity=quantity,
        order_type=kind,
        limit_price=None if limit is None else D(limit),
        stop_price=None if stop is None else D(stop),
        stop_loss=None if stop_loss is None else D(stop_loss),
        is_liquidation=liquidation,
        is_automated=automated,
    )


def rules(**fields: Any) -> EffectiveRules:
    return EffectiveRules(**fields)


def snapshot(
    *,
    status: AccountStatus = AccountStatus.ACTIVE,
    state: TradingState = TradingState.ACTIVE,
    positions: Mapping[str, int] | None = None,
    working: Mapping[str, tuple[int, int]] | None = None,
    **fields: Any,
) -> AccountSnapshot:
    fields.setdefault("contracts", CONTRACTS)
    fields.setdefault("last_prices", LAST_PRICES)
    fields.setdefault("now", NOW)
    return AccountSnapshot(
        status=status, trading_state=state, positions=positions or {}, working=working or {}, **fields
    )


def held(quantity: int, symbol: str = "MESM6", working: tuple[int, int] = (0, 0), **fields: Any) -> AccountSnapshot:
    return snapshot(positions={symbol: quantity}, working={symbol: working}, **fields)


def code(denial: Denial | None) -> str | None:
    return None if denial is None else denial.code


def codes(intent: OrderIntent, snap: AccountSnapshot) -> list[str]:
    return [denial.code for denial in evaluate_pre_trade(intent, snap)]


def test_snapshot_and_intent_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot().status = AccountStatus.CLOSED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        order(BUY).quantity = 2  # type: ignore[misc]


def test_rules_run_in_a_fixed_order():
    assert PRE_TRADE_RULES == (
        account_status_allows,
        trading_state_allows,
        reconciliation_allows,
        soft_block_allows,
        automation_allows,
        hours_allow,
        product_allowed,
        max_contracts_allow,
        loss_room_allows,
    )


def test_denial_as_dict():
    denial = Denial(rule="product", code="product_not_allowed", detail="CL is not allowed.")
    assert denial.as_dict() == {"rule": "product", "code": "product_not_allowed", "detail": "CL is not allowed."}


# -- Exposure ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "snap", "expected"),
    [
        (order(BUY), snapshot(), True),  # opens
        (order(SELL), snapshot(), True),  # opens short
        (order(BUY, 1), held(2), True),  # adds to a long
        (order(SELL, 1), held(-2), True),  # adds to a short
        (order(SELL, 1), held(2), False),  # takes off part
        (order(SELL, 2), held(2), False),  # takes off all
        (order(BUY, 3), held(-3), False),
        (order(SELL, 3), held(2), True),  # flips
        (order(BUY, 2), held(-1), True),
        (order(SELL, 3), held(5, working=(0, 2)), False),  # 3 + 2 working sells == 5
        (order(SELL, 1), held(2, working=(0, 2)), True),  # the working sells already take it all off
        (order(SELL, 2), held(2, working=(4, 0)), False),  # working buys are not on the reducing side
        (order(BUY, 2), held(-3, working=(2, 0)), True),
        (order(BUY, 1, "ESM6"), held(-2), True),  # a short in MES does not make an ES buy reducing
        (order(BUY, 5, liquidation=True), snapshot(), False),  # liquidations are trusted to take risk off
        (order(SELL, 3, liquidation=True), held(2), False),
    ],
)
def test_increases_exposure(intent, snap, expected):
    assert increases_exposure(intent, snap) is expected


# -- Account status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "intent", "snap_positions", "expected"),
    [
        (AccountStatus.ACTIVE, order(BUY), 0, None),
        (AccountStatus.PASSED, order(BUY), 0, None),
        (AccountStatus.BREACHED, order(BUY), 0, "account_breached"),
        (AccountStatus.CLOSED, order(SELL), 0, "account_closed"),
        (AccountStatus.BREACHED, order(BUY, 1), 2, "account_breached"),  # adds
        (AccountStatus.BREACHED, order(SELL, 1), 2, None),  # reduces
        (AccountStatus.CLOSED, order(SELL, 2), 2, None),  # closes
        (AccountStatus.BREACHED, order(SELL, 3), 2, "account_breached"),  # flips
        (AccountStatus.CLOSED, order(SELL, 2, liquidation=True), 2, None),
        (AccountStatus.BREACHED, order(BUY, 1, liquidation=True), 0, None),
    ],
)
def test_account_status_allows(status, intent, snap_positions, expected):
    denial = account_status_allows(intent, held(snap_positions, status=status))
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "account_status"
        assert denial.detail == f"The account is {status.value}: it can only close what is open."


@pytest.mark.parametrize(
    ("working", "expected"),
    [((0, 0), None), ((0, 1), None), ((0, 2), "account_breached"), ((3, 0), None)],
)
def test_breached_account_counts_working_orders_on_the_reducing_side(working, expected):
    snap = held(2, working=working, status=AccountStatus.BREACHED)
    assert code(account_status_allows(order(SELL, 1), snap)) == expected


# -- Trading state -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "intent", "snap", "expected"),
    [
        (TradingState.ACTIVE, order(BUY, 10_000), held(2, working=(3, 3)), None),
        (TradingState.ACTIVE, order(SELL, 5), held(2), None),
        # Halted: nothing but liquidations, not even a reducing order.
        (TradingState.HALTED, order(BUY), snapshot(), "account_halted"),
        (TradingState.HALTED, order(SELL), snapshot(), "account_halted"),
        (TradingState.HALTED, order(BUY, 3), held(2), "account_halted"),
        (TradingState.HALTED, order(SELL, 1), held(2), "account_halted"),
        (TradingState.HALTED, order(SELL, 2, liquidation=True), held(2), None),
        (TradingState.HALTED, order(BUY, 1, liquidation=True), held(-3), None),
        # Reducing: only orders that take exposure off, counting working orders.
        (TradingState.REDUCING, order(SELL, 1), held(2), None),
        (TradingState.REDUCING, order(SELL, 2), held(2), None),
        (TradingState.REDUCING, order(BUY, 3), held(-3), None),
        (TradingState.REDUCING, order(SELL, 3), held(5, working=(0, 2)), None),
        (TradingState.REDUCING, order(SELL, 2), held(2, working=(4, 0)), None),
        (TradingState.REDUCING, order(BUY, 1), snapshot(), "account_reducing"),  # opens
        (TradingState.REDUCING, order(BUY, 1), held(2), "account_reducing"),  # adds
        (TradingState.REDUCING, order(SELL, 1), held(-2), "account_reducing"),  # adds short
        (TradingState.REDUCING, order(SELL, 3), held(2), "account_reducing"),  # flips
        (TradingState.REDUCING, order(SELL, 1), held(2, working=(0, 2)), "account_reducing"),  # working flips
        (TradingState.REDUCING, order(BUY, 2), held(-3, working=(2, 0)), "account_reducing"),
        (TradingState.REDUCING, order(BUY, 1, "ESM6"), held(2), "account_reducing"),  # another symbol
        (TradingState.REDUCING, order(SELL, 3, liquidation=True), held(2), None),
    ],
)
def test_trading_state_allows(state, intent, snap, expected):
    snap = dataclasses.replace(snap, trading_state=state)
    denial = trading_state_allows(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "trading_state"
    if expected == "account_reducing":
        assert intent.symbol in denial.detail


# -- Reconciliation gate -------------------------------------------------------------------------------

MAX_AGE = timedelta(seconds=120)
GOOD = ReconciliationStatus(max_age=MAX_AGE, last_good_at=NOW - timedelta(seconds=30))
STALE = ReconciliationStatus(max_age=MAX_AGE, last_good_at=NOW - timedelta(seconds=121))
FAILED = ReconciliationStatus(
    max_age=MAX_AGE,
    last_good_at=NOW - timedelta(seconds=60),
    failed_at=NOW - timedelta(seconds=10),
    error="The broker could not be asked: timeout",
)
NEVER = ReconciliationStatus(max_age=MAX_AGE)


@pytest.mark.parametrize(
    ("status", "intent", "snap", "expected"),
    [
        (ReconciliationStatus(), order(BUY, 5), snapshot(), None),  # gate off
        (ReconciliationStatus(last_good_at=NOW - timedelta(days=3)), order(BUY), snapshot(), None),  # gate off
        (GOOD, order(BUY, 5), snapshot(), None),
        (ReconciliationStatus(max_age=MAX_AGE, last_good_at=NOW - MAX_AGE), order(BUY), snapshot(), None),
        (STALE, order(BUY), snapshot(), "reconciliation_stale"),
        (FAILED, order(BUY), snapshot(), "reconciliation_failed"),
        (NEVER, order(BUY), snapshot(), "reconciliation_pending"),
        # Only new risk waits: reducing orders and our own liquidations pass.
        (FAILED, order(SELL, 1), held(2), None),
        (STALE, order(SELL, 2), held(2), None),
        (NEVER, order(BUY, 3), held(-3), None),
        (FAILED, order(SELL, 3), held(2), "reconciliation_failed"),  # flips
        (FAILED, order(BUY, 1), held(2), "reconciliation_failed"),  # adds
        (STALE, order(SELL, 1), held(2, working=(0, 2)), "reconciliation_stale"),  # working orders flip it
        (FAILED, order(SELL, 3, liquidation=True), held(2), None),
    ],
)
def test_reconciliation_allows(status, intent, snap, expected):
    denial = reconciliation_allows(intent, dataclasses.replace(snap, reconciliation=status))
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "reconciliation"
        assert "Only orders that reduce exposure" in denial.detail


def test_reconciliation_denials_say_why_and_since_when():
    failed = reconciliation_allows(order(BUY), snapshot(reconciliation=FAILED))
    stale = reconciliation_allows(order(BUY), snapshot(reconciliation=STALE))
    assert failed is not None and stale is not None
    assert "failed at 2026-05-12 14:59:50 UTC (The broker could not be asked: timeout)" in failed.detail
    assert "was at 2026-05-12 14:57:59 UTC, stale since 2026-05-12 14:59:59 UTC" in stale.detail


# -- Soft block (daily loss) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blocked_until", "intent", "position", "expected"),
    [
        (None, order(BUY), 0, None),
        (NOW + timedelta(hours=7), order(BUY), 0, "daily_loss_blocked"),
        (NOW + timedelta(seconds=1), order(SELL), 0, "daily_loss_blocked"),
        (NOW + timedelta(hours=7), order(BUY, 1), 2, "daily_loss_blocked"),  # adds
        (NOW + timedelta(hours=7), order(SELL, 3), 2, "daily_loss_blocked"),  # flips
        (NOW + timedelta(hours=7), order(SELL, 1), 2, None),  # reduces
        (NOW + timedelta(hours=7), order(SELL, 2, liquidation=True), 2, None),
        (NOW, order(BUY), 0, None),  # the block ends at blocked_until
        (NOW - timedelta(seconds=1), order(BUY), 0, None),
    ],
)
def test_soft_block_allows(blocked_until, intent, position, expected):
    snap = held(position, blocked_until=blocked_until, blocked_reason="Daily loss limit of 1,000 hit.")
    denial = soft_block_allows(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "daily_loss"
        assert denial.detail.startswith("Daily loss limit of 1,000 hit.")


def test_soft_block_detail_has_a_default_reason():
    denial = soft_block_allows(order(BUY), snapshot(blocked_until=NOW + timedelta(hours=1)))
    assert denial is not None
    assert denial.detail.startswith("The daily loss limit was hit.")


# -- Automation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "intent", "position", "expected"),
    [
        (True, order(BUY, automated=True), 0, None),
        (True, order(BUY), 0, None),
        (False, order(BUY), 0, None),  # by hand
        (False, order(BUY, automated=True), 0, "automation_not_allowed"),
        (False, order(SELL, 1, automated=True), 2, None),  # a bot's exit: never leave a position stuck open
        (False, order(SELL, 2, automated=True, liquidation=True), 2, None),
        (False, order(SELL, 2, liquidation=True), 2, None),
    ],
)
def test_automation_allows(allowed, intent, position, expected):
    snap = held(position, rules=rules(automation_allowed=allowed))
    denial = automation_allows(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "automation"


# -- Hours, flat-by, news -----------------------------------------------------------------------------

RTH = tuple(Window(day, time(8, 30), time(15, 0)) for day in range(5))
CL_CLOSE = EarlyClose(None, frozenset({"CL"}), time(13, 30), "energy close")
FOMC = Release("FOMC", datetime(2026, 5, 12, 13, 0, tzinfo=CHICAGO), frozenset({"ES", "MES"}))
TOPSTEP_HOURS = rules(flat_by=time(15, 10), news_blackout_minutes_before=2, news_blackout_minutes_after=2)


def timed(now: datetime, position: int = 0, symbol: str = "MESM6", **fields: Any) -> AccountSnapshot:
    fields.setdefault("rules", TOPSTEP_HOURS)
    return held(position, symbol, now=now, early_closes=(CL_CLOSE,), releases=(FOMC,), **fields)


@pytest.mark.parametrize(
    ("intent", "snap", "expected"),
    [
        (order(BUY), timed(ct(10)), None),
        # Trading windows.
        (order(BUY), timed(ct(8, 30), windows=RTH), None),
        (order(BUY), timed(ct(8, 29), windows=RTH), "outside_trading_hours"),
        (order(BUY), timed(ct(15, 0), windows=RTH), "outside_trading_hours"),
        (order(BUY), timed(datetime(2026, 5, 16, 10, 0, tzinfo=CHICAGO), windows=RTH), "outside_trading_hours"),
        (order(SELL, 1), timed(ct(16), 2, windows=RTH), None),  # reducing
        (order(SELL, 2, liquidation=True), timed(ct(16), 2, windows=RTH), None),
        # Outside the windows wins over past flat-by: one denial per rule.
        (order(BUY), timed(ct(15, 30), windows=RTH), "outside_trading_hours"),
        # Flat-by 15:10 CT.
        (order(BUY), timed(ct(15, 9, 59)), None),
        (order(BUY), timed(ct(15, 10)), "past_flat_by"),
        (order(SELL), timed(ct(16, 59)), "past_flat_by"),
        (order(BUY), timed(ct(17, 0)), None),  # the next trade date is open
        (order(BUY, 1), timed(ct(15, 30), 2), "past_flat_by"),  # adds
        (order(SELL, 1), timed(ct(15, 30), 2), None),  # reduces
        (order(SELL, 3, liquidation=True), timed(ct(15, 30), 2), None),
        # A product's early close applies to its root only.
        (order(BUY, 1, "CLN6"), timed(ct(13, 29)), None),
        (order(BUY, 1, "CLN6"), timed(ct(13, 30)), "past_flat_by"),
        (order(SELL, 1, "CLN6"), timed(ct(14, 0), 1, "CLN6"), None),
        (order(BUY, 1, "ESM6"), timed(ct(14, 0)), None),
        # News blackout, 2 minutes either side of 13:00 CT, ES and MES only.
        (order(BUY), timed(ct(12, 57, 59)), None),
        (order(BUY), timed(ct(12, 58)), "news_blackout"),
        (order(BUY, 1, "ESM6"), timed(ct(13, 2)), "news_blackout"),
        (order(BUY), timed(ct(13, 2, 1)), None),
        (order(BUY, 1, "MNQM6"), timed(ct(13, 0)), None),  # another root
        (order(SELL, 1), timed(ct(13, 0), 2), None),  # reducing
        (order(SELL, 1, liquidation=True), timed(ct(13, 0), 0), None),
        (order(BUY), timed(ct(13, 0), rules=rules(flat_by=time(15, 10))), None),  # no blackout minutes
    ],
)
def test_hours_allow(intent, snap, expected):
    denial = hours_allow(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        rule = {"outside_trading_hours": "trading_hours", "past_flat_by": "flat_by", "news_blackout": "news_blackout"}
        assert denial.rule == rule[expected]


def test_hours_allow_uses_the_program_time_zone_for_windows():
    new_york = tuple(Window(day, time(9, 30), time(16, 0)) for day in range(5))
    snap = timed(ct(8, 30), windows=new_york, rules=rules(time_zone="America/New_York"))
    assert hours_allow(order(BUY), snap) is None  # 09:30 ET
    snap = timed(ct(8, 29), windows=new_york, rules=rules(time_zone="America/New_York"))
    assert code(hours_allow(order(BUY), snap)) == "outside_trading_hours"


def test_hours_denials_name_the_root_and_reason():
    denial = hours_allow(order(BUY, 1, "CLN6"), timed(ct(14, 0)))
    assert denial is not None
    assert "energy close (13:30 CT)" in denial.detail
    assert "CL" in denial.detail
    denial = hours_allow(order(BUY), timed(ct(13, 0)))
    assert denial is not None
    assert "FOMC" in denial.detail


# -- Products -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("product_rules", "intent", "position", "expected"),
    [
        (rules(), order(BUY, 1, "CLN6"), 0, None),  # no list: everything
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(BUY), 0, None),
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(BUY, 1, "ESM6"), 0, None),
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(BUY, 1, "CLN6"), 0, "product_not_allowed"),
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(SELL, 1, "CLN6"), 1, None),  # reducing
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(SELL, 1, "CLN6", liquidation=True), 1, None),
        (rules(allowed_roots=frozenset({"ES", "MES"})), order(BUY, 1, "ZCN6"), 0, "product_not_allowed"),
        (rules(allowed_roots=frozenset({"ZCN6"})), order(BUY, 1, "ZCN6"), 0, None),  # no contract info: the symbol
        (rules(restricted_roots=frozenset({"CL"})), order(BUY, 1, "CLN6"), 0, "product_not_allowed"),
        (rules(restricted_roots=frozenset({"CL"})), order(BUY, 1, "MNQM6"), 0, None),
        (rules(restricted_roots=frozenset({"CL"})), order(BUY, 2, "CLN6"), 1, "product_not_allowed"),  # adds
        # Restricted wins over allowed.
        (
            rules(allowed_roots=frozenset({"CL", "ES"}), restricted_roots=frozenset({"CL"})),
            order(BUY, 1, "CLN6"),
            0,
            "product_not_allowed",
        ),
    ],
)
def test_product_allowed(product_rules, intent, position, expected):
    denial = product_allowed(intent, held(position, intent.symbol, rules=product_rules))
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "product"
        assert (CONTRACTS[intent.symbol].root if intent.symbol in CONTRACTS else intent.symbol) in denial.detail


# -- Max contracts --------------------------------------------------------------------------------------

TOPSTEPX_50K = rules(max_contracts=5, micro_weight=D("0.1"))  # 5 lots or 50 micros
LEGACY_50K = rules(max_contracts=5, micro_weight=D(1))  # a micro counts as a full lot


@pytest.mark.parametrize(
    ("limits", "intent", "positions", "working", "scaled", "expected"),
    [
        (rules(), order(BUY, 10_000, "ESM6"), {}, {}, None, None),  # no limit
        (TOPSTEPX_50K, order(BUY, 5, "ESM6"), {}, {}, None, None),
        (TOPSTEPX_50K, order(BUY, 6, "ESM6"), {}, {}, None, "max_contracts"),
        # Micro weight 0.1 vs 1.
        (TOPSTEPX_50K, order(BUY, 50), {}, {}, None, None),
        (TOPSTEPX_50K, order(BUY, 51), {}, {}, None, "max_contracts"),
        (LEGACY_50K, order(BUY, 5), {}, {}, None, None),
        (LEGACY_50K, order(BUY, 6), {}, {}, None, "max_contracts"),
        # Positions and working orders count, on the worst side.
        (TOPSTEPX_50K, order(BUY, 1, "ESM6"), {"ESM6": 3}, {"ESM6": (1, 0)}, None, None),
        (TOPSTEPX_50K, order(BUY, 2, "ESM6"), {"ESM6": 3}, {"ESM6": (1, 0)}, None, "max_contracts"),
        (TOPSTEPX_50K, order(BUY, 2, "ESM6"), {}, {"ESM6": (0, 4)}, None, None),  # 2 long or 4 short
        (TOPSTEPX_50K, order(BUY, 2, "ESM6"), {}, {"ESM6": (0, 6)}, None, "max_contracts"),
        (TOPSTEPX_50K, order(SELL, 2, "ESM6"), {"ESM6": -3}, {"ESM6": (0, 1)}, None, "max_contracts"),
        # Across symbols, weighted.
        (TOPSTEPX_50K, order(BUY, 10), {"ESM6": 4}, {}, None, None),  # 4 + 1.0
        (TOPSTEPX_50K, order(BUY, 11), {"ESM6": 4}, {}, None, "max_contracts"),  # 4 + 1.1
        (TOPSTEPX_50K, order(BUY, 1, "ESM6"), {"MESM6": 30, "MNQM6": 10}, {}, None, None),  # 3 + 1 + 1
        (TOPSTEPX_50K, order(BUY, 1, "ESM6"), {"MESM6": 30}, {"MNQM6": (11, 0)}, None, "max_contracts"),
        # Reducing an over-limit position is allowed.
        (TOPSTEPX_50K, order(SELL, 1, "ESM6"), {"ESM6": 8}, {}, None, None),
        (TOPSTEPX_50K, order(SELL, 8, "ESM6", liquidation=True), {"ESM6": 8}, {}, None, None),
        # A scaled maximum smaller than the program's wins; a larger one does not.
        (TOPSTEPX_50K, order(BUY, 2, "ESM6"), {}, {}, 2, None),
        (TOPSTEPX_50K, order(BUY, 3, "ESM6"), {}, {}, 2, "max_contracts"),
        (TOPSTEPX_50K, order(BUY, 21), {}, {}, 2, "max_contracts"),
        (TOPSTEPX_50K, order(BUY, 6, "ESM6"), {}, {}, 10, "max_contracts"),
        (rules(micro_weight=D("0.1")), order(BUY, 3, "ESM6"), {}, {}, 3, None),  # scaling alone
        (rules(micro_weight=D("0.1")), order(BUY, 4, "ESM6"), {}, {}, 3, "max_contracts"),
    ],
)
def test_max_contracts_allow(limits, intent, positions, working, scaled, expected):
    snap = snapshot(positions=positions, working=working, rules=limits, scaled_max_contracts=scaled)
    denial = max_contracts_allow(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "max_contracts"


@pytest.mark.parametrize(("scaled", "says_scaling"), [(2, True), (10, False), (None, False)])
def test_max_contracts_detail_says_when_the_scaling_plan_is_the_limit(scaled, says_scaling):
    denial = max_contracts_allow(order(BUY, 11, "ESM6"), snapshot(rules=TOPSTEPX_50K, scaled_max_contracts=scaled))
    assert denial is not None
    assert ("(scaling plan)" in denial.detail) is says_scaling
    assert "micros count 0.1" in denial.detail


PER_ROOT = rules(
    max_contracts=5,
    micro_weight=D("0.1"),
    contract_rules={"CL": ContractRule(max_contracts=2), "MNQ": ContractRule(weight=D("0.5"))},
)


@pytest.mark.parametrize(
    ("intent", "positions", "working", "expected"),
    [
        (order(BUY, 2, "CLN6"), {}, {}, None),
        (order(BUY, 3, "CLN6"), {}, {}, "max_contracts"),
        (order(BUY, 1, "CLN6"), {"CLN6": 1}, {"CLN6": (1, 0)}, "max_contracts"),
        (order(BUY, 1, "CLN6"), {"CLN6": 1}, {}, None),
        (order(BUY, 1, "CLQ6"), {"CLN6": 1}, {}, None),
        (order(BUY, 2, "CLQ6"), {"CLN6": 1}, {}, "max_contracts"),  # another CL month: same root
        (order(BUY, 2, "ESM6"), {"CLN6": 2}, {}, None),  # 2 CL + 2 ES under 5
        (order(BUY, 4, "ESM6"), {"CLN6": 2}, {}, "max_contracts"),  # the program maximum still applies
        # Per-root weight: MNQ counts 0.5 here.
        (order(BUY, 10, "MNQM6"), {}, {}, None),
        (order(BUY, 11, "MNQM6"), {}, {}, "max_contracts"),
        (order(BUY, 50), {}, {}, None),  # MES keeps 0.1
    ],
)
def test_max_contracts_per_root(intent, positions, working, expected):
    contracts = {**CONTRACTS, "CLQ6": dataclasses.replace(CL, symbol="CLQ6")}
    snap = snapshot(positions=positions, working=working, rules=PER_ROOT, contracts=contracts)
    assert code(max_contracts_allow(intent, snap)) == expected


def test_max_contracts_per_root_detail_names_the_root():
    denial = max_contracts_allow(order(BUY, 3, "CLN6"), snapshot(rules=PER_ROOT))
    assert denial is not None
    assert denial.detail.startswith("At most 2 CL contracts")


# -- Worst-case loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intent", "snap", "expected"),
    [
        # With a stop loss: ticks from the entry to the stop.
        (order(BUY, 2, kind=LIMIT, limit="5000.00", stop_loss="4990.00"), snapshot(), "100.00"),  # 40 x 1.25 x 2
        (order(SELL, 1, "ESM6", kind=LIMIT, limit="5000.00", stop_loss="5005.00"), snapshot(), "250.00"),
        (order(BUY, 1, "ESM6", stop_loss="4995.00"), snapshot(), "250.00"),  # market: the last price
        (order(BUY, 1, "ESM6", kind=STOP, stop="5010.00", stop_loss="5000.00"), snapshot(), "500.00"),
        (
            order(BUY, 1, "ESM6", kind=STOP_LIMIT, stop="5010.00", limit="5011.00", stop_loss="5000.00"),
            snapshot(),
            "550.00",
        ),
        (order(BUY, 3, "CLN6", kind=LIMIT, limit="70.00", stop_loss="69.80"), snapshot(), "600.00"),  # 20 x 10 x 3
        (order(BUY, 4, "MNQM6", stop_loss="17990.00"), snapshot(), "80.00"),  # 40 x 0.50 x 4
        # Without a stop loss: the adverse move.
        (order(BUY, 1, "ESM6"), snapshot(), "250.00"),  # 20 ticks x 12.50
        (order(BUY, 2, "ESM6", kind=LIMIT, limit="4990.00"), snapshot(), "500.00"),
        (order(BUY, 1, "CLN6"), snapshot(rules=rules(adverse_move_ticks=8)), "80.00"),
        # A stop loss but no entry price known: the adverse move.
        (order(BUY, 1, "ESM6", stop_loss="4995.00"), snapshot(last_prices={}), "250.00"),
        # No contract: unknown.
        (order(BUY, 1, "ZCN6"), snapshot(), None),
    ],
)
def test_worst_case_loss(intent, snap, expected):
    assert worst_case_loss(intent, snap) == (None if expected is None else D(expected))


@pytest.mark.parametrize(
    ("intent", "daily_room", "drawdown_room", "expected", "names"),
    [
        (order(BUY, 1, "ESM6"), None, None, None, None),  # no room rule
        (order(BUY, 1, "ESM6"), D("250.01"), None, None, None),
        (order(BUY, 1, "ESM6"), D("250.00"), None, "worst_case_loss", "the daily loss limit"),  # equal denies
        (order(BUY, 1, "ESM6"), None, D("250.00"), "worst_case_loss", "the drawdown floor"),
        (order(BUY, 1, "ESM6"), D(1000), D(200), "worst_case_loss", "the drawdown floor"),  # the smaller room wins
        (order(BUY, 1, "ESM6"), D(200), D(1000), "worst_case_loss", "the daily loss limit"),
        (order(BUY, 1, "ESM6"), D(300), D(300), None, None),
        (order(BUY, 1, "ESM6"), D(-50), D(1000), "worst_case_loss", "the daily loss limit"),  # already past
        (order(BUY, 2, kind=LIMIT, limit="5000.00", stop_loss="4990.00"), D(100), None, "worst_case_loss", None),
        (order(BUY, 2, kind=LIMIT, limit="5000.00", stop_loss="4990.00"), D("100.01"), None, None, None),
        (order(BUY, 2, kind=LIMIT, limit="5000.00", stop_loss="4990.00"), D(1000), D(99), "worst_case_loss", None),
        (order(BUY, 1, "ZCN6"), D(0), D(0), None, None),  # no contract info: no estimate
    ],
)
def test_loss_room_allows(intent, daily_room, drawdown_room, expected, names):
    snap = snapshot(daily_loss_room=daily_room, drawdown_room=drawdown_room)
    denial = loss_room_allows(intent, snap)
    assert code(denial) == expected
    if denial is not None:
        assert denial.rule == "worst_case_loss"
    if names is not None:
        assert names in denial.detail


@pytest.mark.parametrize(
    ("intent", "position"),
    [
        (order(SELL, 1, "ESM6"), 2),  # reduces
        (order(SELL, 2, "ESM6", liquidation=True), 2),
        (order(BUY, 5, "ESM6", liquidation=True), -5),
    ],
)
def test_loss_room_allows_orders_that_take_risk_off(intent, position):
    snap = held(position, "ESM6", daily_loss_room=D(-500), drawdown_room=D(0))
    assert loss_room_allows(intent, snap) is None


def test_loss_room_detail_says_how_the_loss_was_estimated():
    snap = snapshot(daily_loss_room=D(-50))
    denial = loss_room_allows(order(BUY, 1, "ESM6", kind=LIMIT, limit="5000.00", stop_loss="4990.00"), snap)
    assert denial is not None
    assert denial.detail == "This order could lose 500.00 at its stop; only 0.00 is left above the daily loss limit."
    denial = loss_room_allows(order(BUY, 1, "ESM6"), snapshot(drawdown_room=D(100)))
    assert denial is not None
    assert "on a 20-tick adverse move" in denial.detail
    assert "only 100.00 is left above the drawdown floor" in denial.detail


# -- All rules together ---------------------------------------------------------------------------------


def everything_wrong(**fields: Any) -> AccountSnapshot:
    return held(
        2,
        "ESM6",
        status=AccountStatus.BREACHED,
        state=TradingState.HALTED,
        now=ct(15, 30),
        blocked_until=ct(17, 0),
        rules=rules(
            automation_allowed=False,
            flat_by=time(15, 10),
            allowed_roots=frozenset({"MES"}),
            max_contracts=1,
        ),
        daily_loss_room=D(0),
        drawdown_room=D(0),
        **fields,
    )


def test_evaluate_pre_trade_returns_every_denial_in_rule_order():
    denials = evaluate_pre_trade(order(BUY, 2, "ESM6", automated=True), everything_wrong())
    assert [(d.rule, d.code) for d in denials] == [
        ("account_status", "account_breached"),
        ("trading_state", "account_halted"),
        ("daily_loss", "daily_loss_blocked"),
        ("automation", "automation_not_allowed"),
        ("flat_by", "past_flat_by"),
        ("product", "product_not_allowed"),
        ("max_contracts", "max_contracts"),
        ("worst_case_loss", "worst_case_loss"),
    ]


def test_evaluate_pre_trade_lets_a_liquidation_through_everything():
    assert evaluate_pre_trade(order(SELL, 2, "ESM6", automated=True, liquidation=True), everything_wrong()) == []


def test_evaluate_pre_trade_lets_a_manual_reduce_through_all_but_the_halt():
    assert codes(order(SELL, 1, "ESM6"), everything_wrong()) == ["account_halted"]


@pytest.mark.parametrize(
    ("intent", "snap", "expected"),
    [
        (order(BUY), snapshot(), []),
        (order(BUY), snapshot(state=TradingState.HALTED), ["account_halted"]),
        (
            order(BUY),
            snapshot(status=AccountStatus.CLOSED, state=TradingState.REDUCING),
            ["account_closed", "account_reducing"],
        ),
        (
            order(BUY, 6, "ESM6"),
            snapshot(rules=TOPSTEPX_50K, drawdown_room=D(1000)),
            ["max_contracts", "worst_case_loss"],
        ),  # 6 x 250 >= 1000
        (
            order(BUY, 1, "CLN6", automated=True),
            timed(ct(14, 0), rules=rules(automation_allowed=False)),
            ["automation_not_allowed", "past_flat_by"],
        ),
        (
            order(BUY, 1, "CLN6"),
            timed(ct(14, 0), rules=rules(restricted_roots=frozenset({"CL"}))),
            ["past_flat_by", "product_not_allowed"],
        ),
        (
            order(BUY, 1, "ESM6"),
            snapshot(now=NOW, blocked_until=NOW + timedelta(hours=1), daily_loss_room=D(-10)),
            ["daily_loss_blocked", "worst_case_loss"],
        ),
        (order(SELL, 1, "ESM6"), held(1, "ESM6", state=TradingState.REDUCING, daily_loss_room=D(-10)), []),
    ],
)
def test_evaluate_pre_trade_table(intent, snap, expected):
    assert codes(intent, snap) == expected


def test_snapshot_defaults_are_aware_utc_now():
    snap = AccountSnapshot(status=AccountStatus.ACTIVE, trading_state=TradingState.ACTIVE)
    assert snap.now.tzinfo is UTC
    assert evaluate_pre_trade(order(BUY), snap) == []
