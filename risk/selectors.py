"""Reads for the risk engine: each account's effective rules, risk state, valuation and the
headroom left under every rule, loaded for many accounts with a fixed number of queries."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import QuerySet
from django.utils import timezone

from accounts.domain import AccountStatus
from accounts.models import TradingAccount
from accounts.selectors import User, accounts_visible_to
from brokers.models import Instrument, SizeClass
from orders.selectors import AccountValuation, closing_trade_counts, fill_count, value_accounts
from risk.domain import LAYERED_FIELDS as RULE_FIELDS
from risk.domain import (
    ContractInfo,
    ContractRule,
    DayResult,
    DrawdownKind,
    EffectiveRules,
    EvaluationProgress,
    Headroom,
    contract_weight,
    contracts_headroom,
    daily_loss_headroom,
    drawdown_floor,
    drawdown_headroom,
    evaluation_progress,
    max_contracts_in_force,
    merge_rules,
)
from risk.hours import EarlyClose, Release, Window
from risk.models import (
    AccountDay,
    AccountRiskState,
    AccountRuleOverride,
    ContractLimit,
    MarketClose,
    NewsRelease,
    ProgramRules,
    ScalingTier,
    TradingWindow,
    Violation,
)
from risk.trading_day import trade_date_for

# News releases further than this from now cannot black out an order placed now.
RELEASE_LOOKAROUND = timedelta(hours=6)


def contract_info(instrument: Instrument) -> ContractInfo:
    return ContractInfo(
        symbol=instrument.symbol,
        root=instrument.root,
        is_micro=instrument.size_class == SizeClass.MICRO,
        tick_size=instrument.tick_size,
        tick_value=instrument.tick_value,
    )


def _layer(row: object | None) -> dict[str, object]:
    return {name: getattr(row, name) for name in RULE_FIELDS} if row is not None else {}


def effective_rules_for(accounts: Sequence[TradingAccount]) -> dict[int, EffectiveRules]:
    """Each account's program rules with its overrides on top (four queries for any number)."""
    program_ids = {a.program_id for a in accounts}
    programs = {r.program_id: r for r in ProgramRules.objects.filter(program_id__in=program_ids)}
    overrides = {o.account_id: o for o in AccountRuleOverride.objects.filter(account_id__in=[a.pk for a in accounts])}
    limits: dict[int, dict[str, ContractRule]] = defaultdict(dict)
    for limit in ContractLimit.objects.filter(program_id__in=program_ids):
        limits[limit.program_id][limit.root.upper()] = ContractRule(limit.max_contracts, limit.weight)
    tiers: dict[int, list[tuple[Decimal, int]]] = defaultdict(list)
    for tier in ScalingTier.objects.filter(program_id__in=program_ids):
        tiers[tier.program_id].append((tier.threshold, tier.max_contracts))
    by_program: dict[int, EffectiveRules] = {}
    result = {}
    for account in accounts:
        pid = account.program_id
        if account.pk in overrides:
            result[account.pk] = merge_rules(
                _layer(programs.get(pid)),
                _layer(overrides[account.pk]),
                contract_rules=limits[pid],
                scaling_tiers=tiers[pid],
            )
            continue
        if pid not in by_program:
            by_program[pid] = merge_rules(
                _layer(programs.get(pid)), contract_rules=limits[pid], scaling_tiers=tiers[pid]
            )
        result[account.pk] = by_program[pid]
    return result


def windows_for(program_ids: Iterable[int]) -> dict[int, tuple[Window, ...]]:
    windows: dict[int, list[Window]] = defaultdict(list)
    for w in TradingWindow.objects.filter(program_id__in=set(program_ids)):
        windows[w.program_id].append(Window(w.weekday, w.starts_at, w.ends_at))
    return {pid: tuple(ws) for pid, ws in windows.items()}


def early_closes() -> tuple[EarlyClose, ...]:
    return tuple(
        EarlyClose(c.on_date, frozenset(r.upper() for r in c.roots), c.closes_at, c.reason)
        for c in MarketClose.objects.all()
    )


