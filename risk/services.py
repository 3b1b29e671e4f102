"""Pre-trade checks against an account snapshot, trading-state changes, and reacting to prices."""

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.domain import AccountStatus, TradingState
from accounts.models import TradingAccount
from brokers.market_data import get_last_prices, record_last_price
from brokers.models import Instrument
from config.redis_client import get_redis, key
from orders import plan_service
from orders.domain import OrderIntent, OrderSide
from orders.models import Order
from orders.realtime import publish_account_on_commit
from orders.selectors import ReconciliationRecord, accounts_exposed_to, open_orders_of, reconciliation_records
from risk import tasks
from risk.domain import RiskRule
from risk.hours import EarlyClose, Release, Window
from risk.rules import AccountSnapshot, Denial, ReconciliationStatus, evaluate_pre_trade
from risk.selectors import (
    RiskAssessment,
    assess_accounts,
    contract_info,
    early_closes,
    releases_near,
    windows_for,
)

# Positions are re-marked at most this often per instrument while prices stream in.
MARK_INTERVAL_SECONDS = 0.25


def build_snapshots(
    pairs: Sequence[tuple[TradingAccount, Instrument]], *, now: datetime | None = None
) -> list[AccountSnapshot]:
    """Everything the pre-trade rules look at, for each (account, instrument the order trades),
    read under the caller's account locks: the same dozen queries for one account or hundreds."""
    if not pairs:
        return []
    now = now or timezone.now()
    accounts = list({account.pk: account for account, _ in pairs}.values())
    assessments = {a.account.pk: a for a in assess_accounts(accounts, now=now)}
    working = open_orders_of(list(assessments))
    windows = windows_for({account.program_id for account in accounts})
    closes = early_closes()
    has_blackout = any(a.rules.has_news_blackout for a in assessments.values())
    releases = releases_near(now) if has_blackout else ()
    # The reconciliation gate costs two queries, only when it is on.
    records = reconciliation_records(list(assessments)) if settings.RECONCILIATION_MAX_AGE is not None else {}
    quoted = get_last_prices(sorted({instrument.symbol for _, instrument in pairs}))
    return [
        _snapshot(
            account,
            instrument,
            assessments[account.pk],
            working[account.pk],
            windows=windows.get(account.program_id, ()),
            closes=closes,
            releases=releases,
            record=records.get(account.pk),
            quoted=quoted,
            now=now,
        )
        for account, instrument in pairs
    ]


def _snapshot(
    account: TradingAccount,
    instrument: Instrument,
    assessment: RiskAssessment,
    working: list[Order],
    *,
    windows: tuple[Window, ...],
    closes: tuple[EarlyClose, ...],
    releases: tuple[Release, ...],
    record: ReconciliationRecord | None,
    quoted: dict[str, Decimal],
    now: datetime,
) -> AccountSnapshot:
    contracts = {instrument.symbol: contract_info(instrument)}
    contracts.update((o.instrument.symbol, contract_info(o.instrument)) for o in working)
    contracts.update(
        (m.position.instrument.symbol, contract_info(m.position.instrument)) for m in assessment.valuation.positions
    )
    working_by_symbol: dict[str, list[int]] = {}
    for order in working:
        totals = working_by_symbol.setdefault(order.instrument.symbol, [0, 0])
        totals[0 if order.side == OrderSide.BUY else 1] += order.remaining_quantity
    prices = {m.position.instrument.symbol: m.last_price for m in assessment.valuation.positions if m.last_price}
    if instrument.symbol not in prices and instrument.symbol in quoted:
        prices[instrument.symbol] = quoted[instrument.symbol]
    daily, drawdown = assessment.headroom_for(RiskRule.DAILY_LOSS), assessment.headroom_for(RiskRule.DRAWDOWN)
    state = assessment.state
    reconciliation = ReconciliationStatus()
    if record is not None:
        reconciliation = ReconciliationStatus(
            max_age=settings.RECONCILIATION_MAX_AGE,
            last_good_at=record.last_good_at,
            failed_at=record.failed_at,
            error=record.error,
        )
    return AccountSnapshot(
        status=AccountStatus(account.status),
        trading_state=TradingState(account.trading_state),
        positions={m.position.instrument.symbol: m.position.quantity for m in assessment.valuation.positions},
        working={symbol: (buy, sell) for symbol, (buy, sell) in working_by_symbol.items()},
        rules=assessment.rules,
        contracts=contracts,
        now=now,
        last_prices=prices,
        daily_loss_room=daily.room if daily else None,
        drawdown_room=drawdown.room if drawdown else None,
        scaled_max_contracts=state.scaled_max_contracts,
        blocked_until=state.blocked_until,
        blocked_reason=state.blocked_reason,
        windows=windows,
        early_closes=closes,
        releases=releases,
        reconciliation=reconciliation,
    )


def check_pre_trade(
    orders: Sequence[tuple[TradingAccount, OrderIntent, Instrument]],
) -> list[list[Denial]]:
    """Every order from every source passes here before it is stored as NEW: the denials of
    each (account, intent, instrument), in order. An account appears at most once."""
    # Our own closes (close, flatten, enforcement) pass every rule by design (see risk.rules);
    # skipping their snapshots keeps a mass flatten after a breach fast.
    checked = [(account, instrument) for account, intent, instrument in orders if not intent.is_liquidation]
    snapshots = iter(build_snapshots(checked))
    return [[] if intent.is_liquidation else evaluate_pre_trade(intent, next(snapshots)) for _, intent, _ in orders]


def set_trading_state(
    *, account: TradingAccount, state: TradingState, reason: str, actor: AbstractBaseUser | None = None
) -> TradingAccount:
    with transaction.atomic():
        account = TradingAccount.objects.select_for_update().get(pk=account.pk)
        account.trading_state = state
        account.trading_state_reason = reason[:300]
        if actor is not None and actor.is_authenticated:
            account._history_user = actor  # django-simple-history records who did it
        account.save(update_fields=["trading_state", "trading_state_reason", "updated_at"])
        publish_account_on_commit(account.pk)
    return account


def halt_account(*, account: TradingAccount, reason: str, actor: AbstractBaseUser | None = None) -> TradingAccount:
    return set_trading_state(
        account=account, state=TradingState.HALTED, reason=reason or "Halted by staff.", actor=actor
    )


def resume_account(
    *, account: TradingAccount, reason: str = "", actor: AbstractBaseUser | None = None
) -> TradingAccount:
    return set_trading_state(
        account=account, state=TradingState.ACTIVE, reason=reason or "Resumed by staff.", actor=actor
    )


# -- Prices ------------------------------------------------------------------------------


def apply_price(*, symbol: str, price: Decimal, at: datetime | None = None) -> None:
    """A new last price: store and publish it, then re-mark and re-check exposed accounts.

    Debounced per instrument, leading and trailing: the first move is acted on at once (a
    breach must not wait), the ticks within the next interval are covered by one more run
    that reads the newest price.
    """
    record_last_price(symbol=symbol, price=price, at=at)
    plan_service.request_evaluation(symbol, price)  # position plans and emulated trailing stops (own debounce)
    if not accounts_exposed_to(symbol):
        return
    if get_redis().set(_mark_slot(symbol), "1", nx=True, px=int(MARK_INTERVAL_SECONDS * 1000) * 4):
        tasks.mark_to_market_task.delay(symbol)
        tasks.mark_to_market_task.apply_async((symbol,), kwargs={"trailing": True}, countdown=MARK_INTERVAL_SECONDS)


def _mark_slot(symbol: str) -> str:
    return key("risk", "mark-pending", symbol)


def release_mark_slot(symbol: str) -> None:
    """Called by the trailing run before it reads prices: a tick after this starts a new round.
    (The slot also expires by itself, should the trailing run be lost.)"""
    get_redis().delete(_mark_slot(symbol))
