"""Pre-trade checks against an account snapshot, trading-state changes, and reacting to prices."""

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction

from accounts.domain import AccountStatus, TradingState
from accounts.models import TradingAccount
from brokers.market_data import record_last_price
from config.redis_client import get_redis, key
from orders.domain import OrderIntent
from orders.realtime import publish_account_on_commit, publish_marks
from orders.selectors import accounts_exposed_to, open_position_quantities, working_quantities
from risk import tasks
from risk.rules import AccountSnapshot, Denial, evaluate_pre_trade

# Positions are re-marked at most this often per instrument while prices stream in.
MARK_INTERVAL_SECONDS = 0.25


def build_snapshot(account: TradingAccount) -> AccountSnapshot:
    return AccountSnapshot(
        status=AccountStatus(account.status),
        trading_state=TradingState(account.trading_state),
        positions=open_position_quantities(account.pk),
        working=working_quantities(account.pk),
    )


def check_pre_trade(*, account: TradingAccount, intent: OrderIntent) -> list[Denial]:
    """Every order from every source passes here before it is stored as NEW."""
    return evaluate_pre_trade(intent, build_snapshot(account))


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


def resume_account(*, account: TradingAccount, actor: AbstractBaseUser | None = None) -> TradingAccount:
    return set_trading_state(account=account, state=TradingState.ACTIVE, reason="", actor=actor)


# -- Prices ------------------------------------------------------------------------------


def apply_price(*, symbol: str, price: Decimal, at: datetime | None = None) -> None:
    """A new last price: store and publish it, then re-mark exposed accounts (debounced)."""
    record_last_price(symbol=symbol, price=price, at=at)
    if not accounts_exposed_to(symbol):
        return
    # One pending mark per instrument: the mark reads the newest price when it runs, so the
    # ticks in between need no work of their own.
    if get_redis().set(key("risk", "mark-pending", symbol), "1", nx=True, px=int(MARK_INTERVAL_SECONDS * 1000)):
        tasks.mark_to_market_task.apply_async((symbol,), countdown=MARK_INTERVAL_SECONDS)


def mark_to_market(*, symbol: str) -> int:
    """Publish fresh unrealized P&L to every account holding `symbol`; returns how many."""
    account_ids = accounts_exposed_to(symbol)
    for account_id in account_ids:
        publish_marks(account_id, symbol=symbol)
    return len(account_ids)
