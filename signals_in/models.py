"""Signals from outside and what became of them: strategies and their webhook tokens, the accounts
subscribed to them, every signal received (accepted or rejected) with one outcome per account, the
leader -> follower copier, prediction feeds and automation rules."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from brokers.fields import EncryptedJSONField

PRICE = {"max_digits": 20, "decimal_places": 8}
MONEY = {"max_digits": 18, "decimal_places": 4}

# TradingView's documented webhook source addresses (shared/docs PROP_FIRMS_CME_TRADINGVIEW 4.1).
TRADINGVIEW_IPS = ["52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7"]


# -- Strategies and subscriptions ----------------------------------------------------------------


class Strategy(models.Model):
    """A named source of signals (one TradingView alert set, a prediction feed, ...). Accounts
    subscribe to it; one signal fans out to every enabled subscription."""

    name = models.CharField(max_length=100, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="strategies")
    description = models.TextField(blank=True)
    is_enabled = models.BooleanField(default=True, help_text="Off: signals are refused (stored as rejected).")
    passphrase_hash = models.CharField(
        max_length=128,
        blank=True,
        help_text="Hash of the optional body passphrase (the body's `passphrase` field); blank: none asked.",
    )
    allowed_ips = models.JSONField(
        default=list,
        blank=True,
        help_text="Source addresses allowed to post (blank: any). TradingView's four: " + ", ".join(TRADINGVIEW_IPS),
    )
    rate_limit_per_minute = models.PositiveIntegerField(
        default=60, help_text="Webhook requests per minute per strategy; more are answered 429."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "strategies"

    def __str__(self) -> str:
        return self.name


class WebhookToken(models.Model):
    """A secret in a strategy's webhook URL. Only its hash is stored: the token is shown once."""

    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True, help_text="sha256 of the token.")
    prefix = models.CharField(max_length=8, help_text="The token's first characters, to tell tokens apart.")
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.strategy.name} {self.prefix}…"


class SizingMode(models.TextChoices):
    FIXED = "fixed", "Fixed quantity"
    MULTIPLIER = "multiplier", "Multiplier of the signal's quantity"
    RISK = "risk", "Risk amount per trade (needs the signal's stop)"


class Subscription(models.Model):
    """An account following a strategy, with its own sizing, symbol mapping and windows."""

    strategy = models.ForeignKey(Strategy, on_delete=models.CASCADE, related_name="subscriptions")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="subscriptions")
    is_enabled = models.BooleanField(default=True)
    sizing_mode = models.CharField(max_length=10, choices=SizingMode.choices, default=SizingMode.FIXED)
    fixed_quantity = models.PositiveIntegerField(default=1)
    multiplier = models.DecimalField(max_digits=8, decimal_places=3, default=Decimal("1"))
    risk_amount = models.DecimalField(**MONEY, null=True, blank=True, help_text="Money risked to the signal's stop.")
    max_quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Cap on any one order (blank: none).")
    symbol_map = models.JSONField(
        default=dict,
        blank=True,
        help_text='Product roots to trade instead, e.g. {"NQ": "MNQ"} trades MNQ on NQ alerts.',
    )
    trading_windows = models.JSONField(
        default=list,
        blank=True,
        help_text='When signals may open risk, e.g. [{"days": [0,1,2,3,4], "start": "08:30", "end": "15:00", '
        '"tz": "America/Chicago"}] (blank: always). Exits always pass.',
    )
    allow_adds = models.BooleanField(default=False, help_text="A buy while long (sell while short) adds to it.")
    allow_reversals = models.BooleanField(default=True, help_text="A buy while short exits, then enters long.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["strategy__name", "account__name"]
        constraints = [
            models.UniqueConstraint(fields=["strategy", "account"], name="subscription_unique_per_account"),
            models.CheckConstraint(condition=Q(multiplier__gt=0), name="subscription_multiplier_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.account} follows {self.strategy}"


# -- Signals and their outcomes ------------------------------------------------------------------


class SignalSource(models.TextChoices):
    TRADINGVIEW = "tradingview", "TradingView webhook"
    PREDICTION = "prediction", "Prediction feed"
    API = "api", "REST API"


class SignalStatus(models.TextChoices):
    RECEIVED = "received", "Received, waiting to be processed"
    REJECTED = "rejected", "Rejected (bad input)"
    PROCESSED = "processed", "Processed"
    FAILED = "failed", "Processing failed"


class Signal(models.Model):
    """One signal as it arrived, and what we understood of it. Rejected ones are kept with why."""

    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="signals")
    source = models.CharField(max_length=12, choices=SignalSource.choices, default=SignalSource.TRADINGVIEW)
    status = models.CharField(max_length=10, choices=SignalStatus.choices, default=SignalStatus.RECEIVED)
    reject_code = models.CharField(max_length=40, blank=True)
    reject_reason = models.CharField(max_length=500, blank=True)
    # Intake
    raw_body = models.TextField(blank=True, help_text="The body as received (at most 64 KB).")
    content_type = models.CharField(max_length=100, blank=True)
    source_ip = models.GenericIPAddressField(null=True, blank=True)
    body_hash = models.CharField(max_length=64, db_index=True, help_text="sha256 of token and body (duplicates).")
    external_id = models.CharField(max_length=100, blank=True, help_text="The sender's own id (`id`), if any.")
    received_at = models.DateTimeField(db_index=True)
    # Understood
    action = models.CharField(max_length=8, blank=True, help_text="buy, sell, exit, cancel or add.")
    sentiment = models.CharField(max_length=8, blank=True, help_text="long, short or flat after the trade.")
    ticker = models.CharField(max_length=40, blank=True, help_text="As sent.")
    instrument = models.ForeignKey("brokers.Instrument", null=True, blank=True, on_delete=models.PROTECT)
    quantity = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    order_type = models.CharField(max_length=16, blank=True)
    limit_price = models.DecimalField(**PRICE, null=True, blank=True)
    stop_price = models.DecimalField(**PRICE, null=True, blank=True)
    signal_price = models.DecimalField(**PRICE, null=True, blank=True)
    signal_time = models.DateTimeField(null=True, blank=True)
    confidence = models.DecimalField(max_digits=5, decimal_places=4, null=True, blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="Everything understood, normalised.")
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["strategy", "external_id"], condition=~Q(external_id=""), name="signal_unique_external_id"
            ),
        ]
        indexes = [
            models.Index(fields=["strategy", "body_hash", "received_at"], name="signal_duplicate_lookup"),
            # The hand-off's sweep (signals_in.handoff): RECEIVED is a short-lived state, so this stays small.
            models.Index(fields=["received_at"], name="signal_awaiting_handoff", condition=models.Q(status="received")),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.action} {self.ticker}"


class OutcomeStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ORDERED = "ordered", "Order placed"
    WAITING_EXIT = "waiting_exit", "Waiting for the exit to fill"
    DENIED = "denied", "Denied by risk"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


class SignalOutcome(models.Model):
    """What one signal did on one subscribed account: its order(s), or why there is none."""

    signal = models.ForeignKey(Signal, on_delete=models.CASCADE, related_name="outcomes")
    subscription = models.ForeignKey(Subscription, null=True, on_delete=models.SET_NULL, related_name="outcomes")
    account = models.ForeignKey("accounts.TradingAccount", on_delete=models.PROTECT, related_name="signal_outcomes")
    status = models.CharField(max_length=12, choices=OutcomeStatus.choices, default=OutcomeStatus.PENDING)
    reason_code = models.CharField(max_length=40, blank=True)
    reason = models.CharField(max_length=500, blank=True)
    instrument = models.ForeignKey("brokers.Instrument", null=True, blank=True, on_delete=models.PROTECT)
    quantity = models.PositiveIntegerField(null=True, blank=True, help_text="What sizing gave.")
    exit_order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="Reversals, exits."
    )
    order = models.ForeignKey(
        "orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="+", help_text="The entry."
    )
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Signal received to order stored.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["signal_id", "account__name"]
        constraints = [
            models.UniqueConstraint(fields=["signal", "account"], name="outcome_unique_per_account"),
        ]

    def __str__(self) -> str:
        return f"signal #{self.signal_id} on {self.account}: {self.status}"


# -- Copier --------------------------------------------------------------------------------------


class DriftAction(models.TextChoices):
    CORRECT = "correct", "Correct the follower"
    QUARANTINE = "quarantine", "Quarantine the follower"


class CopierStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    QUARANTINED = "quarantined", "Quarantined"


