"""Firm rules as data: a program's rules, an account's overrides, the calendar data the hours
rules read (early closes, news releases), each account's running risk state, its closed trade
dates, and the violations the monitor found.

Every figure a firm can change is a column here (history kept), never a constant in code.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from accounts.models import MONEY, Program, TradingAccount
from risk.domain import DailyLossMode, DrawdownKind, DrawdownLock, RiskRule, ScalingBasis, Severity, ViolationAction

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


NOT_NEGATIVE = [MinValueValidator(Decimal(0))]


def _validate_roots(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(root, str) and root.strip() for root in value):
        raise ValidationError('Give a list of product roots, e.g. ["ZC", "ZW"].')


class RuleFields(models.Model):
    """The rule figures, shared by a program's rules and an account's overrides.

    Every field is nullable: on a program, empty means "no such rule" (or the documented
    default); on an account override, empty means "as the program says".
    """

    daily_loss_mode = models.CharField(max_length=8, choices=DailyLossMode.choices, null=True, blank=True)
    daily_loss_limit = models.DecimalField(
        **MONEY, null=True, blank=True, validators=NOT_NEGATIVE, help_text="Money, e.g. 1000."
    )
    drawdown_kind = models.CharField(max_length=20, choices=DrawdownKind.choices, null=True, blank=True)
    drawdown_amount = models.DecimalField(
        **MONEY, null=True, blank=True, validators=NOT_NEGATIVE, help_text="Money below the high mark."
    )
    drawdown_lock = models.CharField(max_length=20, choices=DrawdownLock.choices, null=True, blank=True)
    drawdown_lock_offset = models.DecimalField(
        **MONEY,
        null=True,
        blank=True,
        validators=NOT_NEGATIVE,
        help_text="Added to the starting balance for the lock level (Apex PA: 100).",
    )
    max_contracts = models.PositiveIntegerField(null=True, blank=True, help_text="Full-size contracts at once.")
    micro_weight = models.DecimalField(
        max_digits=6,
        decimal_places=3,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.001"))],
        help_text="How much one micro counts toward max contracts: 0.1 (10 micros = 1 mini) or 1.",
    )
    scaling_basis = models.CharField(max_length=8, choices=ScalingBasis.choices, null=True, blank=True)
    time_zone = models.CharField(max_length=40, null=True, blank=True, help_text="For windows and flat-by.")
    flat_by = models.TimeField(null=True, blank=True, help_text="Be flat by this time (program time zone).")
    flat_by_warning_minutes = models.PositiveIntegerField(null=True, blank=True)
    news_blackout_minutes_before = models.PositiveIntegerField(null=True, blank=True)
    news_blackout_minutes_after = models.PositiveIntegerField(null=True, blank=True)
    allowed_roots = models.JSONField(null=True, blank=True, validators=[_validate_roots])
    restricted_roots = models.JSONField(null=True, blank=True, validators=[_validate_roots])
    profit_target = models.DecimalField(**MONEY, null=True, blank=True, validators=NOT_NEGATIVE)
    min_trading_days = models.PositiveIntegerField(null=True, blank=True)
    consistency_max_pct = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal(100))],
        help_text="Best day at most this % of total profit.",
    )
    automation_allowed = models.BooleanField(null=True, blank=True)
    adverse_move_ticks = models.PositiveIntegerField(
        null=True, blank=True, help_text="Worst-case move assumed for an order without a stop, in ticks."
    )

    class Meta:
        abstract = True


class ProgramRules(RuleFields):
    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="rules")
    notes = models.TextField(blank=True, help_text="Sources, and which figures are UNCONFIRMED.")
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    class Meta:
        verbose_name = "program rules"
        verbose_name_plural = "program rules"

    def __str__(self) -> str:
        return f"Rules of {self.program}"


class AccountRuleOverride(RuleFields):
    account = models.OneToOneField(TradingAccount, on_delete=models.CASCADE, related_name="rule_override")
    reason = models.CharField(max_length=300, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords()

    def __str__(self) -> str:
        return f"Overrides for {self.account}"


class ContractLimit(models.Model):
    """Per-product exceptions to a program's contract counting (limit and/or weight)."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="contract_limits")
    root = models.CharField(max_length=16, help_text="Product root, e.g. CL.")
    max_contracts = models.PositiveIntegerField(null=True, blank=True, help_text="Contracts of this product.")
    weight = models.DecimalField(
        max_digits=6, decimal_places=3, null=True, blank=True, help_text="Counts as this many toward the account max."
    )
    history = HistoricalRecords()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["program", "root"], name="contract_limit_unique_root")]

    def __str__(self) -> str:
        return f"{self.program} {self.root}"


