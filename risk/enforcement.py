"""Live monitoring and enforcement: re-checking accounts on price moves and on a sweep,
acting on breaches exactly once, the trade-date rollover, and the flat-by and news-blackout
liquidations.

Every liquidation goes through the normal order path (orders.services) with source RISK.
Exactly once: a breach is acted on under the account's row lock after assessing the account
again, and the Violation row (unique per account, rule and trade date) is the record that it
was; a second monitor that saw the same breach finds the row and does nothing.
"""

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models.functions import Greatest
from django.utils import timezone

from accounts.domain import AccountStatus, Phase, TradingState
from accounts.models import TradingAccount
from accounts.realtime import on_commit, publish_account_event
from orders import services as order_services
from orders.domain import OrderSource
from orders.models import Position
from orders.realtime import publish_account_updated, publish_marks
from orders.selectors import accounts_exposed_to, accounts_with_positions, day_totals_since, open_positions_of
from risk.domain import (
    DailyLossMode,
    DayResult,
    DrawdownKind,
    EffectiveRules,
    EvaluationStatus,
    Headroom,
    RiskRule,
    Severity,
    ViolationAction,
    evaluation_progress,
    scaled_max_contracts,
)
from risk.domain import drawdown_floor as floor_for
from risk.hours import active_blackout, flat_by_deadline, past_flat_by
from risk.models import AccountDay, AccountRiskState, Violation
from risk.selectors import (
    RiskAssessment,
    accounts_for_assessment,
    assess_accounts,
    early_closes,
    effective_rules_for,
    monitored_accounts,
    releases_near,
    risk_states_for,
)
from risk.serializers import ViolationSerializer
from risk.trading_day import trade_date_closes_at, trade_date_for

logger = logging.getLogger(__name__)


def publish_risk_event(account_id: int, event_type: str, data: dict[str, object]) -> None:
    on_commit(lambda: publish_account_event(account_id, event_type, data))


# -- Monitoring -------------------------------------------------------------------------------


@dataclass
class MonitorResult:
    assessments: list[RiskAssessment] = field(default_factory=list)
    breached: list[int] = field(default_factory=list)  # account ids acted on
    violations: list[Violation] = field(default_factory=list)

    @property
    def assessed(self) -> int:
        return len(self.assessments)


def _persist_high_marks(assessments: list[RiskAssessment]) -> None:
    """Raise the stored peak equity and intraday floors; GREATEST keeps them from ever moving
    down when two monitors write at once."""
    changed = []
    for a in assessments:
        state = a.state
        floor_rose = a.floor is not None and (state.drawdown_floor is None or a.floor > state.drawdown_floor)
        if a.peak_equity > state.peak_equity or floor_rose:
            state.peak_equity = Greatest("peak_equity", a.peak_equity)  # type: ignore[assignment]
            if floor_rose:
                state.drawdown_floor = a.floor if state.drawdown_floor is None else Greatest("drawdown_floor", a.floor)  # type: ignore[assignment]
            changed.append(state)
    if changed:
        AccountRiskState.objects.bulk_update(changed, ["peak_equity", "drawdown_floor"], batch_size=500)


def monitor_accounts(account_ids: list[int] | None = None, *, for_display: bool = False) -> MonitorResult:
    """Assess accounts (all active ones, or those given), keep high marks current and enforce
    every breach found. The beat sweep and price moves both come here."""
    accounts = monitored_accounts(account_ids, for_display=for_display)
    assessments = assess_accounts(accounts)
    _persist_high_marks(assessments)
    result = MonitorResult(assessments=assessments)
    breached = [a.account.pk for a in assessments if a.breaches]
    if breached:
        found = enforce_all_breaches(account_ids=breached)
        for account_id in breached:
            if found.get(account_id):
                result.breached.append(account_id)
                result.violations.extend(found[account_id])
    return result


def mark_and_monitor(*, symbol: str) -> MonitorResult:
    """After a price move: check the accounts holding `symbol` (enforcing first: a breach must
    not wait for live updates), then publish their marks from the same assessments."""
    account_ids = accounts_exposed_to(symbol)
    result = monitor_accounts(account_ids, for_display=True)
    breached = set(result.breached)
    for assessment in result.assessments:
        if assessment.account.pk not in breached:  # breached accounts publish from their fills
            publish_marks(assessment, symbol=symbol)
    return result


# -- Enforcement ------------------------------------------------------------------------------


def _is_hard(assessment: RiskAssessment, breach: Headroom) -> bool:
    return breach.rule == RiskRule.DRAWDOWN or assessment.rules.daily_loss_mode == DailyLossMode.HARD


