"""Tickers to instruments: continuous symbols follow the roll table, explicit contracts in every spelling."""

from datetime import date

import pytest

from brokers.models import Instrument
from brokers.services import DEFAULT_INSTRUMENT_FILE, load_instruments, read_instrument_file
from signals_in.parsing import ParseError
from signals_in.tickers import TickerSpec, read_ticker, resolve_ticker


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("NQ1!", TickerSpec(root="NQ", continuous=1)),
        ("CME_MINI:MNQ1!", TickerSpec(root="MNQ", continuous=1)),
        ("nq2!", TickerSpec(root="NQ", continuous=2)),
        ("6E1!", TickerSpec(root="6E", continuous=1)),
        ("MNQZ2026", TickerSpec(root="MNQ", month_code="Z", year=2026, year_digits=4)),
        ("MNQZ26", TickerSpec(root="MNQ", month_code="Z", year=26, year_digits=2)),
        ("MNQZ6", TickerSpec(root="MNQ", month_code="Z", year=6, year_digits=1)),
        ("MNQ 12-26", TickerSpec(root="MNQ", month_code="Z", year=26, year_digits=2)),
        ("M2KZ6", TickerSpec(root="M2K", month_code="Z", year=6, year_digits=1)),
        ("MES", TickerSpec(root="MES", continuous=1)),
    ],
)
def test_spellings_are_read_without_the_database(text, spec):
    assert read_ticker(text) == spec


@pytest.mark.parametrize("text", ["NQ!", "MNQ 13-26", "what?", ""])
def test_unreadable_tickers_are_unknown(text):
    with pytest.raises(ParseError) as caught:
        read_ticker(text)
    assert caught.value.code == "unknown_ticker"


@pytest.fixture
def cme(db) -> None:  # type: ignore[no-untyped-def]
    load_instruments(read_instrument_file(DEFAULT_INSTRUMENT_FILE))


@pytest.mark.parametrize("text", ["MNQZ2026", "MNQZ26", "MNQZ6", "MNQ 12-26", "CME_MINI:MNQZ2026", "mnqz6"])
def test_explicit_contracts_in_every_spelling_map_to_mnqz6(cme, text):
    assert resolve_ticker(text).symbol == "MNQZ6"


def test_a_contract_of_the_wrong_year_is_unknown(cme):
    with pytest.raises(ParseError) as caught:
        resolve_ticker("MNQZ2036")
    assert caught.value.code == "unknown_ticker"


@pytest.mark.parametrize(
    ("on", "front", "second"),
    [
        (date(2026, 11, 21), "NQZ6", "NQH7"),
        (date(2026, 12, 9), "NQZ6", "NQH7"),
        (date(2026, 12, 10), "NQH7", None),  # Roll Thursday: the March contract is the front
    ],
)
def test_continuous_symbols_follow_the_roll_table(cme, on, front, second):
    assert resolve_ticker("CME_MINI:NQ1!", on=on).symbol == front
    if second:
        assert resolve_ticker("NQ2!", on=on).symbol == second
    else:
        with pytest.raises(ParseError):
            resolve_ticker("NQ2!", on=on)


def test_the_shipped_roll_table_rolls_equity_index_on_the_second_thursday(cme):
    rolls = dict(Instrument.objects.filter(root__in=["ES", "MNQ"]).values_list("symbol", "rolls_on"))

    assert rolls == {
        "ESZ6": date(2026, 12, 10),
        "ESH7": date(2027, 3, 11),
        "MNQZ6": date(2026, 12, 10),
        "MNQH7": date(2027, 3, 11),
    }
    assert all(d.weekday() == 3 for d in rolls.values())


def test_a_root_without_a_contract_is_unknown(cme):
    with pytest.raises(ParseError) as caught:
        resolve_ticker("ZZ1!")
    assert caught.value.code == "unknown_ticker"
