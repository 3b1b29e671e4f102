"""Firm templates and the market calendar load from the shipped JSON: the right figures, once,
with history only for real changes, and bad files refused whole with a coded error."""

import json
from datetime import time
from decimal import Decimal
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from accounts.models import Firm, Program
from risk.domain import DrawdownKind, merge_rules
from risk.domain import drawdown_floor as floor_of
from risk.models import ContractLimit, MarketClose, ProgramRules, ScalingTier, TradingWindow
from risk.templates import (
    DEFAULT_CALENDAR_FILE,
    DEFAULT_TEMPLATE_FILE,
    RULE_FIELDS,
    InvalidFirmTemplate,
    InvalidMarketCalendar,
    load_firm_templates,
    load_market_calendar,
)

pytestmark = pytest.mark.django_db

SHIPPED_PROGRAMS = {
    "Topstep 50K Trading Combine",
    "Topstep 100K Trading Combine",
    "Topstep 150K Trading Combine",
    "Topstep 50K Express Funded Account",
    "Topstep 100K Express Funded Account",
    "Topstep 150K Express Funded Account",
    "Apex Trader Funding 50K Legacy Evaluation",
    "Apex Trader Funding 50K EOD Evaluation",
    "Apex Trader Funding 50K Intraday Evaluation",
    "TradeDay 50K Intraday Evaluation",
    "TradeDay 50K EOD Evaluation",
    "TradeDay 50K Static Evaluation",
    "Take Profit Trader 50K Test",
    "MyFundedFutures 50K EOD Evaluation",
}


def shipped() -> dict[str, Any]:
    return json.loads(DEFAULT_TEMPLATE_FILE.read_text())


