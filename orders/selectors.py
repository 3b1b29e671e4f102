"""Permission-scoped reads of orders, positions and fills, and account valuation (P&L, equity)."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
from django.utils import timezone

from accounts.models import TradingAccount
from accounts.selectors import User, accounts_visible_to
from brokers.market_data import get_last_prices
from brokers.models import Instrument
from config.errors import NotFoundError
from orders.domain import LIQUIDATING_SOURCES, OPEN_STATUSES, PROTECTIVE_ROLES, unrealized_pnl
from orders.models import Fill, Order, Position, ReconciliationOutcome, ReconciliationRun
from risk.trading_day import trade_date_for


class OrderNotFound(NotFoundError):
    code = "order_not_found"


class PositionNotFound(NotFoundError):
    code = "position_not_found"


def orders_visible_to(user: User) -> QuerySet[Order]:
    return Order.objects.filter(account__in=accounts_visible_to(user).values("pk")).select_related(
        "instrument", "account", "created_by"
    )


def get_order_for_user(*, user: User, order_id: int | str) -> Order:
    try:
        return orders_visible_to(user).prefetch_related("events").get(pk=int(order_id))
    except (Order.DoesNotExist, ValueError):
        raise OrderNotFound(f"No order {order_id} among your accounts' orders.") from None


def positions_visible_to(user: User) -> QuerySet[Position]:
    return Position.objects.filter(account__in=accounts_visible_to(user).values("pk")).select_related("instrument")


def get_position_for_user(*, user: User, position_id: int | str) -> Position:
    try:
        return positions_visible_to(user).select_related("account").get(pk=int(position_id))
    except (Position.DoesNotExist, ValueError):
        raise PositionNotFound(f"No position {position_id} among your accounts' positions.") from None


def fills_visible_to(user: User) -> QuerySet[Fill]:
    return Fill.objects.filter(account__in=accounts_visible_to(user).values("pk")).select_related("instrument", "order")


def open_orders_of(account_ids: Iterable[int]) -> dict[int, list[Order]]:
    """Orders not yet done (stored, sent or working), with their instruments, by account id."""
    by_account: dict[int, list[Order]] = defaultdict(list)
    for order in Order.objects.filter(account_id__in=list(account_ids), status__in=OPEN_STATUSES).select_related(
        "instrument"
    ):
        by_account[order.account_id].append(order)
    return by_account


def fill_count(*, account_id: int, trade_date: date) -> int:
    return Fill.objects.filter(account_id=account_id, trade_date=trade_date).count()


def closing_trade_counts(account_id: int) -> tuple[int, int]:
    """(trades, winners): fills that realized P&L, and those that realized a profit."""
    counts = (
        Fill.objects.filter(account_id=account_id)
        .exclude(realized_pnl=0)
        .aggregate(trades=Count("pk"), wins=Count("pk", filter=Q(realized_pnl__gt=0)))
    )
    return counts["trades"], counts["wins"]


@dataclass(frozen=True)
class DayTotals:
    realized_pnl: Decimal
    fees: Decimal
    fills: int


def day_totals_since(*, account_id: int, first: date) -> dict[date, DayTotals]:
    """Realized P&L, fees and fill count per trade date, from `first` on."""
    rows = (
        Fill.objects.filter(account_id=account_id, trade_date__gte=first)
        .values("trade_date")
        .annotate(realized=Sum("realized_pnl"), fees=Sum("fee"), fills=Count("pk"))
    )
    return {row["trade_date"]: DayTotals(row["realized"], row["fees"], row["fills"]) for row in rows}


def open_positions_of(account_ids: Iterable[int]) -> dict[int, list[Position]]:
    """Open positions by account id, with instruments."""
    by_account: dict[int, list[Position]] = defaultdict(list)
    for position in Position.objects.open().filter(account_id__in=list(account_ids)).select_related("instrument"):
        by_account[position.account_id].append(position)
    return by_account


def accounts_with_positions() -> QuerySet[Position]:
    """Account ids holding an open position (a subquery)."""
    return Position.objects.open().values("account_id")


def liquidating_quantity(*, account_id: int, instrument_id: int, side: str) -> int:
    """Unfilled quantity of close/flatten orders already on their way for this position."""
    rows = (
        Order.objects.filter(
            account_id=account_id,
            instrument_id=instrument_id,
            side=side,
            status__in=OPEN_STATUSES,
            source__in=LIQUIDATING_SOURCES,
        )
        .exclude(role__in=PROTECTIVE_ROLES)  # a resting stop or target is not a close on its way
        .values_list("quantity", "filled_quantity")
    )
    return sum(quantity - filled for quantity, filled in rows)


def working_quantities(*, account_ids: Iterable[int], instrument_ids: Iterable[int]) -> dict[tuple[int, int, str], int]:
    """Unfilled quantity of orders that can trade now, other than protective legs (a position's
    stop and target cover it; they never add exposure), by (account, instrument, side)."""
    totals: dict[tuple[int, int, str], int] = defaultdict(int)
    rows = (
        Order.objects.filter(
            account_id__in=list(account_ids), instrument_id__in=list(instrument_ids), status__in=OPEN_STATUSES
        )
        .exclude(role__in=PROTECTIVE_ROLES)
        .values_list("account_id", "instrument_id", "side", "quantity", "filled_quantity")
    )
    for account_id, instrument_id, side, quantity, filled in rows:
        totals[(account_id, instrument_id, side)] += quantity - filled
    return totals


@dataclass(frozen=True)
class ReconciliationRecord:
    last_good_at: datetime | None  # start of the newest run that did not fail
    failed_at: datetime | None  # start of the newest run, when it failed
    error: str


def reconciliation_records(account_ids: Iterable[int]) -> dict[int, ReconciliationRecord]:
    """Where each account stands with its broker, for the pre-trade gate: one query for any
    number of accounts (each account's newest run, and its newest run that did not fail, read
    through the (account, -started_at) index)."""
    runs = ReconciliationRun.objects.filter(account_id=OuterRef("pk")).order_by("-started_at", "-id")
    good = runs.exclude(outcome=ReconciliationOutcome.FAILED)
    rows = (
        TradingAccount.objects.filter(pk__in=list(account_ids))
        .annotate(
            last_outcome=Subquery(runs.values("outcome")[:1]),
            last_started=Subquery(runs.values("started_at")[:1]),
            last_error=Subquery(runs.values("error")[:1]),
            last_good=Subquery(good.values("started_at")[:1]),
        )
        .values_list("pk", "last_outcome", "last_started", "last_error", "last_good")
    )
    records = {}
    for account_id, outcome, started, error, last_good in rows:
        failed = outcome == ReconciliationOutcome.FAILED
        records[account_id] = ReconciliationRecord(
            last_good_at=last_good, failed_at=started if failed else None, error=error if failed else ""
        )
    return records


# -- Valuation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PositionMark:
    position: Position
    last_price: Decimal | None
    unrealized_pnl: Decimal  # zero while no price is known


@dataclass(frozen=True)
class AccountValuation:
    account: TradingAccount
    positions: list[PositionMark]
    trade_date: date
    day_realized_pnl: Decimal  # gross, this trade date
    day_fees: Decimal

    @property
    def unrealized_pnl(self) -> Decimal:
        return sum((m.unrealized_pnl for m in self.positions), Decimal(0))

    @property
    def equity(self) -> Decimal:
        return self.account.balance + self.unrealized_pnl

    @property
    def day_pnl(self) -> Decimal:
        """Net P&L of the current trade date: realized minus fees plus what is open now."""
        return self.day_realized_pnl - self.day_fees + self.unrealized_pnl


def mark_positions(positions: Iterable[Position]) -> list[PositionMark]:
    positions = list(positions)
    prices = get_last_prices(p.instrument.symbol for p in positions)
    marks = []
    for position in positions:
        last = prices.get(position.instrument.symbol)
        pnl = (
            unrealized_pnl(
                quantity=position.quantity,
                avg_price=position.avg_price,
                last_price=last,
                point_value=position.instrument.point_value,
            )
            if last is not None and position.quantity
            else Decimal(0)
        )
        marks.append(PositionMark(position=position, last_price=last, unrealized_pnl=pnl))
    return marks


def value_accounts(accounts: Sequence[TradingAccount]) -> list[AccountValuation]:
    """Valuations in the order given, with one query per kind of data for the whole list."""
    ids = [a.pk for a in accounts]
    today = trade_date_for(timezone.now())
    positions = list(Position.objects.open().filter(account_id__in=ids))
    # A handful of instruments serve thousands of positions: load each once, not per row.
    instruments = Instrument.objects.in_bulk({p.instrument_id for p in positions})
    for position in positions:
        position.instrument = instruments[position.instrument_id]
    positions.sort(key=lambda p: p.instrument.symbol)
    marks_by_account: dict[int, list[PositionMark]] = defaultdict(list)
    for mark in mark_positions(positions):
        marks_by_account[mark.position.account_id].append(mark)
    day = (
        Fill.objects.filter(account_id__in=ids, trade_date=today)
        .values("account_id")
        .annotate(realized=Sum("realized_pnl"), fees=Sum("fee"))
    )
    day_by_account = {row["account_id"]: row for row in day}
    return [
        AccountValuation(
            account=account,
            positions=marks_by_account.get(account.pk, []),
            trade_date=today,
            day_realized_pnl=(day_by_account.get(account.pk) or {}).get("realized") or Decimal(0),
            day_fees=(day_by_account.get(account.pk) or {}).get("fees") or Decimal(0),
        )
        for account in accounts
    ]


def value_account(account: TradingAccount) -> AccountValuation:
    return value_accounts([account])[0]


def accounts_exposed_to(symbol: str) -> list[int]:
    """Ids of the accounts with an open position in `symbol`."""
    return list(
        Position.objects.open().filter(instrument__symbol=symbol).values_list("account_id", flat=True).distinct()
    )


def recent_orders(*, account_id: int, limit: int = 10) -> list[Order]:
    return list(
        Order.objects.filter(account_id=account_id).select_related("instrument").order_by("-created_at", "-id")[:limit]
    )
