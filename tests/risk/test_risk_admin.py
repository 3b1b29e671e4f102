"""The risk admin: every page renders for staff, programs edit their rules inline, and what the
monitor writes (risk state, closed days, violations) can be looked at but not changed."""

from decimal import Decimal

import pytest
from django.contrib import admin
from django.db import models
from django.test import RequestFactory

from accounts.models import Program
from risk.models import (
    AccountDay,
    AccountRiskState,
    AccountRuleOverride,
    ContractLimit,
    MarketClose,
    NewsRelease,
    ProgramRules,
    ScalingTier,
    TradingWindow,
    Violation,
)
from tests import factories
from tests.conftest import admin_url as url

pytestmark = pytest.mark.django_db

RISK_ADMIN_MODELS = [
    ProgramRules,
    AccountRuleOverride,
    MarketClose,
    NewsRelease,
    AccountRiskState,
    AccountDay,
    Violation,
]
MONITOR_MODELS = [AccountRiskState, AccountDay, Violation]


@pytest.fixture
def rows() -> dict[type[models.Model], models.Model]:
    """One row of every risk model, each from its factory and each a valid row."""
    rules = factories.ProgramRulesFactory(program__firm__name="Topstep", program__name="50K Trading Combine")
    program = rules.program
    made = [
        rules,
        factories.ContractLimitFactory(program=program),
        factories.ScalingTierFactory(program=program),
        factories.TradingWindowFactory(program=program),
        factories.AccountRuleOverrideFactory(account__name="Alice 50K"),
        factories.MarketCloseFactory(),
        factories.NewsReleaseFactory(),
        factories.AccountRiskStateFactory(account__name="Alice 50K risk"),
        factories.AccountDayFactory(account__name="Alice 50K day"),
        factories.ViolationFactory(account__name="Bob 50K"),
    ]
    for row in made:
        row.full_clean()
    return {type(row): row for row in made}


@pytest.mark.parametrize("model", RISK_ADMIN_MODELS, ids=lambda m: m.__name__)
def test_risk_admin_changelist_and_change_page_render_for_staff(staff_client, rows, model):
    changelist = staff_client.get(url(model, "changelist"))
    change = staff_client.get(url(model, "change", rows[model].pk))

    assert changelist.status_code == 200
    assert list(changelist.context["cl"].result_list) == [rows[model]]
    assert change.status_code == 200


@pytest.mark.parametrize(
    "model", [ProgramRules, AccountRuleOverride, MarketClose, NewsRelease], ids=lambda m: m.__name__
)
def test_rules_and_calendar_admin_add_page_renders(staff_client, model):
    assert staff_client.get(url(model, "add")).status_code == 200