def _breach_sentence(breach: Headroom, hard: bool) -> str:
    if breach.rule == RiskRule.DRAWDOWN:
        return f"Equity {breach.observed:.2f} reached the drawdown floor {breach.limit:.2f}: the account is failed."
    what = "the account is failed" if hard else "positions closed, new risk blocked until the next trade date"
    return f"Day P&L {breach.observed:.2f} reached the daily loss limit {breach.limit:.2f}: {what}."


def _record_violation(
    account: TradingAccount,
    *,
    rule: str,
    severity: str,
    action: str,
    detail: str,
    trade_date: date,
    threshold: Decimal | None = None,
    observed: Decimal | None = None,
) -> Violation | None:
    """Insert the violation unless this rule already fired today (None then)."""
    try:
        with transaction.atomic():
            return Violation.objects.create(
                account=account,
                rule=rule,
                severity=severity,
                action=action,
                detail=detail[:500],
                trade_date=trade_date,
                threshold=threshold,
                observed=observed,
                occurred_at=timezone.now(),
            )
    except IntegrityError:
        return None


def enforce_breaches(*, account_id: int) -> list[Violation]:
    """Act on every limit the account is through, once: record, flatten, block or fail."""
    return _enforce_together([account_id]).get(account_id, [])


def enforce_all_breaches(*, account_ids: list[int]) -> dict[int, list[Violation]]:
    """enforce_breaches for many accounts at once (one price move can breach hundreds): one
    transaction, a fixed number of queries for any number of accounts, and every close order
    handed to the senders at the same commit. Returns the violations recorded, by account.

    Should an account's broker connection refuse orders, the accounts are enforced one by one,
    so the others are still flattened, and the first refusal is raised after.
    """
    try:
        return _enforce_together(account_ids)
    except order_services.BrokerNotReady:
        if len(account_ids) == 1:
            raise
    found: dict[int, list[Violation]] = {}
    refused: order_services.BrokerNotReady | None = None
    for account_id in account_ids:
        try:
            found.update(_enforce_together([account_id]))
        except order_services.BrokerNotReady as exc:
            logger.error("Risk enforcement on account %s failed: %s", account_id, exc)
            refused = refused or exc
    if refused is not None:
        raise refused
    return found


def _violations_on_record(assessments: list[RiskAssessment]) -> set[tuple[int, str, date]]:
    """(account, rule, trade date) of the violations already recorded for these accounts."""
    return set(
        Violation.objects.filter(
            account_id__in=[a.account.pk for a in assessments],
            trade_date__in={a.valuation.trade_date for a in assessments},
        ).values_list("account_id", "rule", "trade_date")
    )


def _new_violations(assessment: RiskAssessment, on_record: set[tuple[int, str, date]]) -> list[Violation]:
    account, today, now = assessment.account, assessment.valuation.trade_date, timezone.now()
    found = []
    for breach in assessment.breaches:
        if (account.pk, breach.rule, today) in on_record:
            continue  # acted on already (this trade date): exactly once
        hard = _is_hard(assessment, breach)
        found.append(
            Violation(
                account=account,
                rule=breach.rule,
                severity=Severity.HARD if hard else Severity.SOFT,
                action=ViolationAction.BREACHED if hard else ViolationAction.BLOCKED,
                detail=_breach_sentence(breach, hard)[:500],
                trade_date=today,
                threshold=breach.limit,
                observed=breach.observed,
                occurred_at=now,
            )
        )
    return found


def _publish_violation_on_commit(violation: Violation, headroom: list[dict[str, object]]) -> None:
    # Serialized after the commit: the close orders' sends, enqueued at the same commit, go first.
    on_commit(
        lambda: publish_account_event(
            violation.account_id, "risk.violation", {**ViolationSerializer(violation).data, "headroom": headroom}
        )
    )


def _fail_accounts(accounts: list[TradingAccount], *, now: datetime) -> None:
    """BREACHED and HALTED, with the history rows account.save() would write (who changed an
    account's state matters). One UPDATE per distinct reason: a CASE per row costs more."""
    by_reason: dict[str, list[int]] = {}
    for account in accounts:
        by_reason.setdefault(account.trading_state_reason, []).append(account.pk)
    for reason, ids in by_reason.items():
        TradingAccount.objects.filter(pk__in=ids).update(
            status=AccountStatus.BREACHED,
            trading_state=TradingState.HALTED,
            trading_state_reason=reason,
            updated_at=now,
        )
    TradingAccount.history.bulk_history_create(accounts, update=True)


