"""The paper venue's books, read-only except its contract list (fees, slippage, liquidity)."""

from django.contrib import admin
from django.http import HttpRequest

from brokers.paper.models import VenueAccount, VenueContract, VenueFill, VenueOrder, VenuePosition


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(VenueContract)
class VenueContractAdmin(admin.ModelAdmin):
    list_display = [
        "symbol",
        "tick_size",
        "tick_value",
        "start_price",
        "fee_per_contract",
        "slippage_ticks",
        "max_fill_size",
        "is_listed",
    ]
    list_editable = ["fee_per_contract", "slippage_ticks", "max_fill_size", "is_listed"]
    search_fields = ["symbol"]


@admin.register(VenueAccount)
class VenueAccountAdmin(ReadOnlyAdmin):
    list_display = ["ref", "cash", "stream_key", "created_at"]
    search_fields = ["ref"]


@admin.register(VenueOrder)
class VenueOrderAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "account",
        "client_order_id",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "status",
        "filled_quantity",
        "avg_fill_price",
        "updated_at",
    ]
    list_filter = ["status", "order_type", "symbol"]
    search_fields = ["client_order_id", "account__ref"]


@admin.register(VenueFill)
class VenueFillAdmin(ReadOnlyAdmin):
    list_display = ["fill_id", "account", "symbol", "side", "quantity", "price", "fee", "executed_at"]
    list_filter = ["symbol"]
    search_fields = ["fill_id", "account__ref"]


@admin.register(VenuePosition)
class VenuePositionAdmin(ReadOnlyAdmin):
    list_display = ["account", "symbol", "quantity", "avg_price"]