def releases_near(moment: datetime) -> tuple[Release, ...]:
    rows = NewsRelease.objects.filter(at__gte=moment - RELEASE_LOOKAROUND, at__lte=moment + RELEASE_LOOKAROUND)
    return tuple(Release(r.title, r.at, frozenset(x.upper() for x in r.roots)) for r in rows)


def initial_risk_state(account: TradingAccount, rules: EffectiveRules, *, now: datetime) -> AccountRiskState:
    start = account.starting_balance
    return AccountRiskState(
        account=account,
        trade_date=trade_date_for(now),
        eod_high_balance=max(start, account.balance),
        peak_equity=max(start, account.balance),
        drawdown_floor=drawdown_floor(rules, starting_balance=start, high_mark=max(start, account.balance)),
    )


def risk_states_for(
    accounts: Sequence[TradingAccount], rules: dict[int, EffectiveRules], *, now: datetime
) -> dict[int, AccountRiskState]:
    """Each account's risk state, created on first use."""
    states = {s.account_id: s for s in AccountRiskState.objects.filter(account_id__in=[a.pk for a in accounts])}
    missing = [initial_risk_state(a, rules[a.pk], now=now) for a in accounts if a.pk not in states]
    if missing:
        AccountRiskState.objects.bulk_create(missing, ignore_conflicts=True)
        states.update(
            (s.account_id, s) for s in AccountRiskState.objects.filter(account_id__in=[m.account_id for m in missing])
        )
    return states


@dataclass(frozen=True)
class RiskAssessment:
    """One account at one moment: its rules, state, valuation and the room left under each rule."""

    account: TradingAccount
    rules: EffectiveRules
    state: AccountRiskState
    valuation: AccountValuation
    peak_equity: Decimal  # the state's peak, raised by the equity seen now
    floor: Decimal | None  # the drawdown floor in force now (intraday trailing: from peak_equity)
    contracts_in_use: Decimal
    max_contracts: int | None
    headroom: tuple[Headroom, ...]

    @property
    def breaches(self) -> list[Headroom]:
        """Limits whose breach the monitor enforces (the contract maximum is pre-trade only)."""
        return [h for h in self.headroom if h.breached and h.rule in ("daily_loss", "drawdown")]

    def headroom_for(self, rule: str) -> Headroom | None:
        return next((h for h in self.headroom if h.rule == rule), None)

    def headroom_dicts(self) -> list[dict[str, object]]:
        return [h.as_dict() for h in self.headroom]


def assess(
    account: TradingAccount,
    *,
    rules: EffectiveRules,
    state: AccountRiskState,
    valuation: AccountValuation,
    contracts: dict[str, ContractInfo],
) -> RiskAssessment:
    equity = valuation.equity
    peak = max(state.peak_equity, equity)
    if rules.drawdown_kind == DrawdownKind.INTRADAY_TRAILING:
        floor = drawdown_floor(
            rules, starting_balance=account.starting_balance, high_mark=peak, previous_floor=state.drawdown_floor
        )
    else:
        floor = drawdown_floor(
            rules,
            starting_balance=account.starting_balance,
            high_mark=state.eod_high_balance,
            previous_floor=state.drawdown_floor,
        )
    in_use = sum(
        (
            contract_weight(rules, contracts[m.position.instrument.symbol]) * abs(m.position.quantity)
            for m in valuation.positions
        ),
        Decimal(0),
    )
    max_contracts = max_contracts_in_force(rules, state.scaled_max_contracts)
    headroom = tuple(
        h
        for h in (
            daily_loss_headroom(rules, day_pnl=valuation.day_pnl),
            drawdown_headroom(rules, equity=equity, floor=floor),
            contracts_headroom(max_contracts=max_contracts, in_use=in_use),
        )
        if h is not None
    )
    return RiskAssessment(account, rules, state, valuation, peak, floor, in_use, max_contracts, headroom)


