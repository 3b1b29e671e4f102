"""Automation rules at work: gather each account's facts, evaluate the rules (signals_in.rules, pure),
carry out what fired through the order path, and record every decision.

Two triggers: a signal of a strategy with enabled signal rules (`handle_signal`, called by the
fan-out before it fans out: when it returns True the rules handled the signal), and the 30 s
beat for rules without a signal condition (`run_scheduled_rules`: end-of-day close, windows).

Opens and scale-ins are market orders with their bracket, source AUTOMATION, with the
deterministic client id of (rule, signal, account): a redelivered signal can never place a second
order. Closes (close_all, eod_close) go through flatten_account with source FLATTEN, so the order
path counts them as closes already on their way and a second close can never reverse a position.
"""

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from accounts.models import TradingAccount
from brokers.bars import persist_finished_bars, recent_bars
from brokers.indicators import OHLC
from brokers.market_data import get_last_price
from brokers.models import Instrument
from config.errors import DomainError
from orders import groups
from orders import services as order_services
from orders.domain import BracketSpec, Level, OrderIntent, OrderRole, OrderSide, OrderSource, OrderType
from orders.models import Order, PlanStatus, Position, PositionPlan
from signals_in import rules as rule_logic
from signals_in.models import AutomationRule, RuleDecision, Signal, Subscription

logger = logging.getLogger(__name__)


# -- Rules and their scope ----------------------------------------------------------------------


def _parsed(rules: Iterable[AutomationRule], trigger: str) -> list[tuple[AutomationRule, rule_logic.Rule]]:
    """Enabled rules of a trigger as pure rules. A stored rule that no longer validates is skipped
    (and logged): the admin form refuses such rules, so this only guards hand-edited rows."""
    parsed = []
    for rule in rules:
        try:
            definition = rule_logic.parse_rule(rule.conditions, rule.action)
        except rule_logic.InvalidRule as exc:
            logger.warning("Automation rule %s (%s) is invalid and skipped: %s", rule.pk, rule.name, exc.detail)
            continue
        if definition.trigger == trigger:
            parsed.append((rule, rule_logic.Rule(rule.pk, rule.name, rule.priority, rule.cooldown_seconds, definition)))
    return parsed


def _accounts_in_scope(rules: list[AutomationRule]) -> dict[int, tuple[TradingAccount, set[int]]]:
    """account id -> (account, ids of the rules that apply to it): the strategy's enabled
    subscriptions' accounts for every rule of that strategy, plus each rule's listed accounts."""
    scope: dict[int, tuple[TradingAccount, set[int]]] = {}
    strategy_rules: dict[int, set[int]] = {}
    for rule in rules:
        if rule.strategy_id:
            strategy_rules.setdefault(rule.strategy_id, set()).add(rule.pk)
    for subscription in Subscription.objects.filter(strategy_id__in=strategy_rules, is_enabled=True).select_related(
        "account"
    ):
        entry = scope.setdefault(subscription.account_id, (subscription.account, set()))
        entry[1].update(strategy_rules[subscription.strategy_id])
    through = AutomationRule.accounts.through
    listed = through.objects.filter(automationrule_id__in=[r.pk for r in rules]).select_related("tradingaccount")
    for row in listed:
        entry = scope.setdefault(row.tradingaccount_id, (row.tradingaccount, set()))
        entry[1].add(row.automationrule_id)
    return dict(sorted(scope.items()))


def _last_fired(*, account_id: int, rule_ids: Iterable[int]) -> dict[int, datetime]:
    return dict(
        RuleDecision.objects.filter(account_id=account_id, rule_id__in=list(rule_ids), fired=True)
        .values("rule_id")
        .annotate(last=Max("created_at"))
        .values_list("rule_id", "last")
    )


# -- Facts ------------------------------------------------------------------------------------------


def profit_in_r(*, position: Position, last_price: Decimal | None) -> Decimal | None:
    """The open position's profit in R: R is entry to initial stop from its active plan, else
    from its working stop-loss leg against the average price. None when no stop is known."""
    if position.quantity == 0 or last_price is None:
        return None
    plan = PositionPlan.objects.filter(position=position, status=PlanStatus.ACTIVE).first()
    if plan is not None:
        entry, stop = plan.entry_price, plan.initial_stop_price
    else:
        stop_leg = groups.protective_leg(
            account_id=position.account_id, instrument_id=position.instrument_id, role=OrderRole.STOP_LOSS
        )
        if stop_leg is None or stop_leg.stop_price is None:
            return None
        entry, stop = position.avg_price, stop_leg.stop_price
    risk = abs(entry - stop)
    if risk == 0:
        return None
    direction = 1 if position.quantity > 0 else -1
    return ((last_price - entry) * direction / risk).quantize(Decimal("0.01"))


