"""Firm rule templates and the market calendar, shipped as data (risk/data/*.json) and loaded
idempotently: loading an unchanged file writes nothing and adds no history rows.

A file is checked whole before anything is stored, and stored in one transaction, so a bad
file leaves the database as it was.
"""

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.db import models, transaction

from accounts.models import Firm, Program
from config.errors import DomainError
from risk.domain import DailyLossMode, DrawdownKind, DrawdownLock
from risk.models import WEEKDAYS, ContractLimit, MarketClose, ProgramRules, RuleFields, ScalingTier, TradingWindow

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_TEMPLATE_FILE = DATA_DIR / "firm_templates.json"
DEFAULT_CALENDAR_FILE = DATA_DIR / "market_calendar.json"

RULE_FIELDS = tuple(f.name for f in RuleFields._meta.fields)


class InvalidFirmTemplate(DomainError):
    code = "invalid_firm_template"


class InvalidMarketCalendar(DomainError):
    code = "invalid_market_calendar"


@dataclass
class LoadSummary:
    """What a load did, by row label."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def record(self, label: str, *, created: bool, changed: bool) -> None:
        (self.created if created else self.updated if changed else self.unchanged).append(label)

    def __str__(self) -> str:
        return f"{len(self.created)} created, {len(self.updated)} updated, {len(self.unchanged)} unchanged"


@dataclass(frozen=True)
class TemplatesLoaded:
    firms: LoadSummary
    programs: LoadSummary


# -- Reading and checking values -------------------------------------------------------------

# The JSON types each kind of column accepts, checked before Django's own cleaning so that,
# say, 5.5 contracts or "yes" for a flag is refused rather than coerced.
_JSON_TYPES: tuple[tuple[type[models.Field], tuple[type, ...], str], ...] = (
    (models.BooleanField, (bool,), "true, false or null"),
    (models.DecimalField, (str, int, Decimal), 'a number or a string such as "2000"'),
    (models.IntegerField, (int,), "a whole number"),
    (models.TimeField, (str,), 'a time such as "15:10"'),
    (models.DateField, (str,), 'a date such as "2026-11-27"'),
    (models.JSONField, (list,), 'a list such as ["ZC", "ZW"]'),
    (models.CharField, (str,), "text"),
)


def _shown(value: Any) -> str:
    """`value` as the file wrote it (numbers are read as Decimal)."""
    return str(value) if isinstance(value, Decimal) else json.dumps(value, default=str)[:80]


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate key {', '.join(duplicates)}")
    return dict(pairs)


def _read_json(path: Path, error: type[DomainError]) -> Any:
    try:
        # Decimal for every JSON number, so 0.1 stays exactly 0.1.
        return json.loads(
            path.read_text(encoding="utf-8"), parse_float=Decimal, object_pairs_hook=_reject_duplicate_keys
        )
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise error(f"Cannot read {path}: {exc}.") from exc


def _object(
    value: Any,
    *,
    where: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    error: type[DomainError],
) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise error(f"{where}: expected an object, got {_shown(value)}.")
    unknown = sorted(set(value) - set(required) - set(optional))
    if unknown:
        raise error(f"{where}: unknown field {', '.join(unknown)}.", field=unknown[0])
    missing = [name for name in required if name not in value]
    if missing:
        raise error(f"{where}: missing field {', '.join(missing)}.", field=missing[0])
    return value


def _list(value: Any, *, where: str, error: type[DomainError]) -> list[Any]:
    if not isinstance(value, list):
        raise error(f"{where}: expected a list.")
    return value


def _text(value: Any, *, where: str, error: type[DomainError]) -> str:
    """Free text, written as a string or as a list of lines."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "\n".join(value)
    if not isinstance(value, str):
        raise error(f"{where}: expected text or a list of lines.")
    return value


def _column(model: type[models.Model], name: str, value: Any, *, where: str, error: type[DomainError]) -> Any:
    """`value` from the file as the Python value `model.name` stores, or the error naming it."""
    column = model._meta.get_field(name)
    assert isinstance(column, models.Field)
    if value is not None:
        for field_class, json_types, expected in _JSON_TYPES:
            if isinstance(column, field_class):
                if not isinstance(value, json_types) or (isinstance(value, bool) and bool not in json_types):
                    raise error(f"{where}: expected {expected}, got {_shown(value)}.", field=name)
                break
        if value == "" and column.null:
            raise error(f"{where}: use null, not an empty string, for no value.", field=name)
    try:
        cleaned = column.clean(value, None)
    except ValidationError as exc:
        raise error(f"{where}: {' '.join(exc.messages)}", field=name) from exc
    if isinstance(cleaned, Decimal) and cleaned < 0:
        raise error(f"{where}: must not be negative, got {cleaned}.", field=name)
    return cleaned


