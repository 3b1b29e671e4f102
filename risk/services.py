"""Pre-trade checks against an account snapshot, trading-state changes, and reacting to prices."""

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
from orders.realtime import publish_account_on_commit
from orders.selectors import accounts_exposed_to, open_orders, reconciliation_record
from risk import tasks
from risk.domain import RiskRule
from risk.rules import AccountSnapshot, Denial, ReconciliationStatus, evaluate_pre_trade
from risk.selectors import (
    assess_account,
    contract_info,
    early_closes,
    releases_near,
    windows_for,
)

# Positions are re-marked at most this often per instrument while prices stream in.
MARK_INTERVAL_SECONDS = 0.25


def build_snapshot(*, account: TradingAccount, instrument: Instrument, now: datetime | None = None) -> AccountSnapshot:
    """Everything the pre-trade rules look at, read under the caller's account lock."""
    now = now or timezone.now()
    assessment = assess_account(account)
    working = open_orders(account.pk)
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
    if instrument.symbol not in prices:
        prices.update(get_last_prices([instrument.symbol]))
    daily, drawdown = assessment.headroom_for(RiskRule.DAILY_LOSS), assessment.headroom_for(RiskRule.DRAWDOWN)
    state = assessment.state
    reconciliation = ReconciliationStatus()
    if settings.RECONCILIATION_MAX_AGE is not None:  # the gate costs two indexed reads, only when on
        record = reconciliation_record(account.pk)
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
        windows=windows_for([account.program_id]).get(account.program_id, ()),
        early_closes=early_closes(),
        releases=releases_near(now) if assessment.rules.has_news_blackout else (),
        reconciliation=reconciliation,
    )


def check_pre_trade(*, account: TradingAccount, intent: OrderIntent, instrument: Instrument) -> list[Denial]:
    """Every order from every source passes here before it is stored as NEW."""
    if intent.is_liquidation:
        # Our own closes (close, flatten, enforcement) pass every rule by design (see
        # risk.rules); skipping the snapshot keeps a mass flatten after a breach fast.
        return []
    return evaluate_pre_trade(intent, build_snapshot(account=account, instrument=instrument))


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
