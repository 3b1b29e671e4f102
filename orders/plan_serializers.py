"""Output shape of position plans and their events: the REST API and the live event share it."""

from rest_framework import serializers

from orders.serializers import PriceField


class PlanEventSerializer(serializers.Serializer):
    kind = serializers.CharField()
    detail = serializers.CharField()
    price = PriceField(instrument_source="plan.instrument", allow_null=True)
    order = serializers.IntegerField(source="order_id", allow_null=True)
    payload = serializers.JSONField()
    occurred_at = serializers.DateTimeField()


class PlanStateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    position = serializers.IntegerField(source="position_id")
    account = serializers.IntegerField(source="account_id")
    symbol = serializers.CharField(source="instrument.symbol")
    status = serializers.CharField()
    source = serializers.CharField()
    side = serializers.CharField()
    partial_exits = serializers.JSONField()
    breakeven_after_ticks = serializers.IntegerField(allow_null=True)
    breakeven_offset_ticks = serializers.IntegerField()
    trail_after_ticks = serializers.IntegerField(allow_null=True)
    trail_ticks = serializers.IntegerField(allow_null=True)
    trail_steps = serializers.JSONField()
    exit_at = serializers.DateTimeField(allow_null=True)
    entry_price = PriceField()
    initial_stop_price = PriceField()
    initial_quantity = serializers.IntegerField()
    best_price = PriceField()
    exits_done = serializers.IntegerField()
    breakeven_done = serializers.BooleanField()
    trailing = serializers.BooleanField()
    time_exit_done = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PlanSerializer(PlanStateSerializer):
    events = PlanEventSerializer(many=True, source="events.all")
