"""Automation rules as data (pure): the schema of a rule's conditions and action, and evaluation.

conditions (every key optional; all given must hold):
    {"signal": {"action": "buy", "ticker_root": "MNQ", "min_confidence": "0.6"},
     "position": "flat" | "long" | "short" | "any",
     "min_profit_r": "1.0",                                   # the open position is at least 1R in profit
     "time_window": {"start": "08:30", "end": "15:00", "tz": "America/Chicago", "days": [0, 1, 2, 3, 4]},
     "market": {"price_vs_atr_band": "above_upper" | "below_lower" | "inside",
                "atr_period": 14, "band_multiplier": "1.5", "bars": 60}}
action:
    {"kind": "open" | "scale_in" | "close_all" | "eod_close",
     "side": "buy" | "sell" | "signal",                        # open only; "signal": the signal's side
     "quantity": 2 | {"atr_risk": "200", "atr_stop_multiple": "1.5"},   # open and scale_in
     "stop_loss_ticks": 8, "take_profit_ticks": 16,           # or "stop_loss_atr": "1.5", "take_profit_atr": "3"
    }

A rule with a `signal` condition runs when a signal of its strategy arrives; one without runs on
the schedule (every 30 s), at most once per time-window occurrence (or per minute without a
window). Rules run in priority order (lower first) and the first that fires wins; a rule whose
conditions hold but whose cooldown has not passed is *held* and the next one is tried.

The ATR band is a Keltner-style channel: the mean close of the last `atr_period` one-minute bars
plus and minus band_multiplier x Wilder's ATR over them; the price is the last price.
ATR sizing: quantity = floor(atr_risk / (atr_stop_multiple x ATR x point value)); the stop then
sits atr_stop_multiple x ATR from the entry unless the action gives its own stop.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from brokers.indicators import OHLC, atr_band, wilder_atr
from config.errors import DomainError

SIGNAL_ACTIONS = ("buy", "sell", "exit", "add", "cancel")
POSITION_STATES = ("flat", "long", "short", "any")
BAND_POSITIONS = ("above_upper", "below_lower", "inside")
ACTION_KINDS = ("open", "scale_in", "close_all", "eod_close")
SIDES = ("buy", "sell", "signal")
MAX_QUANTITY = 10_000
MAX_BARS = 1_000


# -- Schema -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldProblem:
    field: str  # dotted path, e.g. "conditions.time_window.start"
    code: str
    message: str


class InvalidRule(DomainError):
    code = "invalid_rule"

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(" ".join(f"{p.field}: {p.message}" for p in problems), field=problems[0].field)
        self.problems = problems


@dataclass(frozen=True)
class SignalCondition:
    action: str | None = None
    ticker_root: str | None = None
    min_confidence: Decimal | None = None


@dataclass(frozen=True)
class TimeWindow:
    start: time
    end: time
    tz: str = "America/Chicago"
    days: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)

    def occurrence(self, now: datetime) -> str | None:
        """Which occurrence of the window `now` is in (its local start date), or None when outside."""
        local = now.astimezone(ZoneInfo(self.tz))
        clock = local.time().replace(tzinfo=None)
        if self.start <= self.end:
            inside, start_day = self.start <= clock < self.end, local.date()
        elif clock >= self.start:  # a window across midnight, evening part
            inside, start_day = True, local.date()
        else:
            inside, start_day = clock < self.end, local.date() - timedelta(days=1)
        if not inside or start_day.weekday() not in self.days:
            return None
        return f"{start_day.isoformat()}T{self.start:%H:%M}"


@dataclass(frozen=True)
class MarketCondition:
    price_vs_atr_band: str
    atr_period: int = 14
    band_multiplier: Decimal = Decimal("1.5")
    bars: int = 60


@dataclass(frozen=True)
class Conditions:
    signal: SignalCondition | None = None
    position: str = "any"
    min_profit_r: Decimal | None = None
    time_window: TimeWindow | None = None
    market: MarketCondition | None = None


@dataclass(frozen=True)
class AtrSize:
    atr_risk: Decimal
    atr_stop_multiple: Decimal


@dataclass(frozen=True)
class Action:
    kind: str
    side: str | None = None
    quantity: int | AtrSize | None = None
    stop_loss_ticks: int | None = None
    take_profit_ticks: int | None = None
    stop_loss_atr: Decimal | None = None
    take_profit_atr: Decimal | None = None

    @property
    def needs_atr(self) -> bool:
        return isinstance(self.quantity, AtrSize) or self.stop_loss_atr is not None or self.take_profit_atr is not None


class _Problems:
    def __init__(self) -> None:
        self.items: list[FieldProblem] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(FieldProblem(field, code, message))


def _object(value: Any, where: str, problems: _Problems, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        problems.add(where, "not_an_object", "must be a JSON object.")
        return {}
    for key in value:
        if key not in allowed:
            problems.add(f"{where}.{key}", "unknown_field", f"is not a known field (known: {', '.join(allowed)}).")
    return value


def _decimal(value: Any, where: str, problems: _Problems, *, low: Decimal, high: Decimal | None = None) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        problems.add(where, "invalid_number", "must be a number.")
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        problems.add(where, "invalid_number", f"{value!r} is not a number.")
        return None
    if not number.is_finite() or number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        problems.add(where, "out_of_range", f"must be {bounds}.")
        return None
    return number


def _integer(value: Any, where: str, problems: _Problems, *, low: int, high: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(where, "invalid_integer", f"must be a whole number from {low} to {high}.")
        return None
    return value


def _choice(value: Any, where: str, problems: _Problems, choices: Sequence[str]) -> Any:
    if not isinstance(value, str) or value.strip().lower() not in choices:
        problems.add(where, "invalid_choice", f"must be one of {', '.join(choices)} (got {value!r}).")
        return None
    return value.strip().lower()


def _clock(value: Any, where: str, problems: _Problems) -> time | None:
    try:
        hours, minutes = str(value).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        problems.add(where, "invalid_time", f"must be a time as HH:MM (got {value!r}).")
        return None


def _conditions(raw: Any, problems: _Problems) -> Conditions:
    data = _object(raw, "conditions", problems, ("signal", "position", "min_profit_r", "time_window", "market"))
    signal = None
    if "signal" in data:
        sig = _object(data["signal"], "conditions.signal", problems, ("action", "ticker_root", "min_confidence"))
        root = sig.get("ticker_root")
        if root is not None and (not isinstance(root, str) or not root.strip().isalnum()):
            problems.add("conditions.signal.ticker_root", "invalid_root", "must be a product root such as MNQ.")
            root = None
        signal = SignalCondition(
            action=_choice(sig["action"], "conditions.signal.action", problems, SIGNAL_ACTIONS)
            if "action" in sig
            else None,
            ticker_root=root.strip().upper() if root else None,
            min_confidence=_decimal(
                sig["min_confidence"], "conditions.signal.min_confidence", problems, low=Decimal(0), high=Decimal(1)
            )
            if "min_confidence" in sig
            else None,
        )
    position = "any"
    if "position" in data:
        position = _choice(data["position"], "conditions.position", problems, POSITION_STATES) or "any"
    min_profit_r = None
    if "min_profit_r" in data:
        min_profit_r = _decimal(data["min_profit_r"], "conditions.min_profit_r", problems, low=Decimal(-100))
        if position == "flat":
            problems.add("conditions.min_profit_r", "conflict", "a flat position has no profit in R.")
    window = None
    if "time_window" in data:
        where = "conditions.time_window"
        tw = _object(data["time_window"], where, problems, ("start", "end", "tz", "days"))
        start = _clock(tw.get("start"), f"{where}.start", problems)
        end = _clock(tw.get("end"), f"{where}.end", problems)
        tz = tw.get("tz", "America/Chicago")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            problems.add(f"{where}.tz", "unknown_time_zone", f"{tz!r} is not a time zone (e.g. America/Chicago).")
        days = tw.get("days", [0, 1, 2, 3, 4, 5, 6])
        if not isinstance(days, list) or not days or any(isinstance(d, bool) or d not in range(7) for d in days):
            problems.add(f"{where}.days", "invalid_days", "must be a list of weekdays, 0 (Monday) to 6 (Sunday).")
            days = [0]
        if start is not None and end is not None and start == end:
            problems.add(f"{where}.end", "empty_window", "must differ from start.")
        if start is not None and end is not None:
            window = TimeWindow(start=start, end=end, tz=str(tz), days=tuple(sorted(set(days))))
    market = None
    if "market" in data:
        where = "conditions.market"
        mk = _object(data["market"], where, problems, ("price_vs_atr_band", "atr_period", "band_multiplier", "bars"))
        band = _choice(mk.get("price_vs_atr_band"), f"{where}.price_vs_atr_band", problems, BAND_POSITIONS)
        period = _integer(mk.get("atr_period", 14), f"{where}.atr_period", problems, low=1, high=200)
        multiplier = _decimal(
            mk.get("band_multiplier", "1.5"), f"{where}.band_multiplier", problems, low=Decimal(0), high=Decimal(20)
        )
        bars = _integer(mk.get("bars", 60), f"{where}.bars", problems, low=2, high=MAX_BARS)
        if period is not None and bars is not None and bars < period + 1:
            problems.add(f"{where}.bars", "too_few_bars", f"must be at least atr_period + 1 ({period + 1}).")
        if band and period and multiplier is not None and bars:
            market = MarketCondition(price_vs_atr_band=band, atr_period=period, band_multiplier=multiplier, bars=bars)
    return Conditions(signal=signal, position=position, min_profit_r=min_profit_r, time_window=window, market=market)


ACTION_FIELDS = (
    "kind",
    "side",
    "quantity",
    "stop_loss_ticks",
    "take_profit_ticks",
    "stop_loss_atr",
    "take_profit_atr",
)


def _action(raw: Any, conditions: Conditions, problems: _Problems) -> Action:
    data = _object(raw, "action", problems, ACTION_FIELDS)
    kind = _choice(data.get("kind"), "action.kind", problems, ACTION_KINDS)
    if kind in ("close_all", "eod_close"):
        for extra in ACTION_FIELDS[1:]:
            if extra in data:
                problems.add(f"action.{extra}", "not_allowed", f"a {kind} action takes no {extra}.")
        if kind == "eod_close" and conditions.time_window is None:
            problems.add("conditions.time_window", "required", "an end-of-day close needs a time window.")
        return Action(kind=kind)
    side = None
    if kind == "open":
        side = _choice(data.get("side", "signal"), "action.side", problems, SIDES)
        if side == "signal" and (conditions.signal is None or conditions.signal.action not in (None, "buy", "sell")):
            problems.add(
                "action.side", "needs_signal", 'side "signal" needs a signal condition on buy or sell signals.'
            )
    elif kind == "scale_in" and "side" in data:
        problems.add("action.side", "not_allowed", "scale_in adds in the direction of the position.")
    quantity: int | AtrSize | None = None
    raw_quantity = data.get("quantity")
    if kind in ("open", "scale_in"):
        if isinstance(raw_quantity, dict):
            q = _object(raw_quantity, "action.quantity", problems, ("atr_risk", "atr_stop_multiple"))
            risk = _decimal(q.get("atr_risk"), "action.quantity.atr_risk", problems, low=Decimal("0.01"))
            multiple = _decimal(
                q.get("atr_stop_multiple"), "action.quantity.atr_stop_multiple", problems, low=Decimal("0.01")
            )
            if risk is not None and multiple is not None:
                quantity = AtrSize(atr_risk=risk, atr_stop_multiple=multiple)
        else:
            quantity = _integer(raw_quantity, "action.quantity", problems, low=1, high=MAX_QUANTITY)
    levels: dict[str, Any] = {}
    for name in ("stop_loss", "take_profit"):
        ticks, atr = data.get(f"{name}_ticks"), data.get(f"{name}_atr")
        if ticks is not None and atr is not None:
            problems.add(f"action.{name}_atr", "conflict", f"give {name}_ticks or {name}_atr, not both.")
        if ticks is not None:
            levels[f"{name}_ticks"] = _integer(ticks, f"action.{name}_ticks", problems, low=1, high=100_000)
        if atr is not None:
            levels[f"{name}_atr"] = _decimal(atr, f"action.{name}_atr", problems, low=Decimal("0.01"))
    action = Action(kind=kind or "open", side=side, quantity=quantity, **levels)
    if action.needs_atr and conditions.market is None:
        # The ATR comes from the market condition's bars and period.
        problems.add("conditions.market", "required", "ATR sizing or ATR offsets need a market condition.")
    return action


@dataclass(frozen=True)
class RuleDefinition:
    conditions: Conditions
    action: Action

    @property
    def trigger(self) -> str:
        return "signal" if self.conditions.signal is not None else "schedule"


def parse_rule(conditions: Any, action: Any) -> RuleDefinition:
    """Validate a rule's JSON; raises InvalidRule with every problem found, each with its field."""
    problems = _Problems()
    parsed_conditions = _conditions(conditions if conditions is not None else {}, problems)
    parsed_action = _action(action, parsed_conditions, problems)
    if parsed_conditions.signal is None:
        # Scheduled rules act on whole accounts: there is no signal to name an instrument.
        for name, given in (("market", parsed_conditions.market), ("min_profit_r", parsed_conditions.min_profit_r)):
            if given is not None:
                problems.add(
                    f"conditions.{name}", "needs_signal", "needs a signal condition (it names the instrument)."
                )
        if parsed_action.kind in ("open", "scale_in"):
            problems.add("action.kind", "needs_signal", f"{parsed_action.kind} needs a signal condition.")
    if problems.items:
        raise InvalidRule(problems.items)
    return RuleDefinition(conditions=parsed_conditions, action=parsed_action)