def _enforce_together(account_ids: list[int]) -> dict[int, list[Violation]]:
    """Exactly once: the accounts are locked (in id order, so two monitors cannot deadlock) and
    assessed again under the locks; a violation already on record for the rule and trade date
    means another monitor acted, so nothing is done for it. The unique Violation row stays the
    backstop. Liquidation goes through orders.services with source RISK."""
    with transaction.atomic():
        accounts = list(
            accounts_for_assessment()
            .select_for_update(of=("self",))
            .filter(pk__in=account_ids, status=AccountStatus.ACTIVE)
            .order_by("pk")
        )
        assessments = [a for a in assess_accounts(accounts) if a.breaches]  # the truth now
        if not assessments:
            return {}
        on_record = _violations_on_record(assessments)
        acting = [(a, found) for a in assessments if (found := _new_violations(a, on_record))]
        if not acting:
            return {}
        Violation.objects.bulk_create([v for _, found in acting for v in found])
        order_services.flatten_accounts(accounts=[a.account for a, _ in acting], source=OrderSource.RISK)

        now = timezone.now()
        failed: list[TradingAccount] = []
        blocked: list[AccountRiskState] = []
        for assessment, found in acting:
            account = assessment.account
            hard = [v for v in found if v.severity == Severity.HARD]
            if hard:
                account.status = AccountStatus.BREACHED
                account.trading_state = TradingState.HALTED
                account.trading_state_reason = hard[0].detail[:300]
                account.updated_at = now
                failed.append(account)
            else:
                state = assessment.state
                state.blocked_until = trade_date_closes_at(assessment.valuation.trade_date)
                state.blocked_reason = found[0].detail[:300]
                state.updated_at = now
                blocked.append(state)
            headroom = assessment.headroom_dicts()
            for violation in found:
                _publish_violation_on_commit(violation, headroom)
            # No account.updated here: the closing fills publish the account (status included).
            logger.warning("Risk enforcement on %s: %s", account, "; ".join(v.detail for v in found))
        if failed:
            _fail_accounts(failed, now=now)
        if blocked:
            AccountRiskState.objects.bulk_update(blocked, ["blocked_until", "blocked_reason", "updated_at"])
        return {a.account.pk: found for a, found in acting}


# -- Trade-date rollover ------------------------------------------------------------------------


def _business_days(first: date, before: date) -> list[date]:
    days, day = [], first
    while day < before:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def roll_account(*, account_id: int, now: datetime | None = None) -> bool:
    """Close the account's trade date(s) up to now; False when it is already current.

    Catch-up is exact: the balance at each missed close is today's balance less what fills of
    later trade dates added.
    """
    now = now or timezone.now()
    current = trade_date_for(now)
    with transaction.atomic():
        account = accounts_for_assessment().select_for_update(of=("self",)).get(pk=account_id)
        rules = effective_rules_for([account])[account.pk]
        state = risk_states_for([account], {account.pk: rules}, now=now)[account.pk]
        if state.trade_date >= current:
            return False
        by_date = day_totals_since(account_id=account.pk, first=state.trade_date)
        closing_balance = None
        for day in _business_days(state.trade_date, current):
            totals = by_date.get(day)
            if day != state.trade_date and totals is None:
                continue
            later_net = sum((t.realized_pnl - t.fees for d, t in by_date.items() if d > day), Decimal(0))
            closing_balance = account.balance - later_net
            AccountDay.objects.get_or_create(
                account=account,
                trade_date=day,
                defaults={
                    "closing_balance": closing_balance,
                    "realized_pnl": totals.realized_pnl if totals else Decimal(0),
                    "fees": totals.fees if totals else Decimal(0),
                    "fills": totals.fills if totals else 0,
                },
            )
            state.eod_high_balance = max(state.eod_high_balance, closing_balance)
        if rules.drawdown_kind == DrawdownKind.EOD_TRAILING:
            state.drawdown_floor = floor_for(
                rules,
                starting_balance=account.starting_balance,
                high_mark=state.eod_high_balance,
                previous_floor=state.drawdown_floor,
            )
        if closing_balance is not None:
            state.scaled_max_contracts = scaled_max_contracts(
                rules, eod_balance=closing_balance, starting_balance=account.starting_balance
            )
        if state.blocked_until is not None and state.blocked_until <= now:
            state.blocked_until, state.blocked_reason = None, ""
        Violation.objects.filter(
            account=account, severity=Severity.SOFT, is_active=True, trade_date__lt=current
        ).update(is_active=False)
        state.trade_date = current
        state.save()
        _pass_if_evaluation_complete(account, rules)
        on_commit(lambda: publish_account_updated(account.pk))
        return True


def _pass_if_evaluation_complete(account: TradingAccount, rules: EffectiveRules) -> None:
    """At a trade date's close, an evaluation account that met its target, minimum days and
    consistency passes (lock held by the caller). Closed days only: passing is an end-of-day fact."""
    if account.program.phase != Phase.EVALUATION or account.status != AccountStatus.ACTIVE:
        return
    days = [DayResult(d.trade_date, d.net_pnl, d.fills) for d in AccountDay.objects.filter(account=account)]
    progress = evaluation_progress(rules, starting_balance=account.starting_balance, balance=account.balance, days=days)
    if progress.status == EvaluationStatus.PASSED:
        account.status = AccountStatus.PASSED
        account.save(update_fields=["status", "updated_at"])
        logger.info(
            "%s passed its evaluation: profit %s over %s trading days",
            account,
            progress.total_profit,
            progress.trading_days,
        )


