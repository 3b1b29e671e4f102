"""Orders, fills and positions in the admin: read-only records; cancelling goes through services."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from config.errors import DomainError
from orders.models import (
    Discrepancy,
    Fill,
    Order,
    OrderEvent,
    OrderGroup,
    PlanEvent,
    Position,
    PositionPlan,
    ReconciliationRun,
)
from orders.services import request_cancel


class ReadOnlyMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class OrderEventInline(ReadOnlyMixin, admin.TabularInline):
    model = OrderEvent
    extra = 0
    fields = ["occurred_at", "type", "from_status", "to_status", "detail", "actor", "payload"]
    readonly_fields = fields
    ordering = ["created_at", "id"]


class FillInline(ReadOnlyMixin, admin.TabularInline):
    model = Fill
    extra = 0
    fields = ["occurred_at", "broker_fill_id", "side", "quantity", "price", "fee", "realized_pnl", "trade_date"]
    readonly_fields = fields


@admin.register(Order)
class OrderAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "account",
        "instrument",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "stop_price",
        "status",
        "filled_quantity",
        "avg_fill_price",
        "source",
        "role",
        "group",
        "created_by",
    ]
    list_filter = ["status", "source", "order_type", "side", "role", "account__program__firm", "account"]
    search_fields = ["client_order_id", "broker_order_id", "account__name", "instrument__symbol"]
    list_select_related = ["account", "instrument", "created_by"]
    date_hierarchy = "created_at"
    inlines = [FillInline, OrderEventInline]
    actions = ["cancel_selected"]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff

    @admin.action(description="Cancel selected working orders")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        for order in queryset:
            try:
                request_cancel(order=order, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"Order {order.pk}: {exc.detail}", messages.WARNING)

    def get_actions(self, request: HttpRequest) -> dict:  # type: ignore[type-arg]
        # Read-only admins normally hide actions; cancelling is a service call, not an edit.
        actions = super().get_actions(request)
        if request.user.has_perm("orders.view_order"):
            actions.setdefault("cancel_selected", self.get_action("cancel_selected"))
        return actions


class LegInline(ReadOnlyMixin, admin.TabularInline):
    model = Order
    fk_name = "group"
    extra = 0
    fields = ["role", "client_order_id", "side", "quantity", "order_type", "limit_price", "stop_price", "status"]
    readonly_fields = fields
    ordering = ["pk"]
    show_change_link = True


@admin.register(OrderGroup)
class OrderGroupAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Brackets and OCO pairs with their legs; an active bracket is its position's context."""

    list_display = ["id", "created_at", "account", "instrument", "kind", "side", "status", "native_oco", "detail"]
    list_filter = ["kind", "status", "native_oco", "account__program__firm", "account"]
    search_fields = ["account__name", "instrument__symbol", "legs__client_order_id"]
    list_select_related = ["account", "instrument"]
    inlines = [LegInline]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff


@admin.register(Fill)
class FillAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = [
        "occurred_at",
        "account",
        "instrument",
        "side",
        "quantity",
        "price",
        "fee",
        "realized_pnl",
        "trade_date",
        "broker_fill_id",
    ]
    list_filter = ["trade_date", "account", "instrument__root"]
    search_fields = ["broker_fill_id", "order__client_order_id"]
    list_select_related = ["account", "instrument"]


@admin.register(Position)
class PositionAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["account", "instrument", "quantity", "avg_price", "realized_pnl", "opened_at", "updated_at"]
    list_filter = ["account", "instrument__root"]
    list_select_related = ["account", "instrument"]


class PlanEventInline(ReadOnlyMixin, admin.TabularInline):
    model = PlanEvent
    extra = 0
    fields = ["occurred_at", "kind", "detail", "price", "order", "payload"]
    readonly_fields = fields
    ordering = ["occurred_at", "id"]


@admin.register(PositionPlan)
class PositionPlanAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Plans are started and cancelled by traders (API) or programs; staff read them here."""

    list_display = [
        "id",
        "created_at",
        "account",
        "instrument",
        "side",
        "status",
        "source",
        "entry_price",
        "initial_stop_price",
        "initial_quantity",
        "best_price",
        "exits_done",
        "breakeven_done",
        "trailing",
    ]
    list_filter = ["status", "source", "side", "account__program__firm", "account"]
    search_fields = ["account__name", "instrument__symbol"]
    list_select_related = ["account", "instrument"]
    inlines = [PlanEventInline]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff


# -- Reconciliation with the broker -----------------------------------------------------------


class DiscrepancyInline(ReadOnlyMixin, admin.TabularInline):
    model = Discrepancy
    extra = 0
    fields = ["kind", "symbol", "order", "detail", "correction", "payload"]
    readonly_fields = fields


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["started_at", "account", "trigger", "outcome", "discrepancies", "error", "finished_at"]
    list_filter = ["outcome", "trigger", "account"]
    search_fields = ["account__name", "account__broker_account_id", "error"]
    list_select_related = ["account"]
    date_hierarchy = "started_at"
    inlines = [DiscrepancyInline]

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff
