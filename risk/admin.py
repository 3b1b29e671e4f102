"""Staff views of firm rules, account overrides, the market calendar and the risk monitor's rows.

Rules and the calendar are edited here (history kept where the model has it). The monitor's
rows (risk state, closed days, violations) are read-only: only the monitor writes them.
"""

from django.contrib import admin
from django.http import HttpRequest
from simple_history.admin import SimpleHistoryAdmin

from risk.models import (
    AccountDay,
    AccountRiskState,
    AccountRuleOverride,
    ContractLimit,
    MarketClose,
    NewsRelease,
    ProgramRules,
    ScalingTier,
    TradingWindow,
    Violation,
)

RULE_FIELDSETS = (
    ("Daily loss", {"fields": ["daily_loss_mode", "daily_loss_limit"]}),
    ("Drawdown", {"fields": ["drawdown_kind", "drawdown_amount", "drawdown_lock", "drawdown_lock_offset"]}),
    ("Contracts", {"fields": ["max_contracts", "micro_weight", "scaling_basis"]}),
    (
        "Hours and news",
        {
            "fields": [
                "time_zone",
                "flat_by",
                "flat_by_warning_minutes",
                "news_blackout_minutes_before",
                "news_blackout_minutes_after",
            ]
        },
    ),
    ("Products", {"fields": ["allowed_roots", "restricted_roots"]}),
    ("Evaluation", {"fields": ["profit_target", "min_trading_days", "consistency_max_pct"]}),
    ("Orders", {"fields": ["automation_allowed", "adverse_move_ticks"]}),
)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows only the risk monitor writes: staff can look, not add, edit or delete."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


# -- Inlines on the Program admin (accounts/admin.py) ----------------------------------------


class ProgramRulesInline(admin.StackedInline):
    model = ProgramRules
    can_delete = False  # empty figures mean "no such rule"; deleting the row is never needed
    max_num = 1
    fieldsets = (*RULE_FIELDSETS, ("Notes", {"fields": ["notes", "updated_at"]}))
    readonly_fields = ["updated_at"]


class ContractLimitInline(admin.TabularInline):
    model = ContractLimit
    extra = 0


class ScalingTierInline(admin.TabularInline):
    model = ScalingTier
    extra = 0


class TradingWindowInline(admin.TabularInline):
    model = TradingWindow
    extra = 0


PROGRAM_RULE_INLINES = [ProgramRulesInline, ContractLimitInline, ScalingTierInline, TradingWindowInline]


class AccountRuleOverrideInline(admin.StackedInline):
    """On the account page: any figure set here replaces the program's for this account."""

    model = AccountRuleOverride
    extra = 0
    max_num = 1
    can_delete = True


# -- Rules ---------------------------------------------------------------------------------


@admin.register(ProgramRules)
class ProgramRulesAdmin(SimpleHistoryAdmin):
    list_display = [
        "program",
        "drawdown_kind",
        "drawdown_amount",
        "daily_loss_mode",
        "daily_loss_limit",
        "max_contracts",
        "updated_at",
    ]
    list_filter = ["program__firm", "drawdown_kind", "daily_loss_mode"]
    list_select_related = ["program__firm"]
    search_fields = ["program__name", "program__firm__name"]
    autocomplete_fields = ["program"]
    fieldsets = ((None, {"fields": ["program"]}), *RULE_FIELDSETS, ("Notes", {"fields": ["notes", "updated_at"]}))
    readonly_fields = ["updated_at"]


@admin.register(AccountRuleOverride)
class AccountRuleOverrideAdmin(SimpleHistoryAdmin):
    list_display = ["account", "reason", "updated_at"]
    list_filter = ["account__program__firm"]
    list_select_related = ["account"]
    search_fields = ["account__name", "account__broker_account_id", "reason"]
    autocomplete_fields = ["account"]
    fieldsets = ((None, {"fields": ["account", "reason"]}), *RULE_FIELDSETS, (None, {"fields": ["updated_at"]}))
    readonly_fields = ["updated_at"]


# -- Calendar ------------------------------------------------------------------------------


@admin.register(MarketClose)
class MarketCloseAdmin(admin.ModelAdmin):
    list_display = ["on_date", "roots", "closes_at", "reason"]
    list_filter = [("on_date", admin.EmptyFieldListFilter), "on_date"]
    search_fields = ["reason"]


@admin.register(NewsRelease)
class NewsReleaseAdmin(admin.ModelAdmin):
    list_display = ["title", "at", "tier", "roots"]
    list_filter = ["tier", "at"]
    search_fields = ["title"]
    date_hierarchy = "at"


# -- What the monitor writes ---------------------------------------------------------------


@admin.register(AccountRiskState)
class AccountRiskStateAdmin(ReadOnlyAdmin):
    list_display = [
        "account",
        "trade_date",
        "eod_high_balance",
        "peak_equity",
        "drawdown_floor",
        "scaled_max_contracts",
        "blocked_until",
        "updated_at",
    ]
    list_select_related = ["account"]
    search_fields = ["account__name"]


@admin.register(AccountDay)
class AccountDayAdmin(ReadOnlyAdmin):
    list_display = ["account", "trade_date", "closing_balance", "realized_pnl", "fees", "net_pnl", "fills"]
    list_filter = ["trade_date"]
    list_select_related = ["account"]
    search_fields = ["account__name"]
    date_hierarchy = "trade_date"


@admin.register(Violation)
class ViolationAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "account",
        "rule",
        "severity",
        "action",
        "threshold",
        "observed",
        "trade_date",
        "is_active",
    ]
    list_filter = ["rule", "severity", "action", "trade_date", "is_active"]
    list_select_related = ["account"]
    search_fields = ["account__name"]
    date_hierarchy = "occurred_at"