def write(tmp_path: Path, data: Any, name: str = "templates.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def find_program(data: dict[str, Any], firm: str, name: str) -> dict[str, Any]:
    [firm_data] = [f for f in data["firms"] if f["name"] == firm]
    [program] = [p for p in firm_data["programs"] if p["name"] == name]
    return program


def rules_of(firm: str, program: str) -> ProgramRules:
    return ProgramRules.objects.get(program__firm__name=firm, program__name=program)


def history_rows() -> int:
    return sum(model.history.count() for model in (Program, ProgramRules, ContractLimit, ScalingTier, TradingWindow))


def test_loading_creates_every_shipped_program_with_its_rules():
    loaded = load_firm_templates()

    assert set(loaded.programs.created) == SHIPPED_PROGRAMS
    assert loaded.programs.updated == loaded.programs.unchanged == []
    assert set(Firm.objects.values_list("name", flat=True)) == {
        "Topstep",
        "Apex Trader Funding",
        "TradeDay",
        "Take Profit Trader",
        "MyFundedFutures",
    }
    assert {str(p) for p in Program.objects.filter(rules__isnull=False)} == SHIPPED_PROGRAMS
    assert Program.objects.count() == len(SHIPPED_PROGRAMS)


def test_topstep_50k_combine_has_the_documented_figures():
    load_firm_templates()

    program = Program.objects.get(firm__name="Topstep", name="50K Trading Combine")
    rules = program.rules
    assert (program.phase, program.starting_balance, program.currency) == ("evaluation", Decimal("50000"), "USD")
    assert (rules.drawdown_kind, rules.drawdown_amount, rules.drawdown_lock) == (
        "eod_trailing",
        Decimal("2000"),
        "starting_balance",
    )
    assert (rules.max_contracts, rules.micro_weight) == (5, Decimal("0.1"))
    assert (rules.flat_by, rules.time_zone) == (time(15, 10), "America/Chicago")
    assert (rules.profit_target, rules.consistency_max_pct, rules.min_trading_days) == (Decimal("3000"), 50, 2)
    assert rules.daily_loss_mode == "off"
    assert "none on TopstepX" in rules.notes
    assert rules.automation_allowed is None  # unknown for a cloud platform: left empty


# firm, program: drawdown (kind, amount, lock, offset), max contracts, DLL (mode, limit), flat by, tz
FIGURES = [
    (
        "Topstep",
        "150K Trading Combine",
        ("eod_trailing", "4500", "starting_balance", None),
        15,
        ("off", "3000"),
        "15:10",
        "America/Chicago",
    ),
    (
        "Topstep",
        "100K Express Funded Account",
        ("eod_trailing", "3000", "starting_balance", None),
        10,
        ("off", None),
        "15:10",
        "America/Chicago",
    ),
    (
        "Apex Trader Funding",
        "50K Legacy Evaluation",
        ("intraday_trailing", "2500", "starting_plus", "100"),
        10,
        ("off", None),
        "16:59",
        "America/New_York",
    ),
    (
        "Apex Trader Funding",
        "50K EOD Evaluation",
        ("eod_trailing", "2500", None, None),
        None,
        ("soft", "1000"),
        "16:59",
        "America/New_York",
    ),
    (
        "Apex Trader Funding",
        "50K Intraday Evaluation",
        ("intraday_trailing", "2500", None, None),
        None,
        ("off", None),
        "16:59",
        "America/New_York",
    ),
    (
        "TradeDay",
        "50K Intraday Evaluation",
        ("intraday_trailing", "2000", "starting_balance", None),
        5,
        ("off", None),
        "15:50",
        "America/Chicago",
    ),
    (
        "TradeDay",
        "50K Static Evaluation",
        ("static", "500", None, None),
        1,
        ("off", None),
        "15:50",
        "America/Chicago",
    ),
    (
        "Take Profit Trader",
        "50K Test",
        ("eod_trailing", "2000", "starting_balance", None),
        6,
        ("off", None),
        "16:59",
        "America/New_York",
    ),
    (
        "MyFundedFutures",
        "50K EOD Evaluation",
        ("eod_trailing", "2000", "starting_plus", "100"),
        None,
        ("off", None),
        "16:10",
        "America/New_York",
    ),
]


@pytest.mark.parametrize(
    ("firm", "program", "drawdown", "max_contracts", "daily_loss", "flat_by", "tz"),
    FIGURES,
    ids=[f"{f[0]} {f[1]}" for f in FIGURES],
)
def test_shipped_program_figures(firm, program, drawdown, max_contracts, daily_loss, flat_by, tz):
    load_firm_templates()

    rules = rules_of(firm, program)
    money = lambda value: None if value is None else Decimal(value)  # noqa: E731
    kind, amount, lock, offset = drawdown
    assert (rules.drawdown_kind, rules.drawdown_amount, rules.drawdown_lock, rules.drawdown_lock_offset) == (
        kind,
        money(amount),
        lock,
        money(offset),
    )
    assert rules.max_contracts == max_contracts
    assert (rules.daily_loss_mode, rules.daily_loss_limit) == (daily_loss[0], money(daily_loss[1]))
    assert (rules.flat_by, rules.time_zone) == (time.fromisoformat(flat_by), tz)


def test_evaluation_rules_of_tradeday_take_profit_trader_and_myfundedfutures():
    load_firm_templates()

    tradeday = rules_of("TradeDay", "50K Intraday Evaluation")
    tpt = rules_of("Take Profit Trader", "50K Test")
    mffu = rules_of("MyFundedFutures", "50K EOD Evaluation")
    assert (tradeday.news_blackout_minutes_before, tradeday.news_blackout_minutes_after) == (2, 2)
    assert (tradeday.consistency_max_pct, tradeday.min_trading_days) == (30, 5)
    assert (tpt.consistency_max_pct, tpt.min_trading_days) == (50, 5)
    assert (mffu.consistency_max_pct, mffu.min_trading_days) == (50, None)
    assert [r.automation_allowed for r in ProgramRules.objects.filter(program__firm__name="Apex Trader Funding")] == [
        False,
        False,
        False,
    ]


def test_topstep_50k_xfa_scales_by_profit_and_has_no_target():
    load_firm_templates()

    program = Program.objects.get(firm__name="Topstep", name="50K Express Funded Account")
    tiers = [(t.threshold, t.max_contracts) for t in program.scaling_tiers.all()]
    assert tiers == [(Decimal("0"), 2), (Decimal("1500"), 3), (Decimal("2000"), 5)]
    assert (program.phase, program.rules.scaling_basis, program.rules.profit_target) == ("funded", "profit", None)
    # 100K/150K thresholds are unconfirmed: only the first tier ships, so the plan stays at its start.
    assert [
        (t.threshold, t.max_contracts) for t in ScalingTier.objects.filter(program__name="150K Express Funded Account")
    ] == [(Decimal("0"), 3)]


def test_shipped_rules_drive_the_domain_as_the_firms_describe():
    """Topstep's own worked example [T2]: +500, -500, +2,500 moves the MLL to 48,500 then locks at 50,000."""
    load_firm_templates()
    row = rules_of("Topstep", "50K Trading Combine")
    rules = merge_rules({name: getattr(row, name) for name in RULE_FIELDS})

    floors, floor = [], None
    for eod_high in (Decimal("50500"), Decimal("50500"), Decimal("52500"), Decimal("55000")):
        floor = floor_of(rules, starting_balance=Decimal("50000"), high_mark=eod_high, previous_floor=floor)
        floors.append(floor)
    assert floors == [Decimal("48500"), Decimal("48500"), Decimal("50000"), Decimal("50000")]
    assert rules.drawdown_kind == DrawdownKind.EOD_TRAILING and not rules.has_daily_limit


# What each program's notes must say, because the reference marks it UNCONFIRMED (or says so).
UNCONFIRMED_NOTES = {
    "Topstep 50K Trading Combine": ["Consistency target", "UNCONFIRMED [T13][T14]", "Minimum trading days 2"],
    "Topstep 100K Trading Combine": ["UNCONFIRMED (third-party only) [T11][T12]", "UNCONFIRMED [T13][T14]"],
    "Topstep 150K Trading Combine": ["UNCONFIRMED (third-party only) [T11][T12]", "UNCONFIRMED [T13][T14]"],
    "Topstep 50K Express Funded Account": ["UNCONFIRMED [T13][T17]", "UNCONFIRMED [T18][T13]"],
    "Topstep 100K Express Funded Account": ["UNCONFIRMED [T13][T17]", "thresholds are UNCONFIRMED"],
    "Topstep 150K Express Funded Account": ["UNCONFIRMED [T13][T17]", "thresholds are UNCONFIRMED"],
    "Apex Trader Funding 50K Legacy Evaluation": ["UNCONFIRMED against an official page", "stop point is UNCONFIRMED"],
    "Apex Trader Funding 50K EOD Evaluation": ["every figure is UNCONFIRMED", "amount is UNCONFIRMED"],
    "Apex Trader Funding 50K Intraday Evaluation": ["every figure is UNCONFIRMED"],
    "TradeDay 50K Intraday Evaluation": ["exact minute is UNCONFIRMED [D8]", "conflicting, UNCONFIRMED"],
    "TradeDay 50K EOD Evaluation": ["exact minute is UNCONFIRMED [D8]", "conflicting, UNCONFIRMED"],
    "TradeDay 50K Static Evaluation": ["exact minute is UNCONFIRMED [D8]", "conflicting, UNCONFIRMED"],
    "Take Profit Trader 50K Test": ["[P6][P2]: UNCONFIRMED", "UNCONFIRMED, left empty"],
    "MyFundedFutures 50K EOD Evaluation": ["for the evaluation it is UNCONFIRMED", "conflicting, UNCONFIRMED"],
}


def test_every_template_notes_what_is_unconfirmed_with_its_source():
    load_firm_templates()

    assert set(UNCONFIRMED_NOTES) == SHIPPED_PROGRAMS
    for rules in ProgramRules.objects.select_related("program__firm"):
        label = str(rules.program)
        assert "PROP_FIRMS_CME_TRADINGVIEW.md" in rules.notes, label
        for fragment in UNCONFIRMED_NOTES[label]:
            assert fragment in rules.notes, f"{label}: {fragment!r}"


def test_loading_twice_changes_nothing_and_adds_no_history():
    load_firm_templates()
    before = history_rows()
    stamps = dict(ProgramRules.objects.values_list("pk", "updated_at"))

    loaded = load_firm_templates()

    assert set(loaded.programs.unchanged) == SHIPPED_PROGRAMS
    assert loaded.programs.created == loaded.programs.updated == []
    assert loaded.firms.created == loaded.firms.updated == []
    assert history_rows() == before
    assert dict(ProgramRules.objects.values_list("pk", "updated_at")) == stamps
    assert Program.objects.count() == len(SHIPPED_PROGRAMS)


def test_a_changed_figure_updates_the_row_and_adds_one_history_row(tmp_path):
    load_firm_templates()
    rules = rules_of("Topstep", "50K Trading Combine")
    rules_history, all_history = rules.history.count(), history_rows()
    data = shipped()
    find_program(data, "Topstep", "50K Trading Combine")["rules"]["max_contracts"] = 4

    loaded = load_firm_templates(path=write(tmp_path, data))

    assert loaded.programs.updated == ["Topstep 50K Trading Combine"]
    rules.refresh_from_db()
    assert rules.max_contracts == 4
    assert rules.history.count() == rules_history + 1
    assert history_rows() == all_history + 1
    assert rules.history.first().history_change_reason == "Loaded from templates.json"


def test_changed_rows_replace_the_programs_rows(tmp_path):
    load_firm_templates()
    data = shipped()
    xfa = find_program(data, "Topstep", "50K Express Funded Account")
    xfa["scaling_tiers"] = [{"threshold": "0", "max_contracts": 2}, {"threshold": 2500, "max_contracts": 5}]
    xfa["contract_limits"] = [{"root": "mgc", "weight": 0.2}]
    xfa["trading_windows"] = [{"weekday": "Sunday", "starts_at": "17:00", "ends_at": "15:10"}]

    loaded = load_firm_templates(path=write(tmp_path, data))

    assert loaded.programs.updated == ["Topstep 50K Express Funded Account"]
    program = Program.objects.get(firm__name="Topstep", name="50K Express Funded Account")
    assert [(t.threshold, t.max_contracts) for t in program.scaling_tiers.all()] == [
        (Decimal("0"), 2),
        (Decimal("2500"), 5),
    ]
    assert [(c.root, c.max_contracts, c.weight) for c in program.contract_limits.all()] == [
        ("MGC", None, Decimal("0.2"))
    ]
    assert [(w.weekday, w.starts_at, w.ends_at) for w in program.trading_windows.all()] == [(6, time(17), time(15, 10))]
    # The same file again: nothing to replace.
    again = load_firm_templates(path=write(tmp_path, data))
    assert again.programs.updated == []


def test_a_program_missing_from_the_file_is_left_alone(tmp_path):
    load_firm_templates()
    data = shipped()
    data["firms"] = [f for f in data["firms"] if f["name"] == "Topstep"]

    load_firm_templates(path=write(tmp_path, data))

    assert Program.objects.count() == len(SHIPPED_PROGRAMS)


def _break(data: dict[str, Any], change) -> str:  # type: ignore[no-untyped-def]
    # The defect goes into the last program, so a loader that stored as it went would have
    # stored every program before it.
    change(data["firms"][-1]["programs"][-1])
    return json.dumps(data)


BAD_FILES = {
    "invalid JSON": (lambda: '{"firms": [', "Cannot read"),
    "duplicate key": (lambda: '{"firms": [], "firms": []}', "duplicate key firms"),
    "unknown rule field": (
        lambda: _break(shipped(), lambda p: p["rules"].update(max_lots=3)),
        "MyFundedFutures 50K EOD Evaluation: rules: unknown field max_lots.",
    ),
    "missing rule field": (
        lambda: _break(shipped(), lambda p: p["rules"].pop("flat_by")),
        "MyFundedFutures 50K EOD Evaluation: rules: missing field flat_by.",
    ),
    "missing program name": (
        lambda: _break(shipped(), lambda p: p.pop("name")),
        "MyFundedFutures program #1: missing field name.",
    ),
    "bad decimal": (
        lambda: _break(shipped(), lambda p: p["rules"].update(drawdown_amount="2,000")),
        "MyFundedFutures 50K EOD Evaluation: rules.drawdown_amount: “2,000” value must be a decimal number.",
    ),
    "negative money": (
        lambda: _break(shipped(), lambda p: p["rules"].update(drawdown_amount="-2000")),
        "rules.drawdown_amount: Ensure this value is greater than or equal to 0",
    ),
    "fractional contracts": (
        lambda: _break(shipped(), lambda p: p["rules"].update(max_contracts=5.5)),
        "rules.max_contracts: expected a whole number, got 5.5.",
    ),
    "unknown choice": (
        lambda: _break(shipped(), lambda p: p["rules"].update(drawdown_kind="trailing")),
        "rules.drawdown_kind: Value 'trailing' is not a valid choice.",
    ),
    "bad time": (
        lambda: _break(shipped(), lambda p: p["rules"].update(flat_by="25:00")),
        "rules.flat_by:",
    ),
    "unknown time zone": (
        lambda: _break(shipped(), lambda p: p["rules"].update(time_zone="America/Chicgo")),
        "rules.time_zone: unknown time zone 'America/Chicgo'.",
    ),
    "switched-on rule without its figure": (
        lambda: _break(shipped(), lambda p: p["rules"].update(daily_loss_mode="soft", daily_loss_limit=None)),
        "rules.daily_loss_limit: required when daily_loss_mode is 'soft'.",
    ),
    "starting balance zero": (
        lambda: _break(shipped(), lambda p: p.update(starting_balance="0")),
        "MyFundedFutures 50K EOD Evaluation: starting_balance: must be above zero.",
    ),
    "duplicate tier": (
        lambda: _break(
            shipped(),
            lambda p: p.update(scaling_tiers=[{"threshold": "0", "max_contracts": 2}] * 2),
        ),
        "scaling_tiers[2]: a second row for 0.",
    ),
    "bad weekday": (
        lambda: _break(
            shipped(),
            lambda p: p.update(trading_windows=[{"weekday": 0, "starts_at": "17:00", "ends_at": "15:10"}]),
        ),
        "trading_windows[1].weekday: expected one of Monday",
    ),
}


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_bad_file_gives_the_coded_error_and_stores_nothing(tmp_path, content, message):
    with pytest.raises(InvalidFirmTemplate) as caught:
        load_firm_templates(path=write(tmp_path, content()))

    assert caught.value.code == "invalid_firm_template"
    assert message in caught.value.detail
    assert Firm.objects.count() == Program.objects.count() == ProgramRules.objects.count() == 0


def test_a_bad_file_leaves_the_loaded_templates_as_they_were(tmp_path):
    load_firm_templates()
    before = history_rows()
    data = shipped()
    find_program(data, "Topstep", "50K Trading Combine")["rules"]["max_contracts"] = 4  # would be stored first
    find_program(data, "MyFundedFutures", "50K EOD Evaluation")["rules"]["micro_weight"] = "abc"

    with pytest.raises(InvalidFirmTemplate, match=r"MyFundedFutures 50K EOD Evaluation: rules\.micro_weight"):
        load_firm_templates(path=write(tmp_path, data))

    assert rules_of("Topstep", "50K Trading Combine").max_contracts == 5
    assert history_rows() == before


def test_a_missing_file_is_a_coded_error(tmp_path):
    with pytest.raises(InvalidFirmTemplate, match="Cannot read"):
        load_firm_templates(path=tmp_path / "nope.json")


# -- Market calendar ---------------------------------------------------------------------------


def test_calendar_loads_the_grain_and_livestock_closes_once():
    first = load_market_calendar()
    second = load_market_calendar()

    closes = {tuple(c.roots): (c.closes_at, c.on_date) for c in MarketClose.objects.all()}
    assert closes == {
        ("ZC", "ZL", "ZM", "ZS", "ZW"): (time(13, 20), None),
        ("HE", "LE"): (time(13, 5), None),
    }
    assert all("UNCONFIRMED" in c.reason for c in MarketClose.objects.all())
    assert (len(first.created), len(second.unchanged), len(second.created), len(second.updated)) == (2, 2, 0, 0)


def test_calendar_updates_a_changed_time_and_leaves_staff_rows_alone(tmp_path):
    load_market_calendar()
    holiday = MarketClose.objects.create(on_date="2026-11-27", closes_at=time(12), reason="Day after Thanksgiving")
    data = json.loads(DEFAULT_CALENDAR_FILE.read_text())
    data["market_closes"][1]["closes_at"] = "13:00"

    summary = load_market_calendar(path=write(tmp_path, data, "calendar.json"))

    assert len(summary.updated) == 1
    assert MarketClose.objects.get(roots=["HE", "LE"]).closes_at == time(13)
    assert MarketClose.objects.filter(pk=holiday.pk).exists()
    assert MarketClose.objects.count() == 3


def test_a_bad_calendar_gives_the_coded_error_and_stores_nothing(tmp_path):
    data = json.loads(DEFAULT_CALENDAR_FILE.read_text())
    data["market_closes"][1]["roots"] = "HE"

    with pytest.raises(InvalidMarketCalendar) as caught:
        load_market_calendar(path=write(tmp_path, data, "calendar.json"))

    assert caught.value.code == "invalid_market_calendar"
    assert "market_closes[2].roots:" in caught.value.detail
    assert MarketClose.objects.count() == 0


# -- Command -----------------------------------------------------------------------------------


def test_command_prints_a_summary():
    out = StringIO()
    call_command("load_firm_templates", stdout=out)
    again = StringIO()
    call_command("load_firm_templates", stdout=again)

    assert "Firms: 5 created, 0 updated, 0 unchanged." in out.getvalue()
    assert f"Programs: {len(SHIPPED_PROGRAMS)} created, 0 updated, 0 unchanged." in out.getvalue()
    assert "  created Topstep 50K Trading Combine" in out.getvalue()
    assert "Market closes: 2 created, 0 updated, 0 unchanged." in out.getvalue()
    assert f"Programs: 0 created, 0 updated, {len(SHIPPED_PROGRAMS)} unchanged." in again.getvalue()


def test_command_with_a_bad_file_exits_with_the_sentence(tmp_path):
    data = shipped()
    data["firms"][0]["programs"][0]["rules"]["micro_weight"] = "abc"

    with pytest.raises(CommandError) as caught:
        call_command("load_firm_templates", "--file", str(write(tmp_path, data)), stdout=StringIO())

    assert str(caught.value) == "Topstep 50K Trading Combine: rules.micro_weight: “abc” value must be a decimal number."
    assert Program.objects.count() == 0
