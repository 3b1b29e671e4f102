"""Admin: automation rules (validated by the pure schema, created from templates) and their decisions."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from signals_in.models import AutomationRule, RuleDecision
from signals_in.rule_templates import RULE_TEMPLATES, template_choices
from signals_in.rules import InvalidRule, parse_rule


def template_links() -> str:
    add = reverse("admin:signals_in_automationrule_add")
    return format_html(
        "Start from a template: {}. Choosing one here with conditions and action left empty fills them in.",
        format_html_join(
            ", ", '<a href="{}?template={}">{}</a>', ((add, key, t["label"]) for key, t in RULE_TEMPLATES.items())
        ),
    )


class AutomationRuleForm(forms.ModelForm):
    template = forms.ChoiceField(choices=[("", "none"), *template_choices()], required=False)

    class Meta:
        model = AutomationRule
        fields = [
            "name",
            "is_enabled",
            "template",
            "priority",
            "cooldown_seconds",
            "strategy",
            "accounts",
            "conditions",
            "action",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].required = False  # filled from the template, or refused below
        self.fields["template"].help_text = template_links()
        self.fields["conditions"].help_text = (
            'e.g. {"signal": {"action": "buy", "ticker_root": "MNQ"}, "position": "flat", '
            '"time_window": {"start": "08:30", "end": "15:00", "tz": "America/Chicago", "days": [0,1,2,3,4]}} '
            "(see signals_in/rules.py for every field)."
        )
        self.fields["action"].help_text = (
            'e.g. {"kind": "open", "side": "buy", "quantity": 1, "stop_loss_ticks": 20, "take_profit_ticks": 40}; '
            "kinds: open, scale_in, close_all, eod_close."
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        template = RULE_TEMPLATES.get(data.get("template") or "")
        if template is not None:
            if not data.get("conditions") and not data.get("action"):
                data["conditions"], data["action"] = template["conditions"], template["action"]
        if "conditions" not in data or "action" not in data:
            return data  # the JSON itself was refused; its error is already on the field
        data["conditions"] = data["conditions"] or {}
        if not data.get("action"):
            self.add_error("action", forms.ValidationError("An action is required.", code="required"))
            return data
        try:
            definition = parse_rule(data["conditions"], data["action"])
        except InvalidRule as refused:
            for problem in refused.problems:
                part, _, rest = problem.field.partition(".")
                self.add_error(part, forms.ValidationError(f"{rest or part}: {problem.message}", code=problem.code))
            return data
        if definition.trigger == "signal" and data.get("strategy") is None:
            self.add_error(
                "strategy",
                forms.ValidationError(
                    "A rule with a signal condition needs the strategy whose signals it takes.", code="required"
                ),
            )
        if data.get("strategy") is None and not data.get("accounts"):
            self.add_error(
                "accounts",
                forms.ValidationError(
                    "Give a strategy (its subscribers) or accounts: the rule has no scope.", code="required"
                ),
            )
        return data


@admin.register(AutomationRule)
class AutomationRuleAdmin(admin.ModelAdmin):
    form = AutomationRuleForm
    list_display = ["name", "is_enabled", "priority", "trigger", "kind", "strategy", "cooldown_seconds", "template"]
    list_filter = ["is_enabled", "strategy", "template"]
    search_fields = ["name"]
    filter_horizontal = ["accounts"]
    readonly_fields = ["created_at", "updated_at"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        template = RULE_TEMPLATES.get(request.GET.get("template", ""))
        if template is not None:
            initial.update(
                template=request.GET["template"],
                name=template["label"],
                priority=template["priority"],
                cooldown_seconds=template["cooldown_seconds"],
                conditions=template["conditions"],
                action=template["action"],
            )
        return initial

    @admin.display(description="Runs on")
    def trigger(self, rule: AutomationRule) -> str:
        return "signal" if isinstance(rule.conditions, dict) and "signal" in rule.conditions else "schedule"

    @admin.display(description="Action")
    def kind(self, rule: AutomationRule) -> str:
        return str(rule.action.get("kind", "?")) if isinstance(rule.action, dict) else "?"


@admin.register(RuleDecision)
class RuleDecisionAdmin(admin.ModelAdmin):
    list_display = ["created_at", "rule", "account", "trigger", "fired", "signal", "order", "reason"]
    list_filter = ["fired", "trigger", "rule", "account"]
    list_select_related = ["rule", "account", "signal", "order"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
