"""Staff management of firms, programs, accounts and access; actions call services."""

from django.conf import settings
from django.contrib import admin, messages
from django.db import models
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from simple_history.admin import SimpleHistoryAdmin

from accounts.models import AccountMembership, Firm, Program, TradingAccount
from accounts.services import grant_account_access, revoke_account_access
from config.errors import DomainError
from orders.models import ReconciliationOutcome, ReconciliationRun
from orders.reconciliation import request_reconciliation
from orders.services import flatten_account
from risk.admin import PROGRAM_RULE_INLINES, AccountRuleOverrideInline
from risk.selectors import RiskAssessment, assess_account, assess_accounts
from risk.services import halt_account, resume_account


@admin.register(Firm)
class FirmAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ["name", "website", "created_at"]
    search_fields = ["name"]


@admin.register(Program)
class ProgramAdmin(SimpleHistoryAdmin):
    list_display = ["name", "firm", "phase", "starting_balance", "currency", "is_active"]
    list_filter = ["firm", "phase", "is_active"]
    search_fields = ["name", "firm__name"]
    inlines = PROGRAM_RULE_INLINES


class MembershipInline(admin.TabularInline):
    model = AccountMembership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "can_trade", "created_at"]
    readonly_fields = ["created_at"]


@admin.register(TradingAccount)
class TradingAccountAdmin(SimpleHistoryAdmin):
    list_display = [
        "name",
        "program",
        "broker_connection",
        "broker_account_id",
        "balance",
        "status",
        "trading_state",
        "trading_state_reason",
        "drawdown_room",
        "daily_loss_room",
        "blocked_until",
    ]
    list_filter = ["status", "trading_state", "program__firm", "program", "broker_connection"]
    search_fields = ["name", "broker_account_id", "memberships__user__username"]
    list_select_related = ["program__firm", "broker_connection"]
    readonly_fields = [
        "balance",
        "trading_state",
        "trading_state_reason",
        "risk_headroom",
        "last_reconciliation",
        "created_at",
        "updated_at",
    ]
    inlines = [MembershipInline, AccountRuleOverrideInline]
    actions = ["flatten_selected", "halt_selected", "resume_selected", "reconcile_selected"]

    def get_changelist_instance(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        # One bulk assessment for the page instead of ~10 queries per row.
        changelist = super().get_changelist_instance(request)
        for assessment in assess_accounts(list(changelist.result_list)):
            assessment.account._risk = assessment  # type: ignore[attr-defined]
        return changelist

    @staticmethod
    def _room(account: TradingAccount, rule: str) -> str:
        assessment: RiskAssessment | None = getattr(account, "_risk", None)
        headroom = assessment.headroom_for(rule) if assessment else None
        if headroom is None:
            return "-"
        return f"{headroom.room:,.2f} ({headroom.percent}%)" + (" BREACHED" if headroom.breached else "")

    @admin.display(description="Room above drawdown floor")
    def drawdown_room(self, account: TradingAccount) -> str:
        return self._room(account, "drawdown")

    @admin.display(description="Room under daily loss limit")
    def daily_loss_room(self, account: TradingAccount) -> str:
        return self._room(account, "daily_loss")

    @admin.display(description="Blocked until (soft limit)")
    def blocked_until(self, account: TradingAccount) -> str:
        assessment: RiskAssessment | None = getattr(account, "_risk", None)
        until = assessment.state.blocked_until if assessment else None
        return f"{until:%Y-%m-%d %H:%M} UTC" if until else "-"

    @admin.display(description="Headroom per rule")
    def risk_headroom(self, account: TradingAccount) -> str:
        if not account.pk:
            return "-"
        assessment = assess_account(account)
        lines = [
            f"{h.rule}: limit {h.limit:,.2f}, now {h.observed:,.2f}, room {h.room:,.2f} ({h.percent}%)"
            + (" BREACHED" if h.breached else "")
            for h in assessment.headroom
        ]
        if assessment.state.blocked_until:
            lines.append(
                f"blocked until {assessment.state.blocked_until:%Y-%m-%d %H:%M} UTC: {assessment.state.blocked_reason}"
            )
        return "\n".join(lines) or "No loss or contract limits."

    @admin.display(description="Last reconciliation with the broker")
    def last_reconciliation(self, account: TradingAccount) -> str:
        run = ReconciliationRun.objects.filter(account=account).first() if account.pk else None
        if run is None:
            return "Never reconciled."
        text = f"{run.started_at:%Y-%m-%d %H:%M:%S} UTC ({run.trigger}): {run.get_outcome_display()}"
        if run.discrepancies:
            text += f", {run.discrepancies} discrepancies"
        text += f". {run.error}" if run.error else "."
        max_age = settings.RECONCILIATION_MAX_AGE
        good = ReconciliationRun.objects.filter(account=account).exclude(outcome=ReconciliationOutcome.FAILED).first()
        if max_age is not None and (good is None or good != run or timezone.now() - good.started_at > max_age):
            text += " New risk is blocked (only reducing orders pass) until a reconciliation passes."
        return text

    def save_model(self, request: HttpRequest, obj: TradingAccount, form: object, change: bool) -> None:
        # Balance moves only through fills; a new account starts at its starting balance.
        if not change:
            obj.balance = obj.starting_balance
        super().save_model(request, obj, form, change)
        if not change:
            # A new account may only reduce exposure until compared with its broker: do it now.
            request_reconciliation(accounts=[obj])

    def save_formset(self, request: HttpRequest, form: object, formset: object, change: bool) -> None:
        if formset.model is not AccountMembership:  # type: ignore[attr-defined]
            super().save_formset(request, form, formset, change)
            return
        # Access changes go through the services so open live connections are told at once.
        instances = formset.save(commit=False)  # type: ignore[attr-defined]
        for membership in formset.deleted_objects:  # type: ignore[attr-defined]
            revoke_account_access(membership=membership)
        for membership in instances:
            grant_account_access(user=membership.user, account=membership.account, can_trade=membership.can_trade)

    @admin.action(description="Flatten: cancel working orders and close all positions")
    def flatten_selected(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        for account in queryset:
            try:
                result = flatten_account(account=account, actor=request.user)
            except DomainError as exc:
                self.message_user(request, f"{account}: {exc.detail}", messages.ERROR)
                continue
            self.message_user(
                request,
                f"{account}: {len(result.canceled)} orders cancelled, {len(result.closing)} closing orders sent.",
            )

    @admin.action(description="Halt trading (closing positions stays possible)")
    def halt_selected(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        for account in queryset:
            halt_account(account=account, reason=f"Halted by {request.user.get_username()}.", actor=request.user)
        self.message_user(request, f"{queryset.count()} account(s) halted.")

    @admin.action(description="Reconcile now with the broker")
    def reconcile_selected(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        count = request_reconciliation(accounts=queryset)
        self.message_user(request, f"Reconciliation queued for {count} account(s); see Reconciliation runs.")

    @admin.action(description="Resume trading")
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[TradingAccount]) -> None:
        for account in queryset:
            resume_account(account=account, actor=request.user)
        self.message_user(request, f"{queryset.count()} account(s) resumed.")


@admin.register(AccountMembership)
class AccountMembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "account", "can_trade", "created_at"]
    list_filter = ["can_trade", "account__program__firm"]
    search_fields = ["user__username", "account__name"]
    autocomplete_fields = ["user", "account"]

    def save_model(self, request: HttpRequest, obj: AccountMembership, form: object, change: bool) -> None:
        obj.pk = grant_account_access(user=obj.user, account=obj.account, can_trade=obj.can_trade).pk

    def delete_model(self, request: HttpRequest, obj: AccountMembership) -> None:
        revoke_account_access(membership=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AccountMembership]) -> None:
        for membership in queryset:
            revoke_account_access(membership=membership)
