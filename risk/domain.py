"""Prop-firm rule arithmetic (pure): effective rules, drawdown floors, headroom per rule,
contract counting, scaling tiers and evaluation progress.

Conventions, in one place:
- Money is Decimal. A limit is breached when the room left under it is zero or less: touching
  the floor or the daily limit counts, as the firms' "reaches or falls below" wording says.
- A trailing floor is `min(lock, max(initial floor, high mark - amount))` and never moves down.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, time
from decimal import Decimal
from typing import Any

from django.db.models import TextChoices

ZERO = Decimal(0)
HUNDRED = Decimal(100)


class DailyLossMode(TextChoices):
    OFF = "off", "Off"
    SOFT = "soft", "Soft: flatten and block until the next trade date"
    HARD = "hard", "Hard: fails the account"


class DrawdownKind(TextChoices):
    NONE = "none", "None"
    STATIC = "static", "Static floor"
    EOD_TRAILING = "eod_trailing", "End-of-day trailing"
    INTRADAY_TRAILING = "intraday_trailing", "Intraday trailing (unrealized included)"


class DrawdownLock(TextChoices):
    NONE = "none", "Never stops trailing"
    STARTING_BALANCE = "starting_balance", "Stops at the starting balance"
    STARTING_PLUS = "starting_plus", "Stops at the starting balance + offset"


class ScalingBasis(TextChoices):
    BALANCE = "balance", "Prior end-of-day balance"
    PROFIT = "profit", "Prior end-of-day profit"


class Severity(TextChoices):
    SOFT = "soft", "Soft (blocked until the next trade date)"
    HARD = "hard", "Hard (account failed)"
    ENFORCED = "enforced", "Enforced (positions closed)"


class ViolationAction(TextChoices):
    BLOCKED = "blocked", "Flattened, blocked until the next trade date"
    BREACHED = "breached", "Flattened, halted, account breached"
    FLATTENED = "flattened", "Flattened"


class RiskRule(TextChoices):
    """Rule codes used in denials, headroom and violations."""

    ACCOUNT_STATUS = "account_status", "Account status"
    TRADING_STATE = "trading_state", "Trading state"
    DAILY_LOSS = "daily_loss", "Daily loss limit"
    DRAWDOWN = "drawdown", "Maximum loss (drawdown floor)"
    MAX_CONTRACTS = "max_contracts", "Maximum contracts"
    TRADING_HOURS = "trading_hours", "Trading hours"
    FLAT_BY = "flat_by", "Flat-by time"
    NEWS_BLACKOUT = "news_blackout", "News blackout"
    PRODUCT = "product", "Allowed products"
    WORST_CASE_LOSS = "worst_case_loss", "Worst-case loss"
    AUTOMATION = "automation", "Automation allowed"
    RECONCILIATION = "reconciliation", "Reconciled with the broker"


@dataclass(frozen=True)
class ContractRule:
    max_contracts: int | None = None
    weight: Decimal | None = None


@dataclass(frozen=True)
class EffectiveRules:
    """A program's rules with an account's overrides laid on top. Defaults mean "no rule"."""

    daily_loss_mode: str = DailyLossMode.OFF
    daily_loss_limit: Decimal | None = None
    drawdown_kind: str = DrawdownKind.NONE
    drawdown_amount: Decimal | None = None
    drawdown_lock: str = DrawdownLock.NONE
    drawdown_lock_offset: Decimal = ZERO
    max_contracts: int | None = None
    micro_weight: Decimal = Decimal(1)
    scaling_basis: str = ScalingBasis.BALANCE
    time_zone: str = "America/Chicago"
    flat_by: time | None = None
    flat_by_warning_minutes: int = 5
    news_blackout_minutes_before: int = 0
    news_blackout_minutes_after: int = 0
    allowed_roots: frozenset[str] = frozenset()
    restricted_roots: frozenset[str] = frozenset()
    profit_target: Decimal | None = None
    min_trading_days: int = 0
    consistency_max_pct: Decimal | None = None
    automation_allowed: bool = True
    adverse_move_ticks: int = 20
    contract_rules: Mapping[str, ContractRule] = field(default_factory=dict)
    scaling_tiers: tuple[tuple[Decimal, int], ...] = ()  # (threshold, max contracts), ascending

    @property
    def has_daily_limit(self) -> bool:
        return self.daily_loss_mode != DailyLossMode.OFF and self.daily_loss_limit is not None

    @property
    def has_drawdown(self) -> bool:
        return self.drawdown_kind != DrawdownKind.NONE and self.drawdown_amount is not None

    @property
    def has_news_blackout(self) -> bool:
        return bool(self.news_blackout_minutes_before or self.news_blackout_minutes_after)


# Fields an override row can set (the rest come from related tables).
LAYERED_FIELDS = tuple(f.name for f in fields(EffectiveRules) if f.name not in ("contract_rules", "scaling_tiers"))
_ROOT_SETS = ("allowed_roots", "restricted_roots")


def merge_rules(
    *layers: Mapping[str, Any],
    contract_rules: Mapping[str, ContractRule] | None = None,
    scaling_tiers: Iterable[tuple[Decimal, int]] = (),
) -> EffectiveRules:
    """Later layers win; a None in a layer means "not set here"."""
    values: dict[str, Any] = {}
    for layer in layers:
        for name in LAYERED_FIELDS:
            if layer.get(name) not in (None, ""):  # blank choice fields mean "not set" too
                values[name] = layer[name]
    for name in _ROOT_SETS:
        if name in values:
            values[name] = frozenset(root.strip().upper() for root in values[name])
    return EffectiveRules(
        **values,
        contract_rules=dict(contract_rules or {}),
        scaling_tiers=tuple(sorted(scaling_tiers)),
    )


# -- Drawdown floor -----------------------------------------------------------------------


def lock_level(rules: EffectiveRules, starting_balance: Decimal) -> Decimal | None:
    if rules.drawdown_lock == DrawdownLock.STARTING_BALANCE:
        return starting_balance
    if rules.drawdown_lock == DrawdownLock.STARTING_PLUS:
        return starting_balance + rules.drawdown_lock_offset
    return None


def drawdown_floor(
    rules: EffectiveRules,
    *,
    starting_balance: Decimal,
    high_mark: Decimal,
    previous_floor: Decimal | None = None,
) -> Decimal | None:
    """The floor equity must stay above. `high_mark` is the highest end-of-day balance (EOD
    trailing) or the highest equity seen (intraday trailing); a static floor ignores it."""
    if not rules.has_drawdown:
        return None
    assert rules.drawdown_amount is not None
    initial = starting_balance - rules.drawdown_amount
    if rules.drawdown_kind == DrawdownKind.STATIC:
        return initial
    floor = max(initial, high_mark - rules.drawdown_amount)
    lock = lock_level(rules, starting_balance)
    if lock is not None:
        floor = min(floor, max(lock, initial))
    if previous_floor is not None:
        floor = max(floor, previous_floor)  # a floor never moves down
    return floor


# -- Headroom -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Headroom:
    """Distance to breach of one rule: `room` in money (or contracts), `percent` of the allowance."""

    rule: str
    limit: Decimal  # the threshold: the floor, the daily limit, the contract maximum
    observed: Decimal  # equity, day P&L, contracts in use
    room: Decimal
    percent: Decimal
    # Loss limits are breached on touching them; a contract maximum may be held exactly.
    breached_at_zero: bool = True

    @property
    def breached(self) -> bool:
        return self.room <= 0 if self.breached_at_zero else self.room < 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "limit": str(self.limit),
            "observed": str(self.observed),
            "room": str(self.room),
            "percent": str(self.percent),
            "breached": self.breached,
        }


def _percent(room: Decimal, allowance: Decimal) -> Decimal:
    if allowance <= 0:
        return ZERO
    return (min(max(room, ZERO), allowance) * HUNDRED / allowance).quantize(Decimal("0.01"))  # 0..100


def daily_loss_headroom(rules: EffectiveRules, *, day_pnl: Decimal) -> Headroom | None:
    """Room under the daily loss limit; `day_pnl` is net (fees out) and includes open P&L."""
    if not rules.has_daily_limit:
        return None
    assert rules.daily_loss_limit is not None
    room = rules.daily_loss_limit + day_pnl
    return Headroom(RiskRule.DAILY_LOSS, -rules.daily_loss_limit, day_pnl, room, _percent(room, rules.daily_loss_limit))


def drawdown_headroom(rules: EffectiveRules, *, equity: Decimal, floor: Decimal | None) -> Headroom | None:
    if floor is None or not rules.has_drawdown:
        return None
    assert rules.drawdown_amount is not None
    room = equity - floor
    return Headroom(RiskRule.DRAWDOWN, floor, equity, room, _percent(room, rules.drawdown_amount))


def contracts_headroom(*, max_contracts: int | None, in_use: Decimal) -> Headroom | None:
    if max_contracts is None:
        return None
    limit = Decimal(max_contracts)
    room = limit - in_use
    # The monitor never enforces this rule (pre-trade checks keep accounts under it); the
    # headroom is for display.
    return Headroom(RiskRule.MAX_CONTRACTS, limit, in_use, room, _percent(room, limit), breached_at_zero=False)


# -- Contracts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContractInfo:
    """What the rules need of an instrument."""

    symbol: str
    root: str
    is_micro: bool
    tick_size: Decimal
    tick_value: Decimal


def contract_weight(rules: EffectiveRules, contract: ContractInfo) -> Decimal:
    rule = rules.contract_rules.get(contract.root)
    if rule is not None and rule.weight is not None:
        return rule.weight
    return rules.micro_weight if contract.is_micro else Decimal(1)


def worst_case_contracts(position: int, working_buy: int, working_sell: int) -> int:
    """The largest position (either side) reachable if every working order on one side fills."""
    return max(abs(position + working_buy), abs(position - working_sell))


def max_contracts_in_force(rules: EffectiveRules, scaled_max: int | None) -> int | None:
    limits = [limit for limit in (rules.max_contracts, scaled_max) if limit is not None]
    return min(limits) if limits else None


def scaled_max_contracts(rules: EffectiveRules, *, eod_balance: Decimal, starting_balance: Decimal) -> int | None:
    """The scaling plan's maximum for the next session, from the prior end-of-day figure."""
    if not rules.scaling_tiers:
        return None
    value = eod_balance - starting_balance if rules.scaling_basis == ScalingBasis.PROFIT else eod_balance
    allowed = rules.scaling_tiers[0][1]  # below every threshold: the first tier
    for threshold, max_contracts in rules.scaling_tiers:
        if value >= threshold:
            allowed = max_contracts
    return allowed


