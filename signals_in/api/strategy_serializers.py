"""Input and output shapes of strategies, webhook tokens and subscriptions. A token's secret only
ever appears in IssuedTokenSerializer, the answer to issuing it."""

from rest_framework import serializers

from config.api.fields import StrictSerializer
from signals_in.models import SizingMode


class WebhookTokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prefix = serializers.CharField(help_text="The token's first characters, to tell tokens apart.")
    label = serializers.CharField()
    created_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class IssuedTokenSerializer(WebhookTokenSerializer):
    token = serializers.CharField(help_text="The secret. Shown this once: it is not stored and cannot be shown again.")
    url = serializers.CharField(help_text="The webhook URL to paste into the TradingView alert.")


class StrategySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.get_username")
    is_enabled = serializers.BooleanField()
    has_passphrase = serializers.SerializerMethodField()
    allowed_ips = serializers.ListField(child=serializers.CharField())
    rate_limit_per_minute = serializers.IntegerField()
    tokens = WebhookTokenSerializer(many=True, source="tokens.all")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def get_has_passphrase(self, strategy) -> bool:  # type: ignore[no-untyped-def]
        return bool(strategy.passphrase_hash)


class StrategyInputSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    is_enabled = serializers.BooleanField(required=False, default=True)
    passphrase = serializers.CharField(
        required=False,
        allow_blank=True,
        allow_null=True,
        default=None,
        write_only=True,
        help_text="The body's `passphrase` must match it; blank clears it. Never shown back.",
    )
    allowed_ips = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    limit_to_tradingview = serializers.BooleanField(
        required=False, default=False, help_text="Allow only TradingView's four webhook addresses."
    )
    rate_limit_per_minute = serializers.IntegerField(min_value=0, max_value=100000, required=False, default=60)


class TokenInputSerializer(StrictSerializer):
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class SubscriptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    strategy = serializers.IntegerField(source="strategy_id")
    strategy_name = serializers.CharField(source="strategy.name")
    account = serializers.IntegerField(source="account_id")
    account_name = serializers.CharField(source="account.name")
    is_enabled = serializers.BooleanField()
    sizing_mode = serializers.CharField()
    fixed_quantity = serializers.IntegerField()
    multiplier = serializers.DecimalField(max_digits=8, decimal_places=3)
    risk_amount = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True)
    max_quantity = serializers.IntegerField(allow_null=True)
    symbol_map = serializers.JSONField()
    trading_windows = serializers.JSONField()
    allow_adds = serializers.BooleanField()
    allow_reversals = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SubscriptionInputSerializer(StrictSerializer):
    strategy = serializers.IntegerField()
    account = serializers.IntegerField()
    is_enabled = serializers.BooleanField(required=False)
    sizing_mode = serializers.ChoiceField(choices=SizingMode.choices, required=False)
    fixed_quantity = serializers.IntegerField(min_value=1, max_value=10000, required=False)
    multiplier = serializers.DecimalField(max_digits=8, decimal_places=3, required=False)
    risk_amount = serializers.DecimalField(max_digits=18, decimal_places=4, allow_null=True, required=False)
    max_quantity = serializers.IntegerField(min_value=1, allow_null=True, required=False)
    symbol_map = serializers.JSONField(required=False)
    trading_windows = serializers.JSONField(required=False)
    allow_adds = serializers.BooleanField(required=False)
    allow_reversals = serializers.BooleanField(required=False)


class SubscriptionChangeSerializer(SubscriptionInputSerializer):
    """PATCH: everything but which strategy and account (unsubscribe and subscribe again for that)."""

    strategy = None  # type: ignore[assignment]
    account = None  # type: ignore[assignment]