def assess_accounts(accounts: Sequence[TradingAccount], *, now: datetime | None = None) -> list[RiskAssessment]:
    """Assessments in the order given; about ten queries and one Redis read for any number."""
    if not accounts:
        return []
    now = now or timezone.now()
    rules = effective_rules_for(accounts)
    states = risk_states_for(accounts, rules, now=now)
    valuations = value_accounts(accounts)
    contracts = {
        m.position.instrument.symbol: contract_info(m.position.instrument) for v in valuations for m in v.positions
    }
    return [
        assess(a, rules=rules[a.pk], state=states[a.pk], valuation=v, contracts=contracts)
        for a, v in zip(accounts, valuations, strict=True)
    ]


def assess_account(account: TradingAccount) -> RiskAssessment:
    return assess_accounts([account])[0]


def accounts_for_assessment() -> QuerySet[TradingAccount]:
    return TradingAccount.objects.select_related("program__firm", "broker_connection").defer(
        "broker_connection__credentials"
    )


def monitored_accounts(account_ids: Iterable[int] | None = None, *, for_display: bool = False) -> list[TradingAccount]:
    """Active accounts the monitor watches (all, or those given). Without `for_display` only
    the columns the assessment reads are loaded: the sweep builds thousands of these."""
    if for_display:
        accounts = accounts_for_assessment().filter(status=AccountStatus.ACTIVE)
    else:
        accounts = TradingAccount.objects.filter(status=AccountStatus.ACTIVE).only(
            "id", "name", "program_id", "starting_balance", "balance", "status", "trading_state"
        )
    if account_ids is not None:
        accounts = accounts.filter(pk__in=list(account_ids))
    return list(accounts.order_by("pk"))


# -- Evaluation ---------------------------------------------------------------------------------


def day_results(account: TradingAccount, *, today_net: Decimal, today_fills: int, today: date) -> list[DayResult]:
    days = [DayResult(d.trade_date, d.net_pnl, d.fills) for d in AccountDay.objects.filter(account=account)]
    if not any(d.trade_date == today for d in days):
        days.append(DayResult(today, today_net, today_fills))
    return days


def evaluation_for(assessment: RiskAssessment) -> EvaluationProgress:
    """Evaluation progress, counting the current trade date as it stands (open P&L left out:
    a day's result is what was realized)."""
    valuation = assessment.valuation
    today = valuation.trade_date
    today_fills = fill_count(account_id=assessment.account.pk, trade_date=today)
    days = day_results(
        assessment.account,
        today_net=valuation.day_realized_pnl - valuation.day_fees,
        today_fills=today_fills,
        today=today,
    )
    return evaluation_progress(
        assessment.rules,
        starting_balance=assessment.account.starting_balance,
        balance=assessment.account.balance,
        days=days,
    )


@dataclass(frozen=True)
class AccountMetrics:
    balance: Decimal
    day_pnl: Decimal
    total_trades: int  # fills that closed (some of) a position
    win_rate: Decimal | None  # % of those with positive realized P&L
    active_violations: int
    loss_buffer: Decimal | None  # room under the daily loss limit
    drawdown_buffer: Decimal | None  # room above the drawdown floor


def metrics_for(assessment: RiskAssessment) -> AccountMetrics:
    account = assessment.account
    trades, wins = closing_trade_counts(account.pk)
    daily = assessment.headroom_for("daily_loss")
    drawdown = assessment.headroom_for("drawdown")
    return AccountMetrics(
        balance=account.balance,
        day_pnl=assessment.valuation.day_pnl,
        total_trades=trades,
        win_rate=(Decimal(wins) * 100 / trades).quantize(Decimal("0.01")) if trades else None,
        active_violations=Violation.objects.filter(account=account, is_active=True).count(),
        loss_buffer=daily.room if daily else None,
        drawdown_buffer=drawdown.room if drawdown else None,
    )


def violations_visible_to(user: User) -> QuerySet[Violation]:
    return Violation.objects.filter(account__in=accounts_visible_to(user).values("pk")).select_related("account")
