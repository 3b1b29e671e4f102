"""Output shapes of signals and their per-account outcomes."""

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.ticks import display_price


@extend_schema_field(OpenApiTypes.STR)
class SignalPriceField(serializers.Field):
    """A signal's price on its instrument's grid ("5000.25"), as sent when it has no instrument."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def get_attribute(self, instance: Any) -> tuple[Decimal | None, Decimal | None]:
        instrument = instance.instrument
        return super().get_attribute(instance), instrument.tick_size if instrument is not None else None

    def to_representation(self, value: tuple[Decimal | None, Decimal | None]) -> str | None:
        price, tick_size = value
        if price is None:
            return None
        return display_price(price, tick_size) if tick_size else format(price.normalize(), "f")


class OutcomeOrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    client_order_id = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.IntegerField()
    status = serializers.CharField()


class SignalOutcomeSerializer(serializers.Serializer):
    account = serializers.IntegerField(source="account_id")
    account_name = serializers.CharField(source="account.name")
    status = serializers.CharField()
    reason_code = serializers.CharField()
    reason = serializers.CharField()
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    quantity = serializers.IntegerField(allow_null=True)
    order = OutcomeOrderSerializer(allow_null=True)
    exit_order = OutcomeOrderSerializer(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class SignalSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    strategy = serializers.IntegerField(source="strategy_id")
    strategy_name = serializers.CharField(source="strategy.name")
    source = serializers.CharField()
    status = serializers.CharField()
    reject_code = serializers.CharField()
    reject_reason = serializers.CharField()
    action = serializers.CharField()
    sentiment = serializers.CharField()
    ticker = serializers.CharField()
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    quantity = serializers.DecimalField(max_digits=12, decimal_places=4, allow_null=True)
    order_type = serializers.CharField()
    limit_price = SignalPriceField()
    stop_price = SignalPriceField()
    signal_price = SignalPriceField()
    confidence = serializers.DecimalField(max_digits=5, decimal_places=4, allow_null=True)
    received_at = serializers.DateTimeField()
    processed_at = serializers.DateTimeField(allow_null=True)
    outcome_count = serializers.IntegerField(help_text="Outcomes on accounts you can see.")


class SignalDetailSerializer(SignalSerializer):
    outcomes = SignalOutcomeSerializer(source="visible_outcomes", many=True)