def _signal_facts(
    signal: Signal, account: TradingAccount, *, now: datetime, bars: list[OHLC], last_fired: dict[int, datetime]
) -> rule_logic.Facts:
    instrument = signal.instrument
    position = (
        Position.objects.filter(account=account, instrument=instrument).first() if instrument is not None else None
    )
    last_price = get_last_price(instrument.symbol) if instrument is not None else None
    return rule_logic.Facts(
        now=now,
        trigger="signal",
        signal=rule_logic.SignalFacts(
            action=signal.action,
            root=instrument.root if instrument is not None else signal.ticker.upper(),
            confidence=signal.confidence,
        ),
        position_quantity=position.quantity if position else 0,
        profit_r=profit_in_r(position=position, last_price=last_price) if position else None,
        last_price=last_price,
        bars=bars,
        tick_size=instrument.tick_size if instrument is not None else None,
        point_value=instrument.point_value if instrument is not None else None,
        last_fired=last_fired,
    )


def _context(facts: rule_logic.Facts, decisions: list[rule_logic.Decision]) -> dict[str, Any]:
    return {
        "now": facts.now.isoformat(),
        "signal": asdict(facts.signal) if facts.signal else None,
        "position": facts.position_quantity,
        "profit_r": facts.profit_r,
        "last_price": facts.last_price,
        "bars": len(facts.bars),
        "rules": [{"rule": d.rule_id, "outcome": d.outcome, "reason": d.reason, **d.context} for d in decisions],
    }


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


# -- Carrying actions out ------------------------------------------------------------------------


def _open(*, account: TradingAccount, instrument: Instrument, order: rule_logic.Order, client_order_id: str) -> Order:
    bracket = None
    if order.stop_loss_ticks or order.take_profit_ticks:
        bracket = BracketSpec(
            stop_loss=Level(ticks=order.stop_loss_ticks) if order.stop_loss_ticks else None,
            take_profit=Level(ticks=order.take_profit_ticks) if order.take_profit_ticks else None,
        )
    assert order.side is not None and order.quantity is not None
    intent = OrderIntent(
        symbol=instrument.symbol, side=OrderSide(order.side), quantity=order.quantity, order_type=OrderType.MARKET
    )
    return order_services.submit_order(
        account=account,
        intent=intent,
        source=OrderSource.AUTOMATION,
        client_order_id=client_order_id,
        bracket=bracket,
    ).order


def _close(*, account: TradingAccount, instrument_ids: set[int] | None) -> Order | None:
    result = order_services.flatten_account(account=account, source=OrderSource.FLATTEN, instrument_ids=instrument_ids)
    return result.closing[0] if result.closing else None


def _carry_out(
    *,
    account: TradingAccount,
    order: rule_logic.Order,
    instrument: Instrument | None,
    client_order_id: str,
) -> tuple[Order | None, str]:
    """Place what fired; returns the order (if any) and a sentence for the decision."""
    try:
        if order.kind in ("open", "scale_in"):
            if instrument is None:
                return None, "The signal names no instrument to trade."
            placed = _open(account=account, instrument=instrument, order=order, client_order_id=client_order_id)
            what = f"{order.side} {order.quantity} {instrument.symbol}"
            if placed.status == "denied":
                return placed, f"{what}: denied by risk ({placed.reason})"
            return placed, f"{what} placed"
        scope = {instrument.pk} if (order.kind == "close_all" and instrument is not None) else None
        placed = _close(account=account, instrument_ids=scope)
        return placed, "closing" if placed else "nothing open to close; working orders cancelled"
    except DomainError as exc:
        return None, f"the order was refused ({exc.code}): {exc.detail}"


# -- Signals ------------------------------------------------------------------------------------------


def signal_rules_for(signal: Signal) -> list[tuple[AutomationRule, rule_logic.Rule]]:
    rules = AutomationRule.objects.filter(strategy_id=signal.strategy_id, is_enabled=True).prefetch_related("accounts")
    return _parsed(rules, "signal")


