"""Pre-trade rules (pure): each looks at an order intent and an account snapshot and returns a
denial with a rule name, a machine code and a sentence, or None.

Orders that only take risk off (closing, flattening, a reduce that cannot flip the position)
pass the status, soft-block, hours, product, contract and loss rules: a trader must always be
able to get flat. Only a halted account refuses them, unless they are our own liquidations
(close, flatten, enforcement).
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from accounts.domain import AccountStatus, TradingState
from orders.domain import OrderIntent, OrderType
from risk.domain import (
    ContractInfo,
    EffectiveRules,
    RiskRule,
    contract_weight,
    max_contracts_in_force,
    worst_case_contracts,
)
from risk.hours import EarlyClose, Release, active_blackout, past_flat_by, within_windows
from risk.hours import Window as TradingWindow
from risk.trading_day import CME_TZ


@dataclass(frozen=True)
class Denial:
    rule: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "code": self.code, "detail": self.detail}


@dataclass(frozen=True)
class ReconciliationStatus:
    """How recently the account's books were found in line with its broker's."""

    max_age: timedelta | None = None  # None: the gate is off
    last_good_at: datetime | None = None  # start of the last run that passed (clean or corrected)
    failed_at: datetime | None = None  # start of the last run, when that run failed
    error: str = ""


@dataclass(frozen=True)
class AccountSnapshot:
    status: AccountStatus
    trading_state: TradingState
    positions: Mapping[str, int] = field(default_factory=dict)  # signed quantity by symbol
    working: Mapping[str, tuple[int, int]] = field(default_factory=dict)  # unfilled (buy, sell) by symbol
    rules: EffectiveRules = field(default_factory=EffectiveRules)
    contracts: Mapping[str, ContractInfo] = field(default_factory=dict)  # by symbol: held, working, ordered
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    last_prices: Mapping[str, Decimal] = field(default_factory=dict)
    daily_loss_room: Decimal | None = None  # money left under the daily limit (open P&L included)
    drawdown_room: Decimal | None = None  # equity above the floor
    scaled_max_contracts: int | None = None
    blocked_until: datetime | None = None
    blocked_reason: str = ""
    windows: tuple[TradingWindow, ...] = ()
    early_closes: tuple[EarlyClose, ...] = ()
    releases: tuple[Release, ...] = ()
    reconciliation: ReconciliationStatus = field(default_factory=ReconciliationStatus)


Rule = Callable[[OrderIntent, AccountSnapshot], Denial | None]


def increases_exposure(intent: OrderIntent, snapshot: AccountSnapshot) -> bool:
    """True unless the order only takes off part of the position, even if every order already
    working on the reducing side also fills (so two "reducing" orders cannot flip a position)."""
    if intent.is_liquidation:
        return False
    held = snapshot.positions.get(intent.symbol, 0)
    signed = intent.signed_quantity
    if held == 0 or (held > 0) == (signed > 0):
        return True
    working_buy, working_sell = snapshot.working.get(intent.symbol, (0, 0))
    already_reducing = working_sell if held > 0 else working_buy
    return abs(signed) + already_reducing > abs(held)


def account_status_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if snapshot.status in (AccountStatus.BREACHED, AccountStatus.CLOSED) and increases_exposure(intent, snapshot):
        return Denial(
            rule=RiskRule.ACCOUNT_STATUS,
            code=f"account_{snapshot.status}",
            detail=f"The account is {snapshot.status}: it can only close what is open.",
        )
    return None


def trading_state_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if snapshot.trading_state == TradingState.HALTED and not intent.is_liquidation:
        return Denial(
            rule=RiskRule.TRADING_STATE,
            code="account_halted",
            detail="The account is halted: no new orders until staff resume it (closing positions still works).",
        )
    if snapshot.trading_state == TradingState.REDUCING and increases_exposure(intent, snapshot):
        return Denial(
            rule=RiskRule.TRADING_STATE,
            code="account_reducing",
            detail=(
                "The account may only reduce exposure: this order would open or add to a position "
                f"in {intent.symbol}, counting the orders already working."
            ),
        )
    return None


def reconciliation_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    """Books not known to match the broker's (last run failed, or none recent enough) may hide a
    position or a working order: until a run passes the account acts as REDUCING."""
    status = snapshot.reconciliation
    if status.max_age is None or not increases_exposure(intent, snapshot):
        return None
    then = "%Y-%m-%d %H:%M:%S UTC"
    if status.failed_at is not None:
        why = f"the last reconciliation with the broker failed at {status.failed_at.astimezone(UTC):{then}}" + (
            f" ({status.error})" if status.error else ""
        )
        code = "reconciliation_failed"
    elif status.last_good_at is None:
        why = "the account has not been reconciled with its broker yet"
        code = "reconciliation_pending"
    elif snapshot.now - status.last_good_at > status.max_age:
        stale_since = status.last_good_at + status.max_age
        why = (
            f"the last good reconciliation with the broker was at {status.last_good_at.astimezone(UTC):{then}}, "
            f"stale since {stale_since.astimezone(UTC):{then}} (at most {int(status.max_age.total_seconds())} s old)"
        )
        code = "reconciliation_stale"
    else:
        return None
    return Denial(
        rule=RiskRule.RECONCILIATION,
        code=code,
        detail=f"Only orders that reduce exposure are allowed: {why}. New risk waits until a reconciliation passes.",
    )


def soft_block_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if snapshot.blocked_until and snapshot.now < snapshot.blocked_until and increases_exposure(intent, snapshot):
        return Denial(
            rule=RiskRule.DAILY_LOSS,
            code="daily_loss_blocked",
            detail=(
                f"{snapshot.blocked_reason or 'The daily loss limit was hit.'} New risk is blocked until "
                f"{snapshot.blocked_until.astimezone(CME_TZ):%Y-%m-%d %H:%M} CT (the next trade date)."
            ),
        )
    return None


def _root(intent: OrderIntent, snapshot: AccountSnapshot) -> str:
    contract = snapshot.contracts.get(intent.symbol)
    return contract.root if contract else intent.symbol


def hours_allow(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if not increases_exposure(intent, snapshot):
        return None
    rules, root = snapshot.rules, _root(intent, snapshot)
    if not within_windows(snapshot.now, snapshot.windows, rules.time_zone):
        return Denial(
            rule=RiskRule.TRADING_HOURS,
            code="outside_trading_hours",
            detail=f"The program does not allow trading now ({rules.time_zone} time); only closing is allowed.",
        )
    why = past_flat_by(
        snapshot.now, root=root, flat_by=rules.flat_by, tz_name=rules.time_zone, early_closes=snapshot.early_closes
    )
    if why:
        return Denial(
            rule=RiskRule.FLAT_BY,
            code="past_flat_by",
            detail=f"Past {why}: no new {root} positions until the next trade date opens at 17:00 CT.",
        )
    release = active_blackout(
        snapshot.now,
        root=root,
        releases=snapshot.releases,
        minutes_before=rules.news_blackout_minutes_before,
        minutes_after=rules.news_blackout_minutes_after,
    )
    if release:
        return Denial(
            rule=RiskRule.NEWS_BLACKOUT,
            code="news_blackout",
            detail=(
                f"News blackout for {release.title} at {release.at.astimezone(CME_TZ):%H:%M} CT: no new {root} "
                f"positions from {rules.news_blackout_minutes_before} min before to "
                f"{rules.news_blackout_minutes_after} min after."
            ),
        )
    return None


def product_allowed(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if not increases_exposure(intent, snapshot):
        return None
    rules, root = snapshot.rules, _root(intent, snapshot)
    if root in rules.restricted_roots or (rules.allowed_roots and root not in rules.allowed_roots):
        return Denial(
            rule=RiskRule.PRODUCT,
            code="product_not_allowed",
            detail=f"{root} is not an allowed product in this program.",
        )
    return None


def _exposure_after(intent: OrderIntent, snapshot: AccountSnapshot) -> dict[str, int]:
    """Worst-case contracts per symbol if this order and every working order fill."""
    symbols = set(snapshot.positions) | set(snapshot.working) | {intent.symbol}
    exposure = {}
    for symbol in symbols:
        buy, sell = snapshot.working.get(symbol, (0, 0))
        if symbol == intent.symbol:
            buy, sell = (buy + intent.quantity, sell) if intent.signed_quantity > 0 else (buy, sell + intent.quantity)
        exposure[symbol] = worst_case_contracts(snapshot.positions.get(symbol, 0), buy, sell)
    return exposure


def max_contracts_allow(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if not increases_exposure(intent, snapshot):
        return None
    rules = snapshot.rules
    exposure = _exposure_after(intent, snapshot)
    contract = snapshot.contracts.get(intent.symbol)
    if contract is not None:
        product_rule = rules.contract_rules.get(contract.root)
        if product_rule is not None and product_rule.max_contracts is not None:
            in_product = sum(
                q for s, q in exposure.items() if (c := snapshot.contracts.get(s)) and c.root == contract.root
            )
            if in_product > product_rule.max_contracts:
                return Denial(
                    rule=RiskRule.MAX_CONTRACTS,
                    code="max_contracts",
                    detail=(
                        f"At most {product_rule.max_contracts} {contract.root} contracts; with this order and the "
                        f"working orders it could reach {in_product}."
                    ),
                )
    limit = max_contracts_in_force(rules, snapshot.scaled_max_contracts)
    if limit is None:
        return None
    weighted = sum(
        (
            contract_weight(rules, c) * quantity if (c := snapshot.contracts.get(symbol)) else Decimal(quantity)
            for symbol, quantity in exposure.items()
        ),
        Decimal(0),
    )
    if weighted > limit:
        scaling = " (scaling plan)" if snapshot.scaled_max_contracts == limit else ""
        return Denial(
            rule=RiskRule.MAX_CONTRACTS,
            code="max_contracts",
            detail=(
                f"At most {limit} contracts{scaling}; with this order and the working orders the account could hold "
                f"{weighted.normalize():f} (micros count {rules.micro_weight.normalize():f})."
            ),
        )
    return None


def worst_case_loss(intent: OrderIntent, snapshot: AccountSnapshot) -> Decimal | None:
    """Money lost if the order fills and the market runs to its stop (or by the adverse move)."""
    contract = snapshot.contracts.get(intent.symbol)
    if contract is None:
        return None
    entry = intent.limit_price if intent.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    if intent.order_type == OrderType.STOP:
        entry = intent.stop_price
    entry = entry if entry is not None else snapshot.last_prices.get(intent.symbol)
    if intent.stop_loss is not None and entry is not None:
        ticks = abs(entry - intent.stop_loss) / contract.tick_size
    else:
        ticks = Decimal(snapshot.rules.adverse_move_ticks)
    return ticks * contract.tick_value * intent.quantity


def loss_room_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    if not increases_exposure(intent, snapshot):
        return None
    rooms = [
        (room, name)
        for room, name in (
            (snapshot.daily_loss_room, "the daily loss limit"),
            (snapshot.drawdown_room, "the drawdown floor"),
        )
        if room is not None
    ]
    if not rooms:
        return None
    room, name = min(rooms)
    loss = worst_case_loss(intent, snapshot)
    if loss is None or loss < room:
        return None
    how = (
        "at its stop" if intent.stop_loss is not None else f"on a {snapshot.rules.adverse_move_ticks}-tick adverse move"
    )
    return Denial(
        rule=RiskRule.WORST_CASE_LOSS,
        code="worst_case_loss",
        detail=f"This order could lose {loss:.2f} {how}; only {max(room, Decimal(0)):.2f} is left above {name}.",
    )


def automation_allows(intent: OrderIntent, snapshot: AccountSnapshot) -> Denial | None:
    # An automated exit is let through: refusing it would leave a position open, which is
    # the one thing worse than a bot's trade in a program that forbids bots.
    if intent.is_automated and not snapshot.rules.automation_allowed and increases_exposure(intent, snapshot):
        return Denial(
            rule=RiskRule.AUTOMATION,
            code="automation_not_allowed",
            detail="This program does not allow automated orders (webhooks, rules, copier); place it by hand.",
        )
    return None


PRE_TRADE_RULES: tuple[Rule, ...] = (
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


def evaluate_pre_trade(intent: OrderIntent, snapshot: AccountSnapshot) -> list[Denial]:
    return [denial for rule in PRE_TRADE_RULES if (denial := rule(intent, snapshot))]
