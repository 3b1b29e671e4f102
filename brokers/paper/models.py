"""The paper venue's own books. Nothing outside the venue reads these tables: propdesk learns
about them only through the paper adapter, exactly as it would from a real broker."""

import uuid

from django.db import models
from django.db.models import Q

PRICE = {"max_digits": 20, "decimal_places": 8}
MONEY = {"max_digits": 18, "decimal_places": 4}


class VenueContract(models.Model):
    """A contract listed on the venue, with its fee and how the simulated market treats it."""

    symbol = models.CharField(max_length=32, unique=True)
    tick_size = models.DecimalField(**PRICE)
    tick_value = models.DecimalField(**MONEY)
    start_price = models.DecimalField(**PRICE, help_text="Where the simulated random walk starts.")
    fee_per_contract = models.DecimalField(**MONEY, default=0, help_text="Charged per contract per fill.")
    slippage_ticks = models.PositiveSmallIntegerField(default=0, help_text="Ticks a market order pays.")
    max_fill_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="Largest quantity filled per price event; blank fills everything at once."
    )
    is_listed = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.symbol


class VenueAccount(models.Model):
    ref = models.CharField(max_length=64, unique=True, help_text="The account id the venue hands out.")
    stream_key = models.CharField(max_length=64, help_text="Where this account's pushed events go.")
    cash = models.DecimalField(**MONEY, default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.ref


class VenueOrderStatus(models.TextChoices):
    WORKING = "working"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"


class VenueOrder(models.Model):
    account = models.ForeignKey(VenueAccount, on_delete=models.CASCADE, related_name="orders")
    client_order_id = models.CharField(max_length=64, null=True, blank=True)
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    quantity = models.PositiveIntegerField()
    order_type = models.CharField(max_length=16)
    time_in_force = models.CharField(max_length=3, default="day")
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    triggered = models.BooleanField(default=False, help_text="A stop-limit whose stop has been touched.")
    trail_amount = models.DecimalField(**PRICE, null=True, blank=True, help_text="Trailing stops: distance.")
    oco_group = models.CharField(
        max_length=64, blank=True, help_text="Orders sharing it are one-cancels-other (fills reduce the others)."
    )
    status = models.CharField(max_length=10, choices=VenueOrderStatus.choices)
    filled_quantity = models.PositiveIntegerField(default=0)
    avg_fill_price = models.DecimalField(**PRICE, null=True, blank=True)
    reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["account", "client_order_id"],
                condition=Q(client_order_id__isnull=False),
                name="venue_order_unique_client_id",
            )
        ]
        indexes = [models.Index(fields=["symbol", "status"], name="venue_order_working_by_symbol")]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} ({self.status})"

    @property
    def remaining(self) -> int:
        return self.quantity - self.filled_quantity


def _fill_id() -> str:
    return uuid.uuid4().hex


class VenueFill(models.Model):
    fill_id = models.CharField(max_length=40, unique=True, default=_fill_id)
    order = models.ForeignKey(VenueOrder, on_delete=models.CASCADE, related_name="fills")
    account = models.ForeignKey(VenueAccount, on_delete=models.CASCADE, related_name="fills")
    symbol = models.CharField(max_length=32)
    side = models.CharField(max_length=4)
    quantity = models.PositiveIntegerField()
    price = models.DecimalField(**PRICE)
    fee = models.DecimalField(**MONEY)
    executed_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["account", "executed_at"], name="venue_fill_by_account_time")]

    def __str__(self) -> str:
        return f"{self.side} {self.quantity} {self.symbol} @ {self.price}"


class VenuePosition(models.Model):
    account = models.ForeignKey(VenueAccount, on_delete=models.CASCADE, related_name="positions")
    symbol = models.CharField(max_length=32)
    quantity = models.IntegerField(default=0)
    avg_price = models.DecimalField(**PRICE, default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "symbol"], name="venue_position_unique")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.symbol} {self.quantity:+d}"
