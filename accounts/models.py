"""Firms, their programs (account types), trading accounts and who may see and trade each one."""

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from accounts.domain import AccountStatus, Phase, TradingState

MONEY = {"max_digits": 18, "decimal_places": 4}


class Firm(models.Model):
    name = models.CharField(max_length=100, unique=True)
    website = models.URLField(blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Program(models.Model):
    """A firm's account type, e.g. "Topstep 50K Trading Combine"; the rule template accounts follow."""

    firm = models.ForeignKey(Firm, on_delete=models.PROTECT, related_name="programs")
    name = models.CharField(max_length=100)
    phase = models.CharField(max_length=12, choices=Phase.choices)
    starting_balance = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3, default="USD")
    notes = models.TextField(blank=True)
    default_position_plan = models.JSONField(
        default=dict,
        blank=True,
        help_text="A position plan every new position of this program's accounts starts with (blank: none); "
        "same fields as POST /api/v1/positions/{id}/plan/.",
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    history = HistoricalRecords()

    class Meta:
        ordering = ["firm__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["firm", "name"], name="program_unique_name_per_firm"),
            models.CheckConstraint(condition=Q(starting_balance__gt=0), name="program_starting_balance_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.firm.name} {self.name}"


class TradingAccountQuerySet(models.QuerySet["TradingAccount"]):
    def visible_to(self, user: AbstractBaseUser | AnonymousUser) -> "TradingAccountQuerySet":
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if getattr(user, "is_staff", False):
            return self
        return self.filter(memberships__user=user)

    def tradable_by(self, user: AbstractBaseUser | AnonymousUser) -> "TradingAccountQuerySet":
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if getattr(user, "is_staff", False):
            return self
        return self.filter(memberships__user=user, memberships__can_trade=True)


class TradingAccount(models.Model):
    name = models.CharField(max_length=100)
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="accounts")
    broker_connection = models.ForeignKey("brokers.BrokerConnection", on_delete=models.PROTECT, related_name="accounts")
    broker_account_id = models.CharField(max_length=64, help_text="The account's id at the broker.")
    starting_balance = models.DecimalField(**MONEY)
    balance = models.DecimalField(**MONEY, help_text="Cash: starting balance plus realized P&L minus fees.")
    status = models.CharField(max_length=10, choices=AccountStatus.choices, default=AccountStatus.ACTIVE)
    trading_state = models.CharField(max_length=10, choices=TradingState.choices, default=TradingState.ACTIVE)
    trading_state_reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["balance", "updated_at"])

    objects = TradingAccountQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["broker_connection", "broker_account_id"], name="account_unique_per_broker_connection"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def currency(self) -> str:
        return self.program.currency


class AccountMembership(models.Model):
    """A trader's access to an account. Staff see every account without one."""

    account = models.ForeignKey(TradingAccount, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account_memberships")
    can_trade = models.BooleanField(default=True, help_text="Off: the trader can watch but not place orders.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} on {self.account}"