class ScalingTier(models.Model):
    """From the next session after the prior end-of-day balance (or profit) reaches `threshold`,
    the account may hold `max_contracts`."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="scaling_tiers")
    threshold = models.DecimalField(**MONEY)
    max_contracts = models.PositiveIntegerField()
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "threshold"]
        constraints = [models.UniqueConstraint(fields=["program", "threshold"], name="scaling_tier_unique")]

    def __str__(self) -> str:
        return f"{self.program}: from {self.threshold} -> {self.max_contracts}"


class TradingWindow(models.Model):
    """When a program's accounts may trade, in the program's time zone. A window whose end is
    not after its start runs past midnight into the next day."""

    program = models.ForeignKey(Program, on_delete=models.CASCADE, related_name="trading_windows")
    weekday = models.PositiveSmallIntegerField(choices=list(enumerate(WEEKDAYS)))
    starts_at = models.TimeField()
    ends_at = models.TimeField()
    history = HistoricalRecords()

    class Meta:
        ordering = ["program", "weekday", "starts_at"]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.starts_at:%H:%M}-{self.ends_at:%H:%M}"


class MarketClose(models.Model):
    """An early close: on `on_date` (or every day when empty) the listed products (or all) close
    at `closes_at` Chicago time, and accounts must be flat before it."""

    on_date = models.DateField(null=True, blank=True, help_text="Empty: every trading day (e.g. grains).")
    roots = models.JSONField(default=list, blank=True, validators=[_validate_roots], help_text="Empty: all.")
    closes_at = models.TimeField(help_text="America/Chicago.")
    reason = models.CharField(max_length=200)

    class Meta:
        ordering = ["on_date", "closes_at"]

    def __str__(self) -> str:
        return f"{self.on_date or 'daily'} {self.closes_at:%H:%M} CT: {self.reason}"


class NewsRelease(models.Model):
    """A scheduled release that blacks out trading for programs with a news rule."""

    title = models.CharField(max_length=200)
    at = models.DateTimeField()
    tier = models.PositiveSmallIntegerField(default=1)
    roots = models.JSONField(default=list, blank=True, validators=[_validate_roots], help_text="Empty: all.")

    class Meta:
        ordering = ["at"]
        indexes = [models.Index(fields=["at"])]

    def __str__(self) -> str:
        return f"{self.title} at {self.at:%Y-%m-%d %H:%M}"


class AccountRiskState(models.Model):
    """What the monitor carries between moments: high marks, the drawdown floor, the contract
    limit from scaling, soft blocks and the trade date the state belongs to."""

    account = models.OneToOneField(TradingAccount, on_delete=models.CASCADE, related_name="risk_state")
    trade_date = models.DateField(help_text="The trade date these figures belong to.")
    eod_high_balance = models.DecimalField(**MONEY, help_text="Highest end-of-day balance so far.")
    peak_equity = models.DecimalField(**MONEY, help_text="Highest equity seen, unrealized P&L included.")
    drawdown_floor = models.DecimalField(**MONEY, null=True, blank=True)
    scaled_max_contracts = models.PositiveIntegerField(null=True, blank=True)
    blocked_until = models.DateTimeField(null=True, blank=True, help_text="Soft block: no new risk until then.")
    blocked_reason = models.CharField(max_length=300, blank=True)
    flat_by_warned_on = models.DateField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Risk state of {self.account}"


class AccountDay(models.Model):
    """One closed trade date of an account, written by the rollover."""

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="days")
    trade_date = models.DateField()
    closing_balance = models.DecimalField(**MONEY)
    realized_pnl = models.DecimalField(**MONEY, default=Decimal(0))
    fees = models.DecimalField(**MONEY, default=Decimal(0))
    fills = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["account", "trade_date"]
        constraints = [models.UniqueConstraint(fields=["account", "trade_date"], name="account_day_unique")]

    def __str__(self) -> str:
        return f"{self.account} {self.trade_date}"

    @property
    def net_pnl(self) -> Decimal:
        return self.realized_pnl - self.fees


class Violation(models.Model):
    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="violations")
    rule = models.CharField(max_length=32, choices=RiskRule.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    threshold = models.DecimalField(**MONEY, null=True, blank=True)
    observed = models.DecimalField(**MONEY, null=True, blank=True)
    trade_date = models.DateField()
    action = models.CharField(max_length=12, choices=ViolationAction.choices)
    detail = models.CharField(max_length=500)
    occurred_at = models.DateTimeField()
    is_active = models.BooleanField(default=True, help_text="Off once the next trade date lifted it, or staff did.")

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            # Enforcement is exactly once: a second monitor seeing the same breach finds this row.
            models.UniqueConstraint(fields=["account", "rule", "trade_date"], name="violation_once_per_rule_and_day"),
        ]
        indexes = [models.Index(fields=["trade_date", "rule"])]

    def __str__(self) -> str:
        return f"{self.account}: {self.rule} on {self.trade_date}"
