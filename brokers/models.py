"""Instruments we can trade and the broker connections accounts trade through."""

from datetime import date
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from brokers.fields import EncryptedJSONField

PRICE = {"max_digits": 20, "decimal_places": 8}
MONEY = {"max_digits": 18, "decimal_places": 4}


class AssetClass(models.TextChoices):
    FUTURE = "future", "Future"
    EQUITY = "equity", "Equity"
    OPTION = "option", "Option"


class SizeClass(models.TextChoices):
    STANDARD = "standard", "Standard"
    MINI = "mini", "E-mini"
    MICRO = "micro", "Micro"


class InstrumentQuerySet(models.QuerySet["Instrument"]):
    def tradable(self) -> "InstrumentQuerySet":
        today = timezone.now().date()
        return self.filter(is_active=True).filter(Q(expires_on__isnull=True) | Q(expires_on__gte=today))

    def front_of(self, root: str, *, on: date | None = None) -> "InstrumentQuerySet":
        """The contract(s) of a root in roll order, the front month first: contracts past their
        roll date (the roll table: `rolls_on`) are no longer the front."""
        on = on or timezone.localdate()
        return (
            self.tradable()
            .filter(root=root.upper())
            .filter(Q(rolls_on__isnull=True) | Q(rolls_on__gt=on))
            .order_by("expires_on", "symbol")
        )


class Instrument(models.Model):
    """One tradable contract (MESZ6). `root` (MES) groups the months of a product."""

    symbol = models.CharField(max_length=32, unique=True, help_text="Tradable contract, e.g. MESZ6.")
    root = models.CharField(max_length=16, db_index=True, help_text="Product root, e.g. MES.")
    description = models.CharField(max_length=100, blank=True)
    exchange = models.CharField(max_length=16)
    asset_class = models.CharField(max_length=8, choices=AssetClass.choices, default=AssetClass.FUTURE)
    tick_size = models.DecimalField(**PRICE)
    tick_value = models.DecimalField(max_digits=14, decimal_places=4, help_text="Money per tick per contract.")
    currency = models.CharField(max_length=3, default="USD")
    size_class = models.CharField(max_length=8, choices=SizeClass.choices, default=SizeClass.STANDARD)
    mini_equivalent = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        default=Decimal("1"),
        help_text="How many full-size contracts one of these counts as (a micro is 0.1 of its mini).",
    )
    trading_hours = models.CharField(
        max_length=32, default="cme_globex", help_text="Name of the trading-hours template for this product."
    )
    expires_on = models.DateField(null=True, blank=True, help_text="Last trade date; blank for no expiry.")
    rolls_on = models.DateField(
        null=True,
        blank=True,
        help_text="From this date the next contract is the front month (continuous symbols such as NQ1! map "
        "there); blank: at expiry.",
    )
    is_active = models.BooleanField(default=True)

    objects = InstrumentQuerySet.as_manager()

    class Meta:
        ordering = ["root", "expires_on"]
        constraints = [
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_size_positive"),
            models.CheckConstraint(condition=Q(tick_value__gt=0), name="instrument_tick_value_positive"),
        ]

    def __str__(self) -> str:
        return self.symbol

    @property
    def point_value(self) -> Decimal:
        """Money per 1.0 of price per contract."""
        return self.tick_value / self.tick_size


class BrokerKind(models.TextChoices):
    PAPER = "paper", "Paper (simulated venue)"
    PROJECTX = "projectx", "ProjectX / TopstepX"
    TRADOVATE = "tradovate", "Tradovate"
    IBKR = "ibkr", "Interactive Brokers"
    SCHWAB = "schwab", "Schwab"
    TASTYTRADE = "tastytrade", "Tastytrade"
    BRIDGE = "bridge", "Desktop bridge"


class Environment(models.TextChoices):
    DEMO = "demo", "Demo / simulated"
    LIVE = "live", "Live"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    OK = "ok", "OK"
    DEGRADED = "degraded", "Degraded"
    DOWN = "down", "Down"


class BrokerConnection(models.Model):
    """A login at a broker. Its credentials are encrypted at rest and never shown back."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=BrokerKind.choices)
    environment = models.CharField(max_length=8, choices=Environment.choices, default=Environment.DEMO)
    credentials = EncryptedJSONField(default=dict, blank=True, editable=False)
    is_enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=10, choices=Health.choices, default=Health.UNKNOWN)
    last_error = models.TextField(blank=True)
    health_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        # Never let credentials reach a log line through a repr.
        return f"<BrokerConnection {self.pk} {self.kind} {self.name!r}>"

    @property
    def has_credentials(self) -> bool:
        return bool(self.credentials)


class Bar(models.Model):
    """One OHLC bar of an instrument's prices (built from the last prices we see; see brokers.bars)."""

    instrument = models.ForeignKey(Instrument, on_delete=models.CASCADE, related_name="bars")
    interval_seconds = models.PositiveIntegerField(default=60)
    start = models.DateTimeField()
    open = models.DecimalField(**PRICE)
    high = models.DecimalField(**PRICE)
    low = models.DecimalField(**PRICE)
    close = models.DecimalField(**PRICE)
    ticks = models.PositiveIntegerField(default=0, help_text="Price updates seen in the bar.")

    class Meta:
        ordering = ["instrument", "interval_seconds", "-start"]
        constraints = [
            models.UniqueConstraint(fields=["instrument", "interval_seconds", "start"], name="bar_unique_start"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument} {self.interval_seconds}s {self.start:%Y-%m-%d %H:%M}"
