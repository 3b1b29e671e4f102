"""Admin: strategies (with their webhook tokens, read-only, and subscriptions) and subscriptions.

A token's secret is shown once, in the message after "Issue a new webhook token"; the pages
only ever show a token's prefix. The passphrase is write-only.
"""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from config.errors import DomainError
from signals_in import strategies as services
from signals_in.models import TRADINGVIEW_IPS, Strategy, Subscription, WebhookToken


class SubscriptionForm(forms.ModelForm):
    """symbol_map and trading_windows are checked for their shape, with the problem in words."""

    class Meta:
        model = Subscription
        fields = ["strategy", "account", *services.SUBSCRIPTION_FIELDS]

    def clean_symbol_map(self) -> dict[str, str]:
        return _checked(services.validate_symbol_map, self.cleaned_data.get("symbol_map"))

    def clean_trading_windows(self) -> list[dict[str, Any]]:
        return _checked(services.validate_trading_windows, self.cleaned_data.get("trading_windows"))


def _checked(validate: Any, value: Any) -> Any:
    try:
        return validate(value)
    except DomainError as exc:
        raise forms.ValidationError(exc.detail, code=exc.code) from None


class WebhookTokenInline(admin.TabularInline):
    model = WebhookToken
    fields = ["prefix", "label", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "webhook token"
    verbose_name_plural = (
        'Webhook tokens (only their first characters; "Issue a new webhook token" shows a new one once)'
    )

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    form = SubscriptionForm
    extra = 0
    fields = [
        ("account", "is_enabled"),
        ("sizing_mode", "fixed_quantity", "multiplier", "risk_amount", "max_quantity"),
        "symbol_map",
        "trading_windows",
        ("allow_adds", "allow_reversals"),
    ]


class StrategyForm(forms.ModelForm):
    new_passphrase = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Set a passphrase the body's `passphrase` field must carry. Stored hashed, never shown; "
        "leave empty to keep the current one.",
    )
    clear_passphrase = forms.BooleanField(required=False, help_text="Ask for no passphrase any more.")

    class Meta:
        model = Strategy
        fields = ["name", "owner", "description", "is_enabled", "allowed_ips", "rate_limit_per_minute"]

    def clean_allowed_ips(self) -> list[str]:
        return _checked(services.validate_allowed_ips, self.cleaned_data.get("allowed_ips") or [])

    def save(self, commit: bool = True) -> Strategy:
        strategy = super().save(commit=False)
        if self.cleaned_data.get("clear_passphrase"):
            strategy.passphrase_hash = ""
        elif self.cleaned_data.get("new_passphrase"):
            strategy.passphrase_hash = services.hash_passphrase(self.cleaned_data["new_passphrase"])
        if commit:
            strategy.save()
        return strategy


@admin.register(Strategy)
class StrategyAdmin(admin.ModelAdmin):
    form = StrategyForm
    list_display = [
        "name",
        "owner",
        "is_enabled",
        "live_tokens",
        "has_passphrase",
        "ip_limited",
        "rate_limit_per_minute",
    ]
    list_filter = ["is_enabled"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["has_passphrase", "created_at", "updated_at"]
    inlines = [WebhookTokenInline, SubscriptionInline]
    actions = ["issue_token", "rotate_tokens", "limit_to_tradingview"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Strategy]:
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(live_token_count=Count("tokens", filter=Q(tokens__revoked_at__isnull=True)))
        )

    @admin.display(description="Live tokens", ordering="live_token_count")
    def live_tokens(self, obj: Strategy) -> int:
        return getattr(obj, "live_token_count", 0)

    @admin.display(boolean=True, description="Passphrase")
    def has_passphrase(self, obj: Strategy) -> bool:
        return bool(obj.passphrase_hash)

    @admin.display(boolean=True, description="IP allowlist")
    def ip_limited(self, obj: Strategy) -> bool:
        return bool(obj.allowed_ips)

    def _show_once(self, request: HttpRequest, strategy: Strategy, issued: services.IssuedToken) -> None:
        url = request.build_absolute_uri(issued.path)
        self.message_user(
            request,
            f"{strategy}: new webhook URL (shown this once, copy it now): {url}",
            messages.WARNING,
        )

    @admin.action(description="Issue a new webhook token (the URL is shown once)")
    def issue_token(self, request: HttpRequest, queryset: QuerySet[Strategy]) -> None:
        for strategy in queryset:
            self._show_once(request, strategy, services.issue_webhook_token(strategy=strategy, label="admin"))

    @admin.action(description="Rotate webhook tokens (revoke all, issue one; the URL is shown once)")
    def rotate_tokens(self, request: HttpRequest, queryset: QuerySet[Strategy]) -> None:
        for strategy in queryset:
            self._show_once(request, strategy, services.rotate_webhook_tokens(strategy=strategy, label="admin"))

    @admin.action(description="Limit to TradingView IPs (" + ", ".join(TRADINGVIEW_IPS) + ")")
    def limit_to_tradingview(self, request: HttpRequest, queryset: QuerySet[Strategy]) -> None:
        for strategy in queryset:
            services.limit_to_tradingview_ips(strategy=strategy)
        self.message_user(request, f"{queryset.count()} strategies now take webhooks from TradingView only.")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["strategy", "account", "is_enabled", "sizing_mode", "max_quantity", "allow_adds", "allow_reversals"]
    list_filter = ["is_enabled", "sizing_mode", "strategy"]
    search_fields = ["strategy__name", "account__name"]
    list_select_related = ["strategy", "account"]
    readonly_fields = ["created_at", "updated_at"]
