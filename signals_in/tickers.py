"""From a ticker as TradingView or a sender spells it to one of our instruments.

Continuous symbols (`NQ1!`, `CME_MINI:MNQ1!`, `NQ2!` for the next one) follow the roll table
(Instrument.rolls_on, through Instrument.objects.front_of); explicit contracts may be written
`MNQZ2026`, `MNQZ26`, `MNQZ6` or `MNQ 12-26`; a bare root (`MNQ`) means its front contract.
`read_ticker` is pure; `resolve_ticker` and `contract_for_ticker` ask the database (one query), and
`contract_lookup` gives that query for the caller to run.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.db import connection
from django.utils import timezone

from brokers.models import Instrument
from signals_in.parsing import ParseError

MONTH_CODES = "FGHJKMNQUVXZ"  # January .. December

_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<n>[1-9])!$")
_CONTRACT = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{4}|\d{2}|\d)$")
_NUMERIC_MONTH = re.compile(r"^(?P<root>[A-Z0-9]+)\s+(?P<month>\d{1,2})[-/](?P<year>\d{4}|\d{2})$")
_ROOT = re.compile(r"^[A-Z0-9]{1,8}$")


@dataclass(frozen=True)
class TickerSpec:
    """What a ticker names: a root's n-th contract in roll order, or one explicit contract."""

    root: str
    continuous: int = 0  # 1 = the front contract, 2 = the next; 0: explicit contract
    month_code: str = ""
    year: int | None = None  # as written: 6, 26 or 2026
    year_digits: int = 0

    @property
    def symbol(self) -> str:
        """Our symbol for an explicit contract: root, month code, last digit of the year (MNQZ6)."""
        return f"{self.root}{self.month_code}{(self.year or 0) % 10}"


def read_ticker(text: str) -> TickerSpec:
    """Pure: the spelling -> what it names. Raises ParseError(unknown_ticker) for what it cannot read."""
    cleaned = text.strip().upper()
    if ":" in cleaned:  # CME_MINI:NQ1! -> NQ1!
        cleaned = cleaned.rsplit(":", 1)[1].strip()
    if match := _NUMERIC_MONTH.match(cleaned):
        month = int(match["month"])
        if not 1 <= month <= 12:
            raise _unknown(text, f"month {month} does not exist")
        return TickerSpec(
            root=match["root"],
            month_code=MONTH_CODES[month - 1],
            year=int(match["year"]),
            year_digits=len(match["year"]),
        )
    cleaned = re.sub(r"\s+", "", cleaned)
    if match := _CONTINUOUS.match(cleaned):
        return TickerSpec(root=match["root"], continuous=int(match["n"]))
    if match := _CONTRACT.match(cleaned):
        return TickerSpec(
            root=match["root"], month_code=match["month"], year=int(match["year"]), year_digits=len(match["year"])
        )
    if _ROOT.match(cleaned):
        return TickerSpec(root=cleaned, continuous=1)
    raise _unknown(text, "it is not a symbol we can read")


def _unknown(text: str, why: str) -> ParseError:
    return ParseError(
        f"Unknown ticker {text[:40]!r}: {why}. Use a continuous symbol (MNQ1!) or a contract "
        "(MNQZ2026, MNQZ26, MNQZ6, MNQ 12-26).",
        code="unknown_ticker",
        field="ticker",
    )


@dataclass(frozen=True)
class Contract:
    """What intake needs of an instrument, without loading the model."""

    pk: int
    symbol: str
    tick_size: Decimal
    expires_on: date | None


def resolve_ticker(text: str, *, on: date | None = None) -> Instrument:
    """The tradable instrument a ticker names today (or `on`)."""
    return Instrument.objects.get(pk=contract_for_ticker(text, on=on).pk)


def contract_for_ticker(text: str, *, on: date | None = None) -> Contract:
    """The same as resolve_ticker in one query and without the ORM's per-call cost."""
    lookup = contract_lookup(text, on=on)
    with connection.cursor() as cursor:
        cursor.execute(lookup.sql, lookup.params)
        return lookup.contract_from(cursor.fetchall())


@dataclass(frozen=True)
class ContractLookup:
    """The query that finds a ticker's contract, and how to read its rows: split so the webhook
    intake can run the query on whichever connection it has (signals_in.intake_io)."""

    text: str
    spec: TickerSpec
    sql: str
    params: tuple[object, ...]

    def contract_from(self, rows: Sequence[Sequence[Any]]) -> Contract:
        """The contract the rows name; ParseError(unknown_ticker) when they name none."""
        contracts = [Contract(*row) for row in rows]
        if self.spec.continuous:
            if len(contracts) < self.spec.continuous:
                raise _unknown(self.text, f"no tradable {self.spec.root} contract to map it to")
            return contracts[-1]
        if not contracts or not _year_matches(contracts[0], self.spec):
            raise _unknown(self.text, f"no tradable contract {self.spec.symbol} for that year")
        return contracts[0]


def contract_lookup(text: str, *, on: date | None = None) -> ContractLookup:
    """The query for a ticker's contract today (or `on`), built by the ORM once per product and
    day, then only executed. ParseError(unknown_ticker) when the spelling cannot be read."""
    spec = read_ticker(text)
    on = on or timezone.localdate()
    today = timezone.now().date()
    if spec.continuous:
        sql, params = _compiled_query("front", spec.root, spec.continuous, on, today)
    else:
        sql, params = _compiled_query("symbol", spec.symbol, 1, on, today)
    return ContractLookup(text=text, spec=spec, sql=sql, params=params)


@lru_cache(maxsize=1024)
def _compiled_query(kind: str, name: str, count: int, on: date, today: date) -> tuple[str, tuple[object, ...]]:
    # Only SQL text is cached, never rows: every call reads the instruments as they are now.
    # `today` is in the key because tradable() compares expiry with the current date.
    instruments = (
        Instrument.objects.front_of(name, on=on)
        if kind == "front"
        else Instrument.objects.tradable().filter(symbol=name)
    )
    return instruments.values_list("pk", "symbol", "tick_size", "expires_on")[:count].query.sql_with_params()


def _year_matches(instrument: Contract, spec: TickerSpec) -> bool:
    """MNQZ6 could be 2026 or 2036: a 2- or 4-digit year must match the contract's expiry year."""
    if instrument.expires_on is None or spec.year_digits <= 1 or spec.year is None:
        return True
    year = spec.year if spec.year_digits == 4 else 2000 + spec.year
    return instrument.expires_on.year == year
