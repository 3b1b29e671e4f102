"""Admin: signals and their per-account outcomes, read-only (they are history); failed signals
can be processed again."""

import json
import re

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest

from config.errors import DomainError
from orders.admin import ReadOnlyMixin
from signals_in import fanout
from signals_in.models import OutcomeStatus, Signal, SignalOutcome

# Keys whose values never reach a page: a body may carry the strategy's passphrase.
SECRET_KEYS = re.compile(r"pass(phrase|word)?|secret|token|key", re.IGNORECASE)
SECRET_LINE = re.compile(r"^(\s*[\w.-]*(?:pass(?:phrase|word)?|secret|token|key)[\w.-]*\s*[=:]\s*).*$", re.I | re.M)


def masked_body(raw: str) -> str:
    """The raw body with the values of secret-looking fields replaced."""
    try:
        data = json.loads(raw)
    except ValueError:
        return SECRET_LINE.sub(r"\1•••", raw)

    def mask(value: object) -> object:
        if isinstance(value, dict):
            return {k: "•••" if SECRET_KEYS.search(str(k)) else mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    return json.dumps(mask(data), indent=2, ensure_ascii=False)


class SignalOutcomeInline(ReadOnlyMixin, admin.TabularInline):
    model = SignalOutcome
    extra = 0
    fields = [
        "account",
        "status",
        "reason_code",
        "reason",
        "instrument",
        "quantity",
        "exit_order",
        "order",
        "latency_ms",
        "updated_at",
    ]
    readonly_fields = fields
    ordering = ["account__name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[SignalOutcome]:
        return super().get_queryset(request).select_related("account", "instrument", "order", "exit_order")


OUTCOME_COLUMNS = [
    (OutcomeStatus.ORDERED, "ordered"),
    (OutcomeStatus.WAITING_EXIT, "waiting"),
    (OutcomeStatus.DENIED, "denied"),
    (OutcomeStatus.SKIPPED, "skipped"),
    (OutcomeStatus.FAILED, "failed"),
]


@admin.register(Signal)
class SignalAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["id", "received_at", "strategy", "source", "status", "action", "ticker", "quantity", "outcomes"]
    list_filter = ["status", "source", "action", "strategy"]
    search_fields = ["ticker", "external_id", "strategy__name"]
    date_hierarchy = "received_at"
    list_select_related = ["strategy"]
    inlines = [SignalOutcomeInline]
    actions = ["process_again"]
    exclude = ["raw_body"]  # shown masked instead

    def get_readonly_fields(self, request: HttpRequest, obj: Signal | None = None) -> list[str]:
        return [f.name for f in Signal._meta.fields if f.name != "raw_body"] + ["body"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Signal]:
        counts = {name: Count("outcomes", filter=Q(outcomes__status=status)) for status, name in OUTCOME_COLUMNS}
        return super().get_queryset(request).annotate(**counts)

    @admin.display(description="Outcomes")
    def outcomes(self, signal: Signal) -> str:
        parts = [f"{getattr(signal, name)} {name}" for _, name in OUTCOME_COLUMNS if getattr(signal, name, 0)]
        return ", ".join(parts) or "-"

    @admin.display(description="Body (secrets masked)")
    def body(self, signal: Signal) -> str:
        return masked_body(signal.raw_body)

    @admin.action(description="Process again (failed signals: the accounts that failed are tried again)")
    def process_again(self, request: HttpRequest, queryset: QuerySet[Signal]) -> None:
        queued = 0
        for signal in queryset:
            try:
                fanout.reprocess_signal(signal_id=signal.pk)
            except DomainError as exc:
                self.message_user(request, f"Signal #{signal.pk}: {exc.detail}", messages.WARNING)
                continue
            queued += 1
        if queued:
            self.message_user(request, f"{queued} signal(s) queued to be processed again.")