def _roots(value: list[str] | None) -> list[str] | None:
    return None if value is None else sorted({root.strip().upper() for root in value})


# -- Firm templates --------------------------------------------------------------------------


@dataclass(frozen=True)
class _ChildTable:
    """Rows hanging off a program that the file lists and a load replaces when they differ."""

    key: str  # in the file, and the related name on Program
    model: type[models.Model]
    required: tuple[str, ...]
    optional: tuple[str, ...]
    identity: tuple[str, ...]  # at most one row per program with these values

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


_CHILD_TABLES = (
    _ChildTable("contract_limits", ContractLimit, ("root",), ("max_contracts", "weight"), ("root",)),
    _ChildTable("scaling_tiers", ScalingTier, ("threshold", "max_contracts"), (), ("threshold",)),
    _ChildTable("trading_windows", TradingWindow, ("weekday", "starts_at", "ends_at"), (), ("weekday", "starts_at")),
)

_PROGRAM_COLUMNS = ("phase", "starting_balance", "currency", "notes")

Row = tuple[Any, ...]  # one child row's values in `_ChildTable.columns` order


@dataclass(frozen=True)
class _ProgramTemplate:
    firm: str
    name: str
    program: dict[str, Any]
    rules: dict[str, Any]
    children: dict[str, list[Row]]  # by `_ChildTable.key`, sorted by identity

    @property
    def label(self) -> str:
        return f"{self.firm} {self.name}"


@dataclass(frozen=True)
class _FirmTemplate:
    name: str
    values: dict[str, Any]
    programs: list[_ProgramTemplate]


def _parse_rules(raw: Any, *, label: str) -> dict[str, Any]:
    error = InvalidFirmTemplate
    raw = _object(raw, where=f"{label}: rules", required=(*RULE_FIELDS, "notes"), error=error)
    rules = {
        name: _column(ProgramRules, name, raw[name], where=f"{label}: rules.{name}", error=error)
        for name in RULE_FIELDS
    }
    rules["notes"] = _text(raw["notes"], where=f"{label}: rules.notes", error=error)
    for name in ("allowed_roots", "restricted_roots"):
        rules[name] = _roots(rules[name])
    if rules["time_zone"] is not None:
        try:
            ZoneInfo(rules["time_zone"])
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidFirmTemplate(
                f"{label}: rules.time_zone: unknown time zone {rules['time_zone']!r}.", field="time_zone"
            ) from exc
    pct = rules["consistency_max_pct"]
    if pct is not None and not 0 < pct <= 100:
        raise InvalidFirmTemplate(
            f"{label}: rules.consistency_max_pct: must be above 0 and at most 100, got {pct}.",
            field="consistency_max_pct",
        )
    # A rule switched on without its figure would silently do nothing.
    needs = (
        ("daily_loss_mode", rules["daily_loss_mode"] not in (None, DailyLossMode.OFF), "daily_loss_limit"),
        ("drawdown_kind", rules["drawdown_kind"] not in (None, DrawdownKind.NONE), "drawdown_amount"),
        ("drawdown_lock", rules["drawdown_lock"] == DrawdownLock.STARTING_PLUS, "drawdown_lock_offset"),
    )
    for switch, on, figure in needs:
        if on and rules[figure] is None:
            raise InvalidFirmTemplate(
                f"{label}: rules.{figure}: required when {switch} is {rules[switch]!r}.", field=figure
            )
    return rules