class CopierLink(models.Model):
    """A follower account mirroring a leader account's position, scaled and mapped."""

    leader = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="copier_followers")
    follower = models.ForeignKey("accounts.TradingAccount", on_delete=models.CASCADE, related_name="copier_leaders")
    is_enabled = models.BooleanField(default=True)
    ratio = models.DecimalField(max_digits=8, decimal_places=3, default=Decimal("1"))
    max_quantity = models.PositiveIntegerField(null=True, blank=True, help_text="Cap on the follower's position.")
    symbol_map = models.JSONField(default=dict, blank=True, help_text='Product roots, e.g. {"ES": "MES"}.')
    on_drift = models.CharField(max_length=10, choices=DriftAction.choices, default=DriftAction.CORRECT)
    drift_tolerance = models.PositiveIntegerField(default=0, help_text="Contracts of difference let stand.")
    status = models.CharField(max_length=12, choices=CopierStatus.choices, default=CopierStatus.ACTIVE)
    status_reason = models.CharField(max_length=300, blank=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["leader__name", "follower__name"]
        constraints = [
            models.UniqueConstraint(fields=["leader", "follower"], name="copier_unique_pair"),
            models.CheckConstraint(condition=~Q(leader=models.F("follower")), name="copier_not_self"),
            models.CheckConstraint(condition=Q(ratio__gt=0), name="copier_ratio_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.follower} copies {self.leader}"


class CopyActionKind(models.TextChoices):
    MIRROR = "mirror", "Mirrored a leader fill"
    CORRECTION = "correction", "Corrected drift"
    QUARANTINE = "quarantine", "Quarantined"
    SKIPPED = "skipped", "Skipped"
    DENIED = "denied", "Denied by risk"
    RESUMED = "resumed", "Resumed by staff"


class CopyAction(models.Model):
    """Every step the copier took for a follower, with what it wanted, what it found and how long it took."""

    link = models.ForeignKey(CopierLink, on_delete=models.CASCADE, related_name="actions")
    kind = models.CharField(max_length=12, choices=CopyActionKind.choices)
    instrument = models.ForeignKey("brokers.Instrument", null=True, blank=True, on_delete=models.PROTECT)
    leader_fill = models.ForeignKey("orders.Fill", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    desired_quantity = models.IntegerField(null=True, blank=True, help_text="Signed position wanted.")
    actual_quantity = models.IntegerField(null=True, blank=True, help_text="Signed position found.")
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Leader fill to follower order.")
    slippage_ticks = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, help_text="Follower fill against leader fill, ticks."
    )
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One mirror per leader fill and follower: a redelivered fill never copies twice.
            models.UniqueConstraint(
                fields=["link", "leader_fill"], condition=Q(kind="mirror"), name="copy_mirror_once_per_fill"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} for {self.link}"


# -- Prediction feeds ----------------------------------------------------------------------------


class PredictionFeed(models.Model):
    """An HTTP JSON endpoint we poll for predictions; they become signals of `strategy`."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500)
    strategy = models.ForeignKey(Strategy, on_delete=models.PROTECT, related_name="prediction_feeds")
    is_enabled = models.BooleanField(default=True)
    headers = EncryptedJSONField(blank=True, default=dict, help_text="Request headers (e.g. an API key); encrypted.")
    poll_interval_seconds = models.PositiveIntegerField(default=15)
    timeout_seconds = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal("5"))
    min_confidence = models.DecimalField(
        max_digits=5, decimal_places=4, default=Decimal("0"), help_text="Predictions below this are skipped."
    )
    confidence_sizing = models.BooleanField(
        default=False, help_text="Scale each account's quantity by the confidence (rounded down, at least 1)."
    )
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FeedPoll(models.Model):
    """One poll of a feed: what came back, or what went wrong."""

    feed = models.ForeignKey(PredictionFeed, on_delete=models.CASCADE, related_name="polls")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    http_status = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    received = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    duplicates = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0, help_text="Below the minimum confidence or not understood.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.feed} at {self.started_at:%H:%M:%S}"


# -- Automation rules ----------------------------------------------------------------------------


class AutomationRule(models.Model):
    """A rule as data: when its conditions hold, its action runs on the accounts in scope.

    `conditions` and `action` are validated by signals_in.rules (pure); see its docstring for the
    fields. Scope: the strategy's signals (and its subscribed accounts), and/or listed accounts.
    """

    name = models.CharField(max_length=100, unique=True)
    is_enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=100, help_text="Lower runs first; the first rule that fires wins.")
    cooldown_seconds = models.PositiveIntegerField(default=0, help_text="After firing on an account, wait this long.")
    strategy = models.ForeignKey(Strategy, null=True, blank=True, on_delete=models.CASCADE, related_name="rules")
    accounts = models.ManyToManyField("accounts.TradingAccount", blank=True, related_name="automation_rules")
    conditions = models.JSONField(default=dict, blank=True)
    action = models.JSONField(default=dict)
    template = models.CharField(max_length=30, blank=True, help_text="The template it was made from, if any.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]

    def __str__(self) -> str:
        return self.name


class RuleDecision(models.Model):
    """Every evaluation that fired (or was held back by cooldown), with the rule and what it saw."""

    rule = models.ForeignKey(AutomationRule, null=True, on_delete=models.SET_NULL, related_name="decisions")
    account = models.ForeignKey("accounts.TradingAccount", null=True, on_delete=models.CASCADE, related_name="+")
    signal = models.ForeignKey(Signal, null=True, blank=True, on_delete=models.SET_NULL, related_name="decisions")
    trigger = models.CharField(max_length=20, help_text="signal, schedule or price.")
    fired = models.BooleanField()
    action = models.JSONField(default=dict, blank=True)
    reason = models.CharField(max_length=500)
    context = models.JSONField(default=dict, blank=True, help_text="The facts the rule was evaluated on.")
    order = models.ForeignKey("orders.Order", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["rule", "account", "fired", "created_at"], name="rule_cooldown_lookup")]

    def __str__(self) -> str:
        return f"{self.rule} on {self.account}: {'fired' if self.fired else 'held'}"
