"""Admin: the trade copier. Links are edited here; every copier step is a read-only record.
Resuming a quarantined link and checking links now are admin actions that call signals_in.copier."""

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from config.errors import DomainError
from signals_in import copier
from signals_in.copying import validate_symbol_map
from signals_in.models import CopierLink, CopierStatus, CopyAction


class CopierLinkForm(forms.ModelForm):
    class Meta:
        model = CopierLink
        fields = [
            "leader",
            "follower",
            "is_enabled",
            "ratio",
            "max_quantity",
            "symbol_map",
            "on_drift",
            "drift_tolerance",
        ]

    def clean_symbol_map(self) -> dict[str, str]:
        try:
            return validate_symbol_map(self.cleaned_data.get("symbol_map"))
        except DomainError as exc:
            raise ValidationError(exc.detail, code=exc.code) from None

    def clean_ratio(self) -> Any:
        ratio = self.cleaned_data.get("ratio")
        if ratio is not None and ratio <= 0:
            raise ValidationError("The ratio must be above zero, e.g. 0.5 to copy half the leader's size.")
        return ratio

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        leader, follower = cleaned.get("leader"), cleaned.get("follower")
        if leader is not None and follower is not None:
            try:
                copier.check_link_allowed(leader_id=leader.pk, follower_id=follower.pk, link_id=self.instance.pk)
            except DomainError as exc:
                self.add_error("follower", ValidationError(exc.detail, code=exc.code))
        return cleaned


class CopyActionInline(admin.TabularInline):
    model = CopyAction
    extra = 0
    fields = [
        "created_at",
        "kind",
        "instrument",
        "desired_quantity",
        "actual_quantity",
        "order",
        "leader_fill",
        "latency_ms",
        "slippage_ticks",
        "detail",
    ]
    readonly_fields = fields
    ordering = ["-created_at", "-id"]
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CopierLink)
class CopierLinkAdmin(admin.ModelAdmin):
    form = CopierLinkForm
    list_display = [
        "__str__",
        "leader",
        "follower",
        "ratio",
        "max_quantity",
        "on_drift",
        "is_enabled",
        "status",
        "last_checked_at",
        "drift",
    ]
    list_filter = ["status", "is_enabled", "on_drift", "leader"]
    search_fields = ["leader__name", "follower__name"]
    list_select_related = ["leader", "follower"]
    readonly_fields = ["status", "status_reason", "last_checked_at", "created_at", "updated_at"]
    inlines = [CopyActionInline]
    actions = ["resume_selected", "check_selected"]

    @admin.display(description="Drift now")
    def drift(self, link: CopierLink) -> str:
        # A few small queries per row: fine for the handful of links a desk runs.
        found = copier.drift_now(link)
        if not found:
            return "in line"
        return "; ".join(f"{d.instrument.symbol} wanted {d.desired:+d}, has {d.actual:+d}" for d in found)

    @admin.action(description="Resume (un-quarantine) selected links")
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[CopierLink]) -> None:
        quarantined = list(queryset.filter(status=CopierStatus.QUARANTINED))
        for link in quarantined:
            copier.resume_link(link=link, actor=request.user)
        self.message_user(request, f"{len(quarantined)} link(s) resumed; they copy again from their next check.")

    @admin.action(description="Check selected links now")
    def check_selected(self, request: HttpRequest, queryset: QuerySet[CopierLink]) -> None:
        steps: list[CopyAction] = []
        checked = 0
        for link in queryset:
            if link.status != CopierStatus.ACTIVE or not link.is_enabled:
                state = "switched off" if not link.is_enabled else link.get_status_display().lower()
                self.message_user(request, f"{link}: not checked, the link is {state}.", messages.WARNING)
                continue
            steps += copier.check_link(link_id=link.pk)
            checked += 1
        summary = "; ".join(f"{step.link.follower}: {step.get_kind_display().lower()}" for step in steps)
        self.message_user(request, f"Checked {checked} link(s): {summary or 'every follower is in line'}.")


@admin.register(CopyAction)
class CopyActionAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "link",
        "kind",
        "instrument",
        "desired_quantity",
        "actual_quantity",
        "order",
        "latency_ms",
        "slippage_ticks",
        "detail",
    ]
    list_filter = ["kind", "link__leader", "link__follower", "instrument__root", "created_at"]
    search_fields = ["detail", "order__client_order_id", "link__leader__name", "link__follower__name"]
    list_select_related = ["link__leader", "link__follower", "instrument", "order"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff
