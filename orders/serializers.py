"""Output shapes of orders, positions and fills: the REST API and the live events share them."""

from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from brokers.ticks import display_price


@extend_schema_field(OpenApiTypes.STR)
class PriceField(serializers.Field):
    """A price written on its instrument's tick grid ("5000.25"), or null."""

    def __init__(self, *, instrument_source: str = "instrument", **kwargs: Any) -> None:
        self.instrument_source = instrument_source.split(".")
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def get_attribute(self, instance: Any) -> tuple[Decimal | None, Decimal]:
        value = super().get_attribute(instance)
        holder = instance
        for attr in self.instrument_source:
            holder = getattr(holder, attr)
        return value, holder.tick_size

    def to_representation(self, value: tuple[Decimal | None, Decimal]) -> str | None:
        price, tick_size = value
        return None if price is None else display_price(price, tick_size)


def Money(**kwargs: Any) -> serializers.DecimalField:  # noqa: N802 - reads like a field class
    return serializers.DecimalField(max_digits=18, decimal_places=2, read_only=True, **kwargs)


class OrderEventSerializer(serializers.Serializer):
    type = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    detail = serializers.CharField()
    payload = serializers.JSONField()
    occurred_at = serializers.DateTimeField()


class OrderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    client_order_id = serializers.CharField()
    account = serializers.IntegerField(source="account_id")
    symbol = serializers.CharField(source="instrument.symbol")
    side = serializers.CharField()
    quantity = serializers.IntegerField()
    type = serializers.CharField(source="order_type")
    limit_price = PriceField(allow_null=True)
    stop_price = PriceField(allow_null=True)
    time_in_force = serializers.CharField()
    status = serializers.CharField()
    cancelable = serializers.BooleanField(source="is_cancelable")
    broker_order_id = serializers.CharField()
    filled_quantity = serializers.IntegerField()
    avg_fill_price = PriceField(allow_null=True)
    source = serializers.CharField()
    reason = serializers.CharField()
    denials = serializers.JSONField()
    group = serializers.IntegerField(source="group_id", allow_null=True)
    role = serializers.CharField()
    trail_amount = PriceField(allow_null=True)
    position_effect = serializers.CharField()
    pending_change = serializers.JSONField(help_text="A change sent to the broker and not yet confirmed.")
    modifiable = serializers.BooleanField(source="is_modifiable")
    created_by = serializers.CharField(source="created_by.username", default=None)
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


class OrderGroupSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    side = serializers.CharField()
    stop_loss_price = PriceField(allow_null=True)
    stop_loss_ticks = serializers.IntegerField(allow_null=True)
    take_profit_price = PriceField(allow_null=True)
    take_profit_ticks = serializers.IntegerField(allow_null=True)
    native_oco = serializers.BooleanField()
    merged_into = serializers.IntegerField(source="merged_into_id", allow_null=True)
    detail = serializers.CharField()
    legs = OrderSerializer(many=True, source="legs_in_order")


class OrderDetailSerializer(OrderSerializer):
    events = OrderEventSerializer(many=True, source="events.all")
    group = serializers.SerializerMethodField(help_text="The bracket or OCO pair the order is part of, with its legs.")

    @extend_schema_field(OrderGroupSerializer(allow_null=True))
    def get_group(self, order: Any) -> dict[str, Any] | None:
        if order.group_id is None:
            return None
        group = order.group
        group.legs_in_order = list(group.legs.select_related("instrument", "created_by").order_by("pk"))
        return OrderGroupSerializer(group).data


class PositionSerializer(serializers.Serializer):
    """Serializes a `PositionMark` (a position with its last price)."""

    id = serializers.IntegerField(source="position.id")
    account = serializers.IntegerField(source="position.account_id")
    symbol = serializers.CharField(source="position.instrument.symbol")
    quantity = serializers.IntegerField(source="position.quantity")
    side = serializers.CharField(source="position.side")
    avg_price = PriceField(source="position.avg_price", instrument_source="position.instrument")
    last_price = PriceField(instrument_source="position.instrument", allow_null=True)
    unrealized_pnl = Money()
    realized_pnl = Money(source="position.realized_pnl")
    opened_at = serializers.DateTimeField(source="position.opened_at", allow_null=True)
    updated_at = serializers.DateTimeField(source="position.updated_at")


class FillSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order = serializers.IntegerField(source="order_id")
    client_order_id = serializers.CharField(source="order.client_order_id")
    account = serializers.IntegerField(source="account_id")
    symbol = serializers.CharField(source="instrument.symbol")
    broker_fill_id = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.IntegerField()
    price = PriceField()
    fee = Money()
    realized_pnl = Money()
    trade_date = serializers.DateField()
    occurred_at = serializers.DateTimeField()


class AccountSerializer(serializers.Serializer):
    """Serializes an `AccountValuation`: the account with its money figures and open positions."""

    id = serializers.IntegerField(source="account.id")
    name = serializers.CharField(source="account.name")
    firm = serializers.CharField(source="account.program.firm.name")
    program = serializers.CharField(source="account.program.name")
    phase = serializers.CharField(source="account.program.phase")
    broker = serializers.CharField(source="account.broker_connection.name")
    broker_account_id = serializers.CharField(source="account.broker_account_id")
    currency = serializers.CharField(source="account.currency")
    status = serializers.CharField(source="account.status")
    trading_state = serializers.CharField(source="account.trading_state")
    trading_state_reason = serializers.CharField(source="account.trading_state_reason")
    starting_balance = Money(source="account.starting_balance")
    balance = Money(source="account.balance")
    equity = Money()
    unrealized_pnl = Money()
    day_realized_pnl = Money()
    day_fees = Money()
    day_pnl = Money()
    trade_date = serializers.DateField()
    positions = PositionSerializer(many=True)