# -- Evaluation -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    priority: int
    cooldown_seconds: int
    definition: RuleDefinition


@dataclass(frozen=True)
class SignalFacts:
    action: str
    root: str
    confidence: Decimal | None = None


@dataclass(frozen=True)
class Facts:
    """What one account's evaluation sees. `bars` are one-minute bars, oldest first."""

    now: datetime
    trigger: str  # "signal" or "schedule"
    signal: SignalFacts | None = None
    position_quantity: int = 0
    profit_r: Decimal | None = None  # the open position's profit in R, when its stop is known
    last_price: Decimal | None = None
    bars: Sequence[OHLC] = ()
    tick_size: Decimal | None = None
    point_value: Decimal | None = None  # money per 1.0 of price per contract
    last_fired: Mapping[int, datetime] = field(default_factory=dict)  # rule id -> last firing on this account


@dataclass(frozen=True)
class Order:
    """A fired action made concrete for one account."""

    kind: str
    side: str | None = None  # buy or sell (open, scale_in)
    quantity: int | None = None
    stop_loss_ticks: int | None = None
    take_profit_ticks: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Decision:
    rule_id: int
    outcome: str  # fired, held (cooldown), skipped (already fired in this window), no_match
    reason: str
    order: Order | None = None
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    decisions: list[Decision]

    @property
    def fired(self) -> Decision | None:
        return next((d for d in self.decisions if d.outcome == "fired"), None)


def _side_of(quantity: int) -> str:
    return "long" if quantity > 0 else "short" if quantity < 0 else "flat"


def _check_conditions(conditions: Conditions, facts: Facts, context: dict[str, Any]) -> str | None:
    """None when every condition holds, else the first reason one does not."""
    if conditions.signal is not None:
        wanted, got = conditions.signal, facts.signal
        if got is None:
            return "no signal"
        if wanted.action and got.action != wanted.action:
            return f"signal action is {got.action}, the rule wants {wanted.action}"
        if wanted.ticker_root and got.root != wanted.ticker_root:
            return f"signal is for {got.root}, the rule wants {wanted.ticker_root}"
        if wanted.min_confidence is not None and (got.confidence is None or got.confidence < wanted.min_confidence):
            return f"signal confidence {got.confidence} is below {wanted.min_confidence}"
    side = _side_of(facts.position_quantity)
    context["position"] = facts.position_quantity
    if conditions.position != "any" and side != conditions.position:
        return f"position is {side}, the rule wants {conditions.position}"
    if conditions.min_profit_r is not None:
        context["profit_r"] = str(facts.profit_r) if facts.profit_r is not None else None
        if facts.position_quantity == 0:
            return "no open position to measure profit in R on"
        if facts.profit_r is None:
            return "profit in R is unknown (no plan or stop on the position)"
        if facts.profit_r < conditions.min_profit_r:
            return f"profit is {facts.profit_r:.2f}R, the rule wants {conditions.min_profit_r}R"
    if conditions.time_window is not None:
        occurrence = conditions.time_window.occurrence(facts.now)
        context["window"] = occurrence
        if occurrence is None:
            tw = conditions.time_window
            return f"outside the window {tw.start:%H:%M}-{tw.end:%H:%M} {tw.tz} on days {list(tw.days)}"
    if conditions.market is not None:
        market = conditions.market
        band = atr_band(facts.bars[-market.bars :], period=market.atr_period, multiplier=market.band_multiplier)
        if band is None:
            return f"not enough bars for ATR({market.atr_period}): {len(facts.bars)}"
        if facts.last_price is None:
            return "no last price"
        where = band.position_of(facts.last_price)
        context["atr_band"] = {
            "lower": str(band.lower),
            "middle": str(band.middle),
            "upper": str(band.upper),
            "atr": str(band.atr),
            "price": str(facts.last_price),
            "where": where,
        }
        if where != market.price_vs_atr_band:
            return f"price {facts.last_price} is {where} the ATR band, the rule wants {market.price_vs_atr_band}"
    return None


def _ticks_for(distance: Decimal, tick_size: Decimal) -> int:
    return max(1, math.ceil(distance / tick_size))


def _concrete(rule: Rule, facts: Facts) -> Order | str:
    """The action as an order for this account, or why it cannot be made."""
    action = rule.definition.action
    if action.kind in ("close_all", "eod_close"):
        return Order(kind=action.kind)
    position_side = _side_of(facts.position_quantity)
    if action.kind == "scale_in":
        if position_side == "flat":
            return "no position to scale into"
        side = "buy" if position_side == "long" else "sell"
    elif action.side == "signal":
        if facts.signal is None or facts.signal.action not in ("buy", "sell"):
            return "the signal has no buy or sell side to follow"
        side = facts.signal.action
    else:
        side = action.side or "buy"
    atr = None
    if action.needs_atr:
        market = rule.definition.conditions.market
        assert market is not None  # parse_rule requires it
        atr = wilder_atr(facts.bars[-market.bars :], market.atr_period)
        if atr is None or atr <= 0 or facts.tick_size is None or facts.point_value is None:
            return "ATR is not known yet (not enough bars)"
    stop_ticks, target_ticks = action.stop_loss_ticks, action.take_profit_ticks
    assert facts.tick_size is not None or atr is None
    if action.stop_loss_atr is not None and atr is not None and facts.tick_size is not None:
        stop_ticks = _ticks_for(action.stop_loss_atr * atr, facts.tick_size)
    if action.take_profit_atr is not None and atr is not None and facts.tick_size is not None:
        target_ticks = _ticks_for(action.take_profit_atr * atr, facts.tick_size)
    if isinstance(action.quantity, AtrSize):
        assert atr is not None and facts.point_value is not None and facts.tick_size is not None
        stop_distance = action.quantity.atr_stop_multiple * atr
        quantity = int(action.quantity.atr_risk // (stop_distance * facts.point_value))
        if quantity < 1:
            return f"risking {action.quantity.atr_risk} over {stop_distance:.2f} points buys less than one contract"
        quantity = min(quantity, MAX_QUANTITY)
        if stop_ticks is None:
            stop_ticks = _ticks_for(stop_distance, facts.tick_size)
    else:
        assert action.quantity is not None
        quantity = action.quantity
    return Order(
        kind=action.kind, side=side, quantity=quantity, stop_loss_ticks=stop_ticks, take_profit_ticks=target_ticks
    )


def occurrence_key(rule: Rule, when: datetime) -> str:
    """The window occurrence a scheduled rule fires at most once in: its time window's, or the minute."""
    window = rule.definition.conditions.time_window
    if window is not None and (occurrence := window.occurrence(when)) is not None:
        return occurrence
    return when.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%MZ")


def evaluate(rules: Sequence[Rule], facts: Facts) -> Evaluation:
    """Rules of the fact's trigger in priority order; the first that fires wins, the rest are not reached."""
    decisions: list[Decision] = []
    for rule in sorted(rules, key=lambda r: (r.priority, r.id)):
        if rule.definition.trigger != facts.trigger:
            continue
        context: dict[str, Any] = {}
        reason = _check_conditions(rule.definition.conditions, facts, context)
        if reason is not None:
            decisions.append(Decision(rule.id, "no_match", reason, context=context))
            continue
        last = facts.last_fired.get(rule.id)
        if facts.trigger == "schedule" and last is not None:
            if occurrence_key(rule, last) == occurrence_key(rule, facts.now):
                decisions.append(Decision(rule.id, "skipped", "already fired in this window", context=context))
                continue
        if last is not None and rule.cooldown_seconds and facts.now < last + timedelta(seconds=rule.cooldown_seconds):
            until = last + timedelta(seconds=rule.cooldown_seconds)
            decisions.append(
                Decision(
                    rule.id,
                    "held",
                    f"conditions hold but the {rule.cooldown_seconds} s cooldown runs until {until:%H:%M:%S} UTC "
                    f"(fired at {last:%H:%M:%S})",
                    context=context,
                )
            )
            continue
        order = _concrete(rule, facts)
        if isinstance(order, str):
            decisions.append(Decision(rule.id, "no_match", order, context=context))
            continue
        decisions.append(Decision(rule.id, "fired", f"{rule.name}: all conditions hold", order=order, context=context))
        break
    return Evaluation(decisions=decisions)
