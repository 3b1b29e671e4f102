"""Orders and their event history, fills (applied exactly once) and positions."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from orders.domain import (
    CANCELABLE_STATUSES,
    LIVE_STATUSES,
    MODIFIABLE_STATUSES,
    OPEN_STATUSES,
    WORKING_STATUSES,
    OrderEventType,
    OrderRole,
    OrderSide,
    OrderSource,
    OrderStatus,
    OrderType,
    PositionEffect,
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

    def live(self) -> "OrderQuerySet":
        return self.filter(status__in=LIVE_STATUSES)

    def locked(self) -> "OrderQuerySet":
        """Rows locked for update (only the orders: joined instrument and user rows stay free),
        with what publishing an order needs already loaded."""
        return self.select_for_update(of=("self",)).select_related("instrument", "created_by")


class OrderGroupKind(models.TextChoices):
    BRACKET = "bracket", "Bracket"  # an entry with its stop loss and/or take profit
    OCO = "oco", "OCO pair"  # two stand-alone orders, one cancels the other


class OrderGroupStatus(models.TextChoices):
    PENDING = "pending", "Entry working"  # bracket: the entry has not filled yet
    ACTIVE = "active", "Active"  # bracket: protecting a position (the position's context); OCO: legs working
    DONE = "done", "Done"
    CANCELED = "canceled", "Canceled"


class OrderGroup(models.Model):
    """Orders that act together: a bracket (entry, stop loss, take profit) or an OCO pair.

    An ACTIVE bracket is the context of its account's position in that instrument: its stop and
    target legs always cover the position's size; at most one per account and instrument (a
    second bracket's entry that fills merges into it). Everything emulation needs lives in these
    rows, so a restart of any process loses nothing.
    """

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="order_groups")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="order_groups")
    kind = models.CharField(max_length=8, choices=OrderGroupKind.choices)
    status = models.CharField(max_length=8, choices=OrderGroupStatus.choices, default=OrderGroupStatus.PENDING)
    side = models.CharField(max_length=5, blank=True, help_text="Bracket: the side of the position it protects.")
    # The levels as asked (a price, or ticks from the entry's average fill); the legs carry
    # the resolved prices once the entry has filled.
    stop_loss_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_loss_ticks = models.PositiveIntegerField(null=True, blank=True)
    take_profit_price = models.DecimalField(**PRICE, null=True, blank=True)
    take_profit_ticks = models.PositiveIntegerField(null=True, blank=True)
    native_oco = models.BooleanField(
        default=False, help_text="The broker links the legs (one cancels the other there); else we do."
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="merged", help_text="Scale-ins."
    )
    plan = models.JSONField(
        default=dict,
        blank=True,
        help_text="A position plan to start when the entry fills (fields of POST /api/v1/positions/{id}/plan/).",
    )
    detail = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="order_groups"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "instrument"],
                condition=Q(kind="bracket", status="active"),
                name="one_position_context",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} ({self.status})"


class Order(models.Model):
    client_order_id = models.CharField(max_length=64, unique=True, help_text="Ours; sent to the broker.")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="orders")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = models.PositiveIntegerField()
    order_type = models.CharField(max_length=16, choices=OrderType.choices)
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
    group = models.ForeignKey(OrderGroup, null=True, blank=True, on_delete=models.PROTECT, related_name="legs")
    role = models.CharField(max_length=12, choices=OrderRole.choices, blank=True)
    trail_amount = models.DecimalField(**PRICE, null=True, blank=True, help_text="Trailing stops: distance.")
    position_effect = models.CharField(max_length=8, choices=PositionEffect.choices, default=PositionEffect.AUTO)
    pending_change = models.JSONField(
        default=dict, blank=True, help_text="A change sent to the broker and not yet confirmed (ours stays as is)."
    )
    broker_updated_at = models.DateTimeField(
        null=True, blank=True, help_text="Time of the newest broker report applied (older ones are stale)."
    )
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

    @property
    def is_modifiable(self) -> bool:
        return self.status in MODIFIABLE_STATUSES and not self.pending_change


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


# -- Position-management plans ----------------------------------------------------------------


class PlanStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DONE = "done", "Done"  # the position went flat or the plan finished its work
    CANCELED = "canceled", "Canceled"


class PositionPlan(models.Model):
    """How a position is managed once open: partial exits at R multiples, a breakeven move, a
    trailing stop with progressive tightening, a time exit. Evaluated on price changes; every
    action goes through the normal order path and is kept as a PlanEvent.

    R is the distance from the entry to the initial stop, fixed when the plan starts.
    """

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="plans")
    instrument = models.ForeignKey("brokers.Instrument", on_delete=models.PROTECT, related_name="plans")
    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="plans")
    status = models.CharField(max_length=8, choices=PlanStatus.choices, default=PlanStatus.ACTIVE)
    source = models.CharField(max_length=16, help_text="api, ticket or program (a program default).")
    # The plan as asked.
    partial_exits = models.JSONField(
        default=list, blank=True, help_text='[{"r": "1.5", "percent": 50}, ...] in R order.'
    )
    breakeven_after_ticks = models.PositiveIntegerField(null=True, blank=True)
    breakeven_offset_ticks = models.IntegerField(default=0, help_text="Stop goes to entry ± this many ticks.")
    trail_after_ticks = models.PositiveIntegerField(null=True, blank=True)
    trail_ticks = models.PositiveIntegerField(null=True, blank=True)
    trail_steps = models.JSONField(
        default=list, blank=True, help_text='Tightening: [{"r": "2", "ticks": 8}, ...] (from this R, trail by).'
    )
    exit_at = models.DateTimeField(null=True, blank=True, help_text="Close whatever is left at this time.")
    # What the plan started from and where it is.
    side = models.CharField(max_length=5, help_text="long or short")
    entry_price = models.DecimalField(**PRICE)
    initial_stop_price = models.DecimalField(**PRICE)
    initial_quantity = models.PositiveIntegerField()
    best_price = models.DecimalField(**PRICE, help_text="Most favourable price seen since the plan started.")
    exits_done = models.PositiveSmallIntegerField(default=0, help_text="How many partial exits were sent.")
    breakeven_done = models.BooleanField(default=False)
    trailing = models.BooleanField(default=False)
    time_exit_done = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="plans"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["position"], condition=Q(status="active"), name="one_active_plan"),
        ]
        indexes = [models.Index(fields=["instrument"], name="active_plan_by_instrument", condition=Q(status="active"))]

    def __str__(self) -> str:
        return f"Plan {self.pk} on {self.position}"


class PlanEventKind(models.TextChoices):
    STARTED = "started", "Started"
    PARTIAL_EXIT = "partial_exit", "Partial exit"
    BREAKEVEN = "breakeven", "Stop to breakeven"
    TRAIL = "trail", "Trailing stop moved"
    TIME_EXIT = "time_exit", "Time exit"
    FAILED = "failed", "Action failed"
    FINISHED = "finished", "Finished"


class PlanEvent(models.Model):
    plan = models.ForeignKey(PositionPlan, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=16, choices=PlanEventKind.choices)
    detail = models.CharField(max_length=500, blank=True)
    price = models.DecimalField(**PRICE, null=True, blank=True, help_text="The market price that triggered it.")
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="plan_events")
    payload = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()

    class Meta:
        ordering = ["occurred_at", "id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"


# -- Reconciliation with the broker ---------------------------------------------------------


class ReconciliationOutcome(models.TextChoices):
    CLEAN = "clean", "In line"
    CORRECTED = "corrected", "Corrected"
    FAILED = "failed", "Failed"


class ReconciliationRun(models.Model):
    """One comparison of an account's orders, positions and fills with its broker's."""

    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="reconciliations")
    trigger = models.CharField(max_length=16, help_text="startup, beat or staff.")
    outcome = models.CharField(max_length=10, choices=ReconciliationOutcome.choices)
    discrepancies = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=500, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["account", "-started_at"], name="reconciliation_latest")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.outcome} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class DiscrepancyKind(models.TextChoices):
    UNRESOLVED_ORDER = "unresolved_order", "Unresolved submission settled"
    MISSED_FILL = "missed_fill", "Missed fill applied"
    STATUS = "status", "Order status differed"
    EXTERNAL_ORDER = "external_order", "Order placed outside propdesk adopted"
    VANISHED_ORDER = "vanished_order", "Order gone at the broker"
    POSITION = "position", "Position differed"


class Discrepancy(models.Model):
    run = models.ForeignKey(ReconciliationRun, on_delete=models.CASCADE, related_name="found")
    kind = models.CharField(max_length=20, choices=DiscrepancyKind.choices)
    order = models.ForeignKey(Order, null=True, blank=True, on_delete=models.SET_NULL, related_name="discrepancies")
    symbol = models.CharField(max_length=32, blank=True)
    detail = models.CharField(max_length=500)
    correction = models.CharField(max_length=500, blank=True)
    payload = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "discrepancies"

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}"