@pytest.mark.parametrize("model", MONITOR_MODELS, ids=lambda m: m.__name__)
def test_monitor_rows_are_read_only_in_the_admin(staff_client, superuser, rows, model):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    model_admin = admin.site._registry[model]
    row = rows[model]

    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)
    assert staff_client.get(url(model, "add")).status_code == 403
    change = staff_client.get(url(model, "change", row.pk))
    assert change.status_code == 200 and 'name="_save"' not in change.content.decode()
    assert staff_client.post(url(model, "change", row.pk), {}).status_code == 403
    assert staff_client.post(url(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model.objects.filter(pk=row.pk).exists()


def test_violation_changelist_filters_and_search(staff_client, rows):
    violation = rows[Violation]

    filtered = staff_client.get(
        url(Violation, "changelist"),
        {"rule": "drawdown", "severity": "hard", "action": "breached", "is_active__exact": "1"},
    )
    searched = staff_client.get(url(Violation, "changelist"), {"q": "Bob"})
    missed = staff_client.get(url(Violation, "changelist"), {"q": "Alice"})

    assert list(filtered.context["cl"].result_list) == [violation]
    assert list(searched.context["cl"].result_list) == [violation]
    assert list(missed.context["cl"].result_list) == []


def test_program_rules_search_by_firm_name(staff_client, rows):
    found = staff_client.get(url(ProgramRules, "changelist"), {"q": "Topstep"})
    missed = staff_client.get(url(ProgramRules, "changelist"), {"q": "Apex"})

    assert list(found.context["cl"].result_list) == [rows[ProgramRules]]
    assert list(missed.context["cl"].result_list) == []


def test_program_change_page_has_the_rule_inlines(staff_client, rows):
    program = rows[ProgramRules].program

    response = staff_client.get(url(Program, "change", program.pk))

    assert response.status_code == 200
    inlines = {
        f.opts.model: [form.instance for form in f.formset.initial_forms]
        for f in response.context["inline_admin_formsets"]
    }
    assert inlines == {model: [rows[model]] for model in (ProgramRules, ContractLimit, ScalingTier, TradingWindow)}


def inline_management(prefix: str, *, total: int, initial: int) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def test_program_admin_saves_rule_edits_made_inline_with_history(staff_client, superuser, rows):
    rules = rows[ProgramRules]
    program = rules.program
    tier, limit, window = rows[ScalingTier], rows[ContractLimit], rows[TradingWindow]
    data = {
        "firm": program.firm_id,
        "name": program.name,
        "phase": program.phase,
        "starting_balance": "50000",
        "currency": "USD",
        "is_active": "on",
        "notes": "",
        **inline_management("rules", total=1, initial=1),
        "rules-0-id": rules.pk,
        "rules-0-program": program.pk,
        "rules-0-daily_loss_mode": "soft",
        "rules-0-daily_loss_limit": "1000",
        "rules-0-drawdown_kind": "eod_trailing",
        "rules-0-drawdown_amount": "2000",
        "rules-0-drawdown_lock": "starting_balance",
        "rules-0-max_contracts": "4",
        "rules-0-micro_weight": "0.1",
        "rules-0-time_zone": "America/Chicago",
        "rules-0-flat_by": "15:10",
        "rules-0-automation_allowed": "unknown",
        "rules-0-notes": "DLL applies: routed through Tradovate.",
        **inline_management("contract_limits", total=1, initial=1),
        "contract_limits-0-id": limit.pk,
        "contract_limits-0-program": program.pk,
        "contract_limits-0-root": "CL",
        "contract_limits-0-max_contracts": "2",
        **inline_management("scaling_tiers", total=2, initial=1),
        "scaling_tiers-0-id": tier.pk,
        "scaling_tiers-0-program": program.pk,
        "scaling_tiers-0-threshold": "1500",
        "scaling_tiers-0-max_contracts": "3",
        "scaling_tiers-1-program": program.pk,
        "scaling_tiers-1-threshold": "2000",
        "scaling_tiers-1-max_contracts": "5",
        **inline_management("trading_windows", total=1, initial=1),
        "trading_windows-0-id": window.pk,
        "trading_windows-0-program": program.pk,
        "trading_windows-0-weekday": "0",
        "trading_windows-0-starts_at": "08:30",
        "trading_windows-0-ends_at": "15:00",
    }

    response = staff_client.post(url(Program, "change", program.pk), data)

    errors = response.context and [f.formset.errors for f in response.context["inline_admin_formsets"]]
    assert response.status_code == 302, errors
    rules.refresh_from_db()
    assert (rules.daily_loss_mode, rules.daily_loss_limit, rules.max_contracts) == ("soft", Decimal("1000"), 4)
    assert rules.automation_allowed is None and rules.allowed_roots is None and rules.scaling_basis is None
    assert [(t.threshold, t.max_contracts) for t in program.scaling_tiers.all()] == [
        (Decimal("1500"), 3),
        (Decimal("2000"), 5),
    ]
    latest = rules.history.order_by("-history_date", "-history_id").first()
    assert (latest.max_contracts, latest.history_user) == (4, superuser)


def test_account_pages_show_headroom_and_save_an_override(staff_client, alice_account, paper, commit):
    from accounts.models import TradingAccount
    from orders import services as order_services
    from orders.domain import OrderIntent, OrderSide, OrderSource, OrderType

    ProgramRules.objects.create(program=alice_account.program, drawdown_kind="static", drawdown_amount=Decimal("2000"))
    with commit():
        order_services.submit_order(
            account=alice_account,
            intent=OrderIntent(symbol="MES", side=OrderSide.BUY, quantity=2, order_type=OrderType.MARKET),
            source=OrderSource.API,
        )
    with commit():
        paper.price("MESZ6", "4990.00")  # -20 on 2 MES, fees 0.74: equity 49,899.26 above a 48,000 floor

    listing = staff_client.get(url(TradingAccount, "changelist")).content.decode()
    assert "column-drawdown_room" in listing and "1,899.26 (94.96%)" in listing
    page = staff_client.get(url(TradingAccount, "change", alice_account.pk)).content.decode()
    assert "drawdown: limit 48,000.00" in page

    form = {
        "name": alice_account.name,
        "program": alice_account.program_id,
        "broker_connection": alice_account.broker_connection_id,
        "broker_account_id": alice_account.broker_account_id,
        "starting_balance": "50000",
        "status": "active",
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
        "rule_override-TOTAL_FORMS": "1",
        "rule_override-INITIAL_FORMS": "0",
        "rule_override-MIN_NUM_FORMS": "0",
        "rule_override-MAX_NUM_FORMS": "1",
        "rule_override-0-max_contracts": "3",
        "rule_override-0-reason": "Trader asked for a tighter cap.",
    }
    response = staff_client.post(url(TradingAccount, "change", alice_account.pk), form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    override = AccountRuleOverride.objects.get(account=alice_account)
    assert (override.max_contracts, override.reason) == (3, "Trader asked for a tighter cap.")
