"""Orders and their event history, fills (applied exactly once) and positions."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from orders.domain import (
    CANCELABLE_STATUSES,
    OPEN_STATUSES,
    WORKING_STATUSES,
    OrderEventType,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    TimeInForce,
    check_transition,
)

PRICE = {"max_digits": 20, "decimal_places": 8}
MONEY = {"max_digits": 18, "decimal_places": 4}


class OrderQuerySet(models.QuerySet["Order"]):
    def working(self) -> "OrderQuerySet":
        return self.filter(status__in=WORKING_STATUSES)

    def open(self) -> "OrderQuerySet":
        return self.filter(status__in=OPEN_STATUSES)

    def locked(self) -> "OrderQuerySet":
        """Rows locked for update (only the orders: joined instrument and user rows stay free),
        with what publishing an order needs already loaded."""
        return self.select_for_update(of=("self",)).select_related("instrument", "created_by")


class Order(models.Model):
    client_order_id = models.CharField(max_length=64, unique=True, help_text="Ours; sent to the broker.")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="orders")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = models.PositiveIntegerField()
    order_type = models.CharField(max_length=10, choices=OrderType.choices)
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.DAY)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.NEW)
    broker_order_id = models.CharField(max_length=64, blank=True)
    filled_quantity = models.PositiveIntegerField(default=0)
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    source = models.CharField(max_length=16, choices=OrderSource.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="orders"
    )
    request_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="Hash of the request, to tell a replay from a reused key."
    )
    reason = models.CharField(max_length=500, blank=True, help_text="Why it was denied, rejected or expired.")
    denials = models.JSONField(default=list, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["account", "status"], name="order_by_account_status"),
            models.Index(
                fields=["status", "submitted_at"],
                name="order_unresolved",
                condition=Q(status__in=["new", "submitted", "pending_cancel"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_quantity__gte=0), name="order_filled_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.instrument_id} ({self.client_order_id})"

    def transition_to(self, status: OrderStatus) -> None:
        """Change status in memory after checking the state table; the caller saves and logs it."""
        check_transition(OrderStatus(self.status), status)
        self.status = status

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == OrderSide.BUY else -self.quantity

    @property
    def remaining_quantity(self) -> int:
        return max(self.quantity - self.filled_quantity, 0)

    @property
    def is_cancelable(self) -> bool:
        return self.status in CANCELABLE_STATUSES


class OrderEvent(models.Model):
    """One row per status change or broker report of an order: its audit trail."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=20, choices=OrderEventType.choices)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16, blank=True)
    detail = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    occurred_at = models.DateTimeField(help_text="When it happened (broker time for broker reports).")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.type} {self.from_status}->{self.to_status}"


class Fill(models.Model):
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="fills")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="fills")
    broker_fill_id = models.CharField(max_length=64)
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE)
    fee = models.DecimalField(**MONEY, default=0)
    realized_pnl = models.DecimalField(**MONEY, default=0, help_text="Gross P&L this fill closed.")
    trade_date = models.DateField(help_text="CME trade date (starts 17:00 America/Chicago).")
    occurred_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["account", "broker_fill_id"], name="fill_unique_per_broker_fill_id"),
        ]
        indexes = [models.Index(fields=["account", "trade_date"], name="fill_by_account_trade_date")]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} @ {self.price} ({self.broker_fill_id})"


class PositionQuerySet(models.QuerySet["Position"]):
    def open(self) -> "PositionQuerySet":
        return self.exclude(quantity=0)


class Position(models.Model):
    """Net position of an account in one instrument; kept (at zero) after it is closed."""

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="positions")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="positions")
    quantity = models.IntegerField(default=0, help_text="Signed: long > 0, short < 0.")
    avg_price = models.DecimalField(**PRICE, default=0)
    realized_pnl = models.DecimalField(**MONEY, default=0, help_text="Gross realized P&L, all time.")
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = PositionQuerySet.as_manager()

    class Meta:
        ordering = ["account_id", "instrument__symbol"]
        constraints = [models.UniqueConstraint(fields=["account", "instrument"], name="position_unique")]
        indexes = [
            models.Index(fields=["instrument"], name="open_position_by_instrument", condition=~Q(quantity=0)),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.instrument_id} {self.quantity:+d}"

    @property
    def side(self) -> str:
        return "long" if self.quantity > 0 else "short" if self.quantity < 0 else "flat"
