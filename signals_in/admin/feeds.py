"""Admin: prediction feeds with their health and recent polls; headers are write-only."""

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest

from signals_in import feeds
from signals_in.models import FeedPoll, PredictionFeed

RECENT_POLLS = 20


def _formfield(field: models.Field, **kwargs: Any) -> forms.Field | None:
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class PredictionFeedForm(forms.ModelForm):
    new_headers = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Request headers as a JSON object, e.g. {"Authorization": "Bearer ..."}. Stored encrypted and '
        "never shown again; leave empty to keep the current headers, {} to remove them.",
    )

    class Meta:
        model = PredictionFeed
        formfield_callback = _formfield
        fields = [
            "name",
            "url",
            "strategy",
            "is_enabled",
            "poll_interval_seconds",
            "timeout_seconds",
            "min_confidence",
            "confidence_sizing",
        ]

    def clean_new_headers(self) -> dict[str, str] | None:
        raw = self.cleaned_data["new_headers"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(
                f"Not valid JSON ({exc.msg} at character {exc.pos}).", code="invalid_json"
            ) from exc
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("Headers must be a JSON object of names to text values.", code="invalid_json")
        return value

    def clean_min_confidence(self) -> Any:
        value = self.cleaned_data["min_confidence"]
        if value is not None and not 0 <= value <= 1:
            raise forms.ValidationError("A confidence is from 0 to 1.", code="out_of_range")
        return value

    def clean_timeout_seconds(self) -> Any:
        value = self.cleaned_data["timeout_seconds"]
        if value is not None and value <= 0:
            raise forms.ValidationError("The timeout must be above zero.", code="out_of_range")
        return value

    def save(self, commit: bool = True) -> PredictionFeed:
        feed = super().save(commit=False)
        if self.cleaned_data.get("new_headers") is not None:
            feed.headers = self.cleaned_data["new_headers"]
        if commit:
            feed.save()
        return feed


class RecentPollsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[FeedPoll]:
        polls = super().get_queryset()
        return polls.filter(pk__in=list(polls.order_by("-started_at").values_list("pk", flat=True)[:RECENT_POLLS]))


class FeedPollInline(admin.TabularInline):
    model = FeedPoll
    formset = RecentPollsFormSet
    verbose_name_plural = f"Recent polls (last {RECENT_POLLS})"
    fields = [
        "started_at",
        "ok",
        "http_status",
        "duration_ms",
        "received",
        "accepted",
        "duplicates",
        "skipped",
        "error",
    ]
    readonly_fields = fields
    ordering = ["-started_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(PredictionFeed)
class PredictionFeedAdmin(admin.ModelAdmin):
    form = PredictionFeedForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "strategy",
        "is_enabled",
        "healthy",
        "poll_interval_seconds",
        "last_polled_at",
        "last_ok_at",
        "consecutive_failures",
        "last_error",
    ]
    list_filter = ["is_enabled", "strategy"]
    search_fields = ["name", "url"]
    readonly_fields = [
        "header_names",
        "last_polled_at",
        "last_ok_at",
        "last_error",
        "consecutive_failures",
        "created_at",
    ]
    inlines = [FeedPollInline]
    actions = ["poll_now"]

    @admin.display(boolean=True, description="Healthy")
    def healthy(self, feed: PredictionFeed) -> bool | None:
        if feed.last_polled_at is None:
            return None
        return feed.consecutive_failures == 0

    @admin.display(description="Headers set")
    def header_names(self, feed: PredictionFeed) -> str:
        # The names only: the values are secrets.
        return ", ".join(sorted(feed.headers or {})) or "none"

    @admin.action(description="Poll now")
    def poll_now(self, request: HttpRequest, queryset: QuerySet[PredictionFeed]) -> None:
        for feed in queryset:
            poll = feeds.poll_feed_now(feed_id=feed.pk)
            if poll is None:
                self.message_user(request, f"{feed}: being polled by a worker right now.", messages.WARNING)
            elif poll.ok:
                self.message_user(
                    request,
                    f"{feed}: {poll.received} received, {poll.accepted} new, {poll.duplicates} duplicates, "
                    f"{poll.skipped} skipped.",
                    messages.SUCCESS,
                )
            else:
                self.message_user(request, f"{feed}: {poll.error}", messages.ERROR)