def handle_signal(signal: Signal) -> bool:
    """Run the signal's strategy's rules on every account in scope; False when it has none (the
    fan-out then handles the signal as usual). Records one decision per account at least."""
    parsed = signal_rules_for(signal)
    if not parsed:
        return False
    now = timezone.now()
    instrument = signal.instrument
    bar_count = max(
        (r.definition.conditions.market.bars for _, r in parsed if r.definition.conditions.market is not None),
        default=0,
    )
    bars = recent_bars(instrument=instrument, count=bar_count, now=now) if bar_count and instrument else []
    by_id = {rule.pk: (rule, pure) for rule, pure in parsed}
    for account_id, (account, rule_ids) in _accounts_in_scope([rule for rule, _ in parsed]).items():
        if RuleDecision.objects.filter(signal=signal, account_id=account_id).exists():
            continue  # handled by an earlier delivery of this signal
        facts = _signal_facts(
            signal, account, now=now, bars=bars, last_fired=_last_fired(account_id=account_id, rule_ids=rule_ids)
        )
        evaluation = rule_logic.evaluate([by_id[i][1] for i in sorted(rule_ids)], facts)
        context = _json_ready(_context(facts, evaluation.decisions))
        _record(
            evaluation,
            account=account,
            rules={i: by_id[i][0] for i in rule_ids},
            trigger="signal",
            signal=signal,
            context=context,
            instrument=instrument,
            client_key=lambda rule_id, account_id=account_id: f"{rule_id}:{signal.pk}:{account_id}",
        )
    return True


def _record(
    evaluation: rule_logic.Evaluation,
    *,
    account: TradingAccount,
    rules: dict[int, AutomationRule],
    trigger: str,
    signal: Signal | None,
    context: dict[str, Any],
    instrument: Instrument | None,
    client_key: Callable[[int], str],
) -> list[RuleDecision]:
    recorded = []
    for decision in evaluation.decisions:
        if decision.outcome == "held":
            recorded.append(
                RuleDecision.objects.create(
                    rule=rules[decision.rule_id],
                    account=account,
                    signal=signal,
                    trigger=trigger,
                    fired=False,
                    action=rules[decision.rule_id].action,
                    reason=decision.reason[:500],
                    context=context,
                )
            )
        elif decision.outcome == "fired":
            assert decision.order is not None
            order, outcome = _carry_out(
                account=account,
                order=decision.order,
                instrument=instrument,
                client_order_id=order_services.client_order_id_for(scope="rule", key=client_key(decision.rule_id)),
            )
            recorded.append(
                RuleDecision.objects.create(
                    rule=rules[decision.rule_id],
                    account=account,
                    signal=signal,
                    trigger=trigger,
                    fired=True,
                    action=decision.order.as_dict(),
                    reason=f"{decision.reason}: {outcome}"[:500],
                    context=context,
                    order=order,
                )
            )
    if not recorded and trigger == "signal":
        reasons = "; ".join(f"{rules[d.rule_id].name}: {d.reason}" for d in evaluation.decisions)
        recorded.append(
            RuleDecision.objects.create(
                rule=None,
                account=account,
                signal=signal,
                trigger=trigger,
                fired=False,
                reason=f"No rule fired. {reasons}"[:500],
                context=context,
            )
        )
    return recorded


# -- The schedule --------------------------------------------------------------------------------


def run_scheduled_rules(*, now: datetime | None = None) -> list[RuleDecision]:
    """Evaluate rules without a signal condition on every account in their scope. Each rule runs
    under its row lock (skip_locked: a second beat skips it), and fires at most once per window
    occurrence and account (signals_in.rules.occurrence_key), so the 30 s beat never fires twice."""
    now = now or timezone.now()
    persist_finished_bars(now=now)  # bars for the next signal rules, kept current by this beat
    recorded: list[RuleDecision] = []
    for rule, pure in _parsed(AutomationRule.objects.filter(is_enabled=True), "schedule"):
        with transaction.atomic():
            locked = AutomationRule.objects.select_for_update(skip_locked=True).filter(pk=rule.pk).first()
            if locked is None:
                continue
            occurrence = rule_logic.occurrence_key(pure, now)
            for account_id, (account, _) in _accounts_in_scope([locked]).items():
                positions = Position.objects.open().filter(account_id=account_id).values_list("quantity", flat=True)
                facts = rule_logic.Facts(
                    now=now,
                    trigger="schedule",
                    position_quantity=sum(positions),
                    last_fired=_last_fired(account_id=account_id, rule_ids=[rule.pk]),
                )
                evaluation = rule_logic.evaluate([pure], facts)
                if evaluation.fired is None and not any(d.outcome == "held" for d in evaluation.decisions):
                    continue
                with transaction.atomic():  # one account's failure leaves the others' decisions
                    recorded += _record(
                        evaluation,
                        account=account,
                        rules={rule.pk: locked},
                        trigger="schedule",
                        signal=None,
                        context=_json_ready(_context(facts, evaluation.decisions)),
                        instrument=None,
                        client_key=lambda rule_id, account_id=account_id, occurrence=occurrence: (
                            f"{rule_id}:{occurrence}:{account_id}"
                        ),
                    )
    return recorded
