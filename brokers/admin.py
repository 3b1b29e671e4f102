"""Staff management of instruments and broker connections. Credentials are write-only."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from brokers.models import BrokerConnection, Instrument
from brokers.services import check_connection_health


@admin.register(Instrument)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ["symbol", "root", "exchange", "tick_size", "tick_value", "size_class", "expires_on", "is_active"]
    list_filter = ["exchange", "asset_class", "size_class", "is_active"]
    search_fields = ["symbol", "root", "description"]


class BrokerConnectionForm(forms.ModelForm):
    new_credentials = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off"}),
        help_text='A JSON object, e.g. {"username": "...", "api_key": "..."}. Stored encrypted and never '
        "shown again; leave empty to keep the current credentials.",
    )

    class Meta:
        model = BrokerConnection
        fields = ["name", "kind", "environment", "is_enabled"]

    def clean_new_credentials(self) -> dict[str, Any] | None:
        raw = self.cleaned_data["new_credentials"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON ({exc.msg} at character {exc.pos}).", code="invalid_json"
            ) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Credentials must be a JSON object of names to values.", code="invalid_json")
        return value

    def save(self, commit: bool = True) -> BrokerConnection:
        connection = super().save(commit=False)
        if self.cleaned_data.get("new_credentials") is not None:
            connection.credentials = self.cleaned_data["new_credentials"]
        if commit:
            connection.save()
        return connection


@admin.register(BrokerConnection)
class BrokerConnectionAdmin(admin.ModelAdmin):
    form = BrokerConnectionForm
    list_display = ["name", "kind", "environment", "is_enabled", "health", "health_checked_at", "credentials_set"]
    list_filter = ["kind", "environment", "is_enabled", "health"]
    search_fields = ["name"]
    readonly_fields = ["credentials_set", "health", "health_checked_at", "last_error", "created_at", "updated_at"]
    actions = ["check_health"]

    @admin.display(boolean=True, description="Credentials set")
    def credentials_set(self, obj: BrokerConnection) -> bool:
        return obj.has_credentials

    @admin.action(description="Check health now")
    def check_health(self, request: HttpRequest, queryset: QuerySet[BrokerConnection]) -> None:
        for connection in queryset:
            health = check_connection_health(connection=connection)
            level = messages.SUCCESS if health == "ok" else messages.WARNING
            self.message_user(request, f"{connection}: {health}", level)