# -- Evaluation progress --------------------------------------------------------------------


class EvaluationStatus(TextChoices):
    IN_PROGRESS = "in_progress", "In progress"
    TARGET_REACHED_DAYS_PENDING = "target_reached_days_pending", "Target reached, minimum trading days not yet met"
    TARGET_REACHED_CONSISTENCY_PENDING = (
        "target_reached_consistency_pending",
        "Target reached, consistency not yet met",
    )
    PASSED = "passed", "Passed"
    NO_TARGET = "no_target", "No profit target"


@dataclass(frozen=True)
class DayResult:
    trade_date: date
    net_pnl: Decimal
    fills: int


@dataclass(frozen=True)
class EvaluationProgress:
    status: str
    total_profit: Decimal
    best_day: Decimal | None
    consistency_pct: Decimal | None  # best day as % of total profit
    consistency_met: bool
    needed_for_consistency: Decimal  # more total profit needed to bring the best day under the cap
    trading_days: int
    target_progress_pct: Decimal | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "total_profit": str(self.total_profit),
            "best_day": None if self.best_day is None else str(self.best_day),
            "consistency_pct": None if self.consistency_pct is None else str(self.consistency_pct),
            "consistency_met": self.consistency_met,
            "needed_for_consistency": str(self.needed_for_consistency),
            "trading_days": self.trading_days,
            "target_progress_pct": None if self.target_progress_pct is None else str(self.target_progress_pct),
        }


def evaluation_progress(
    rules: EffectiveRules, *, starting_balance: Decimal, balance: Decimal, days: Iterable[DayResult]
) -> EvaluationProgress:
    """Profit target, minimum trading days and consistency (best day <= X% of total profit).

    These decide passing and payouts, never breaches. A trading day is a trade date with at
    least one fill.
    """
    days = list(days)
    total = balance - starting_balance
    trading_days = sum(1 for d in days if d.fills)
    best = max((d.net_pnl for d in days), default=None)
    consistency_pct = (best * HUNDRED / total).quantize(Decimal("0.01")) if best is not None and total > 0 else None
    needed = ZERO
    consistency_met = True
    if rules.consistency_max_pct is not None and best is not None and best > 0:
        cap = rules.consistency_max_pct / HUNDRED
        consistency_met = total > 0 and best <= cap * total
        if not consistency_met:
            needed = (best / cap - total).quantize(Decimal("0.01"))
    progress = None
    if rules.profit_target:
        progress = (max(total, ZERO) * HUNDRED / rules.profit_target).quantize(Decimal("0.01"))
    if rules.profit_target is None:
        status = EvaluationStatus.NO_TARGET
    elif total < rules.profit_target:
        status = EvaluationStatus.IN_PROGRESS
    elif trading_days < rules.min_trading_days:
        status = EvaluationStatus.TARGET_REACHED_DAYS_PENDING
    elif not consistency_met:
        status = EvaluationStatus.TARGET_REACHED_CONSISTENCY_PENDING
    else:
        status = EvaluationStatus.PASSED
    return EvaluationProgress(
        status=status,
        total_profit=total,
        best_day=best,
        consistency_pct=consistency_pct,
        consistency_met=consistency_met,
        needed_for_consistency=needed,
        trading_days=trading_days,
        target_progress_pct=progress,
    )