def _parse_children(raw: Any, table: _ChildTable, *, label: str) -> list[Row]:
    error = InvalidFirmTemplate
    rows: dict[Row, Row] = {}
    for number, item in enumerate(_list(raw, where=f"{label}: {table.key}", error=error), start=1):
        where = f"{label}: {table.key}[{number}]"
        item = dict(_object(item, where=where, required=table.required, optional=table.optional, error=error))
        if table.model is TradingWindow:
            if item["weekday"] not in WEEKDAYS:
                raise InvalidFirmTemplate(
                    f"{where}.weekday: expected one of {', '.join(WEEKDAYS)}, got {item['weekday']!r}.", field="weekday"
                )
            item["weekday"] = WEEKDAYS.index(item["weekday"])
        values = {
            name: _column(table.model, name, item.get(name), where=f"{where}.{name}", error=error)
            for name in table.columns
        }
        if table.model is ContractLimit:
            values["root"] = values["root"].strip().upper()
            if values["max_contracts"] is None and values["weight"] is None:
                raise InvalidFirmTemplate(f"{where}: set max_contracts, weight or both.", field="max_contracts")
        identity = tuple(values[name] for name in table.identity)
        if identity in rows:
            raise InvalidFirmTemplate(f"{where}: a second row for {', '.join(map(str, identity))}.", field=table.key)
        rows[identity] = tuple(values[name] for name in table.columns)
    return [rows[identity] for identity in sorted(rows)]


def _parse_program(raw: Any, *, firm: str, number: int) -> _ProgramTemplate:
    error = InvalidFirmTemplate
    provisional = f"{firm} program #{number}"
    raw = _object(
        raw,
        where=provisional,
        required=("name", "phase", "starting_balance", "rules"),
        optional=("currency", "notes", *(table.key for table in _CHILD_TABLES)),
        error=error,
    )
    name = _column(Program, "name", raw["name"], where=f"{provisional}: name", error=error)
    label = f"{firm} {name}"
    program = {
        "phase": _column(Program, "phase", raw["phase"], where=f"{label}: phase", error=error),
        "starting_balance": _column(
            Program, "starting_balance", raw["starting_balance"], where=f"{label}: starting_balance", error=error
        ),
        "currency": _column(Program, "currency", raw.get("currency", "USD"), where=f"{label}: currency", error=error),
        "notes": _text(raw.get("notes", ""), where=f"{label}: notes", error=error),
    }
    if program["starting_balance"] <= 0:
        raise InvalidFirmTemplate(f"{label}: starting_balance: must be above zero.", field="starting_balance")
    return _ProgramTemplate(
        firm=firm,
        name=name,
        program=program,
        rules=_parse_rules(raw["rules"], label=label),
        children={table.key: _parse_children(raw.get(table.key, []), table, label=label) for table in _CHILD_TABLES},
    )


def _parse_templates(data: Any) -> list[_FirmTemplate]:
    error = InvalidFirmTemplate
    data = _object(data, where="The file", required=("firms",), optional=("_note",), error=error)
    firms: dict[str, _FirmTemplate] = {}
    for number, raw in enumerate(_list(data["firms"], where="firms", error=error), start=1):
        raw = _object(
            raw, where=f"firms[{number}]", required=("name", "programs"), optional=("website", "notes"), error=error
        )
        name = _column(Firm, "name", raw["name"], where=f"firms[{number}]: name", error=error)
        if name in firms:
            raise InvalidFirmTemplate(f"firms[{number}]: {name} is listed twice.", field="name")
        values = {
            "website": _column(Firm, "website", raw.get("website", ""), where=f"{name}: website", error=error),
            "notes": _text(raw.get("notes", ""), where=f"{name}: notes", error=error),
        }
        programs: dict[str, _ProgramTemplate] = {}
        for program_number, program_raw in enumerate(
            _list(raw["programs"], where=f"{name}: programs", error=error), start=1
        ):
            program = _parse_program(program_raw, firm=name, number=program_number)
            if program.name in programs:
                raise InvalidFirmTemplate(f"{program.label}: listed twice.", field="name")
            programs[program.name] = program
        firms[name] = _FirmTemplate(name=name, values=values, programs=list(programs.values()))
    return list(firms.values())


def _assign_changes(instance: models.Model, values: dict[str, Any]) -> bool:
    """Set the values that differ on `instance`; True when any did."""
    changed = False
    for name, value in values.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed = True
    return changed


def _save(instance: models.Model, reason: str) -> None:
    instance._change_reason = reason  # type: ignore[attr-defined]  # read by django-simple-history
    instance.save()