def roll_trade_date(*, now: datetime | None = None) -> int:
    """The beat task at (and after) 17:00 Chicago: roll every open account that is behind.
    Running it twice changes nothing; running it late catches up."""
    now = now or timezone.now()
    current = trade_date_for(now)
    behind = (
        AccountRiskState.objects.filter(trade_date__lt=current)
        .exclude(account__status=AccountStatus.CLOSED)
        .values_list("account_id", flat=True)
    )
    return sum(roll_account(account_id=account_id, now=now) for account_id in list(behind))


# -- Flat-by and news blackouts --------------------------------------------------------------


@dataclass
class HoursResult:
    warned: list[int] = field(default_factory=list)
    liquidated: list[int] = field(default_factory=list)


def enforce_trading_hours(*, now: datetime | None = None) -> HoursResult:
    """Flatten what is held past the flat-by time (or an early close) or into a news blackout,
    and warn the configured minutes before the flat-by time. Runs every few seconds on beat."""
    now = now or timezone.now()
    today = trade_date_for(now)
    result = HoursResult()
    holders = list(
        accounts_for_assessment().filter(status=AccountStatus.ACTIVE, pk__in=accounts_with_positions()).order_by("pk")
    )
    if not holders:
        return result
    rules = effective_rules_for(holders)
    states = risk_states_for(holders, rules, now=now)
    closes = early_closes()
    releases = releases_near(now)
    positions_by_account = open_positions_of(a.pk for a in holders)
    for account in holders:
        r = rules[account.pk]
        held = positions_by_account.get(account.pk, [])
        late, blacked_out, warn_at = [], [], None
        for position in held:
            root = position.instrument.root
            if past_flat_by(now, root=root, flat_by=r.flat_by, tz_name=r.time_zone, early_closes=closes):
                late.append(position)
            elif active_blackout(
                now,
                root=root,
                releases=releases,
                minutes_before=r.news_blackout_minutes_before,
                minutes_after=r.news_blackout_minutes_after,
            ):
                blacked_out.append(position)
            deadline = flat_by_deadline(
                trade_date=today, root=root, flat_by=r.flat_by, tz_name=r.time_zone, early_closes=closes
            )
            if deadline and (warn_at is None or deadline[0] < warn_at[0]):
                warn_at = deadline
        if late or blacked_out:
            _liquidate_for_hours(account, late=late, blacked_out=blacked_out, today=today)
            result.liquidated.append(account.pk)
        elif warn_at and states[account.pk].flat_by_warned_on != today:
            at, why = warn_at
            if at - timedelta(minutes=r.flat_by_warning_minutes) <= now < at:
                _warn_flat_by(account, at=at, why=why, today=today)
                result.warned.append(account.pk)
    return result


def _liquidate_for_hours(
    account: TradingAccount, *, late: list[Position], blacked_out: list[Position], today: date
) -> None:
    with transaction.atomic():
        TradingAccount.objects.select_for_update(of=("self",)).get(pk=account.pk)
        for rule, positions in ((RiskRule.FLAT_BY, late), (RiskRule.NEWS_BLACKOUT, blacked_out)):
            if not positions:
                continue
            roots = ", ".join(sorted({p.instrument.root for p in positions}))
            why = "past the flat-by time" if rule == RiskRule.FLAT_BY else "a news blackout began"
            violation = _record_violation(
                account,
                rule=rule,
                severity=Severity.ENFORCED,
                action=ViolationAction.FLATTENED,
                detail=f"{roots} held {why}: closed by the risk desk.",
                trade_date=today,
            )
            order_services.flatten_account(
                account=account, source=OrderSource.RISK, instrument_ids={p.instrument_id for p in positions}
            )
            if violation is not None:
                publish_risk_event(account.pk, "risk.violation", ViolationSerializer(violation).data)


def _warn_flat_by(account: TradingAccount, *, at: datetime, why: str, today: date) -> None:
    with transaction.atomic():
        updated = (
            AccountRiskState.objects.filter(account=account)
            .exclude(flat_by_warned_on=today)
            .update(flat_by_warned_on=today)
        )
        if updated:
            publish_risk_event(
                account.pk,
                "risk.warning",
                {
                    "rule": RiskRule.FLAT_BY,
                    "at": at.isoformat(),
                    "detail": f"Be flat by {why}; open positions will be closed at {at:%H:%M %Z}.",
                },
            )