def _replace_children(program: Program, table: _ChildTable, rows: list[Row], reason: str) -> bool:
    existing = list(getattr(program, table.key).all())
    current = sorted(
        (tuple(getattr(row, name) for name in table.columns) for row in existing),
        key=lambda row: tuple(row[table.columns.index(name)] for name in table.identity),
    )
    if current == rows:
        return False
    # One history row per removed and per added row, so the change is traceable.
    for row in existing:
        row._change_reason = reason  # type: ignore[attr-defined]
        row.delete()
    for values in rows:
        _save(table.model(program=program, **dict(zip(table.columns, values, strict=True))), reason)
    return True


def _store_program(template: _ProgramTemplate, firm: Firm, reason: str) -> tuple[bool, bool]:
    """Create or update one program with its rules and rows; (created, changed)."""
    program = Program.objects.filter(firm=firm, name=template.name).first()
    created = program is None
    if program is None:
        program = Program(firm=firm, name=template.name, **template.program)
        _save(program, reason)
        changed = True
    else:
        changed = _assign_changes(program, template.program)
        if changed:
            _save(program, reason)
    rules = ProgramRules.objects.filter(program=program).first() or ProgramRules(program=program)
    if _assign_changes(rules, template.rules) or rules.pk is None:
        _save(rules, reason)
        changed = True
    for table in _CHILD_TABLES:
        changed |= _replace_children(program, table, template.children[table.key], reason)
    return created, changed


def load_firm_templates(*, path: Path = DEFAULT_TEMPLATE_FILE) -> TemplatesLoaded:
    """Create or update firms, programs, their rules, contract limits, scaling tiers and
    trading windows from `path` (see risk/data/firm_templates.json).

    Matches firms by name and programs by firm and name. A program's listed rows replace its
    existing ones when they differ. Programs missing from the file are left as they are.
    """
    firms = _parse_templates(_read_json(path, InvalidFirmTemplate))
    reason = f"Loaded from {path.name}"
    loaded = TemplatesLoaded(firms=LoadSummary(), programs=LoadSummary())
    with transaction.atomic():
        for template in firms:
            firm = Firm.objects.filter(name=template.name).first()
            created = firm is None
            if firm is None:
                firm = Firm.objects.create(name=template.name, **template.values)
                changed = True
            elif changed := _assign_changes(firm, template.values):
                firm.save()
            loaded.firms.record(firm.name, created=created, changed=changed)
            for program in template.programs:
                created, changed = _store_program(program, firm, reason)
                loaded.programs.record(program.label, created=created, changed=changed)
    return loaded


# -- Market calendar -------------------------------------------------------------------------


def _parse_calendar(data: Any) -> list[dict[str, Any]]:
    error = InvalidMarketCalendar
    data = _object(data, where="The file", required=("market_closes",), optional=("_note",), error=error)
    closes: dict[tuple[date | None, tuple[str, ...]], dict[str, Any]] = {}
    for number, raw in enumerate(_list(data["market_closes"], where="market_closes", error=error), start=1):
        where = f"market_closes[{number}]"
        raw = _object(raw, where=where, required=("closes_at", "reason"), optional=("on_date", "roots"), error=error)
        values = {
            name: _column(MarketClose, name, raw.get(name, default), where=f"{where}.{name}", error=error)
            for name, default in (("on_date", None), ("roots", []), ("closes_at", None), ("reason", None))
        }
        values["roots"] = _roots(values["roots"])
        identity = (values["on_date"], tuple(values["roots"]))
        if identity in closes:
            raise InvalidMarketCalendar(f"{where}: a second close for the same date and products.", field="roots")
        closes[identity] = values
    return list(closes.values())


def load_market_calendar(*, path: Path = DEFAULT_CALENDAR_FILE) -> LoadSummary:
    """Create or update early closes from `path` (see risk/data/market_calendar.json).

    A close is matched by its date (or none: daily) and its products; rows staff added for
    other dates or products are left alone.
    """
    closes = _parse_calendar(_read_json(path, InvalidMarketCalendar))
    summary = LoadSummary()
    with transaction.atomic():
        for values in closes:
            close = MarketClose.objects.filter(on_date=values["on_date"], roots=values["roots"]).first()
            created = close is None
            if close is None:
                close = MarketClose.objects.create(**values)
                changed = True
            elif changed := _assign_changes(close, {"closes_at": values["closes_at"], "reason": values["reason"]}):
                close.save()
            summary.record(str(close), created=created, changed=changed)
    return summary
