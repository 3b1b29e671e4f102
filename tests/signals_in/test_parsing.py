"""Webhook body parsing (pure, no database): every accepted format, and each refusal's code."""

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from signals_in.parsing import (
    MAX_BODY_BYTES,
    ParseError,
    decode_body,
    normalised_payload,
    parse_body,
    passphrase_of,
    redact_passphrase,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"

# What TradingView sends for this alert message before substitution (it must never get through).
TRADINGVIEW_TEMPLATE = (
    '{"ticker": "{{ticker}}", "action": "{{strategy.order.action}}", "sentiment": "{{strategy.market_position}}", '
    '"quantity": "{{strategy.order.contracts}}", "price": "{{close}}", "time": "{{timenow}}"}'
)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def refusal(body: bytes | str) -> ParseError:
    with pytest.raises(ParseError) as caught:
        parse_body(body.encode() if isinstance(body, str) else body)
    return caught.value


def test_traderspost_json_with_bracket_is_understood_whole():
    parsed = parse_body(fixture("traderspost_limit_bracket.json"))

    assert (parsed.action, parsed.sentiment, parsed.ticker) == ("buy", "long", "MNQZ2026")
    assert (parsed.quantity, parsed.order_type, parsed.limit_price) == (Decimal(2), "limit", Decimal("21000.3"))
    assert parsed.signal_price == Decimal("21001.75")
    assert parsed.signal_time == datetime(2026, 11, 20, 14, 30, tzinfo=UTC)
    assert parsed.external_id == "tp-7f3a-0001"
    assert parsed.stop_loss == {"price": "20980.1"}
    assert parsed.take_profit == {"price": "21040"}
    assert normalised_payload(parsed)["extras"] == {"setup": "opening range"}


def test_tradingview_placeholder_output_sent_as_text_is_read_as_json():
    parsed = parse_body(fixture("tradingview_strategy_placeholders.txt"))

    assert (parsed.action, parsed.sentiment, parsed.ticker, parsed.quantity) == ("sell", "short", "NQ1!", Decimal(1))
    assert parsed.signal_price == Decimal("21012.25")
    assert parsed.order_type == "market"
    assert parsed.comment == "Short Entry"


def test_key_value_lines_are_understood():
    parsed = parse_body(fixture("key_value_lines.txt"))

    assert (parsed.action, parsed.ticker, parsed.quantity) == ("exit", "MES1!", Decimal(1))
    assert (parsed.order_type, parsed.stop_price) == ("stop", Decimal("6790.3"))


def test_crosstrade_semicolon_text_is_understood():
    parsed = parse_body(fixture("crosstrade_semicolons.txt"))

    assert (parsed.action, parsed.ticker, parsed.quantity, parsed.order_type) == ("buy", "MNQ 12-26", 1, "market")
    assert parsed.time_in_force == "day"


def test_pickmytrade_close_with_zero_quantity_exits_the_whole_position():
    parsed = parse_body(fixture("pickmytrade.json"))

    assert (parsed.action, parsed.ticker, parsed.quantity, parsed.order_type) == ("exit", "NQ", None, "market")
    assert parsed.signal_time == datetime(2026, 11, 20, 17, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('"quantity": "3"', Decimal(3)),
        ('"quantity": 3.0', Decimal(3)),
        ('"qty": " 2 "', Decimal(2)),
        ('"contracts": 100', Decimal(100)),
    ],
)
def test_numbers_sent_as_strings_or_json_numbers_are_understood(fields, expected):
    parsed = parse_body(f'{{"ticker": "ES1!", "action": "buy", {fields}}}'.encode())

    assert parsed.quantity == expected
    assert str(parsed.quantity) == str(expected)  # never 1E+2


@pytest.mark.parametrize(
    ("value", "sentiment"), [("bullish", "long"), ("Long", "long"), ("bearish", "short"), ("flat", "flat")]
)
def test_sentiment_spellings_map_to_the_position_after_the_trade(value, sentiment):
    assert parse_body(f'{{"ticker": "ES1!", "action": "buy", "sentiment": "{value}"}}'.encode()).sentiment == sentiment


@pytest.mark.parametrize(
    ("extra", "order_type"),
    [
        ('"orderType": "stop_limit", "stopPrice": 1, "limitPrice": 2', "stop_limit"),
        ('"order_type": "LMT", "limitPrice": 2', "limit"),
        ('"stopPrice": 2', "stop"),
        ('"orderType": "trailing_stop", "trailAmount": "4.5"', "trailing_stop"),
    ],
)
def test_order_types_and_their_prices(extra, order_type):
    assert parse_body(f'{{"ticker": "ES1!", "action": "buy", {extra}}}'.encode()).order_type == order_type


def test_stop_loss_and_take_profit_in_ticks_and_points():
    parsed = parse_body(
        b'{"ticker": "ES1!", "action": "buy", "stopLoss": {"ticks": "8"}, "takeProfit": {"amount": "12.5"}}'
    )

    assert parsed.stop_loss == {"ticks": 8}
    assert parsed.take_profit == {"amount": "12.5"}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ("", "malformed_body", None),
        ("not a signal", "malformed_body", None),
        ('{"ticker": "ES1!", "action": "buy"', "malformed_body", None),
        ('["buy"]', "malformed_body", None),
        ('{"ticker": "ES1!", "action": "buy", "quantity": }', "malformed_body", None),
        ('{"ticker": "ES1!", "action": "hold"}', "unknown_action", "action"),
        ('{"ticker": "ES1!"}', "missing_field", "action"),
        ('{"action": "buy"}', "missing_field", "ticker"),
        ('{"ticker": "ES1!", "action": "buy", "quantity": "two"}', "invalid_quantity", "quantity"),
        ('{"ticker": "ES1!", "action": "buy", "quantity": -1}', "invalid_quantity", "quantity"),
        ('{"ticker": "ES1!", "action": "buy", "quantity": NaN}', "invalid_quantity", "quantity"),
        ('{"ticker": "ES1!", "action": "buy", "limitPrice": "NaN"}', "invalid_price", "limit_price"),
        ('{"ticker": "ES1!", "action": "buy", "limitPrice": 0}', "invalid_price", "limit_price"),
        ('{"ticker": "ES1!", "action": "buy", "orderType": "limit"}', "missing_field", "limit_price"),
        ('{"ticker": "ES1!", "action": "buy", "orderType": "iceberg"}', "unknown_order_type", "order_type"),
        ('{"ticker": "ES1!", "action": "buy", "sentiment": "sideways"}', "unknown_sentiment", "sentiment"),
        ('{"ticker": "ES1!", "action": "buy", "time": "yesterday"}', "invalid_time", "time"),
        ('{"ticker": "ES1!", "action": "buy", "stopLoss": {"percent": 1}}', "unsupported_field", "stop_loss"),
        ('{"ticker": "ES1!", "action": "buy", "stopLoss": {"type": "stop"}}', "missing_field", "stop_loss"),
        (TRADINGVIEW_TEMPLATE, "unfilled_placeholder", "ticker"),
        ('{"ticker": "ES1!", "action": "buy", "quantity": {{strategy.order.contracts}}}', "unfilled_placeholder", None),
        ("ticker=ES1!\naction={{strategy.order.action}}", "unfilled_placeholder", "action"),
    ],
)
def test_bad_bodies_are_refused_with_a_code_and_a_sentence(body, code, field):
    error = refusal(body)

    assert (error.code, error.field) == (code, field)
    assert error.detail.endswith(".") and len(error.detail) > 20


def test_a_body_over_64_kb_is_refused():
    assert refusal(b"{" + b" " * MAX_BODY_BYTES + b"}").code == "body_too_large"


def test_huge_exponents_are_refused_without_expanding_them():
    assert refusal('{"ticker": "ES1!", "action": "buy", "quantity": 1e999999999}').code == "invalid_quantity"
    assert refusal('{"ticker": "ES1!", "action": "buy", "stopPrice": 1e-999999999}').code == "invalid_price"


def test_nul_bytes_and_lone_surrogates_come_out_storable():
    fields = decode_body(b'{"ticker": "ES1!\\u0000", "action": "buy", "comment": "\\ud800x"}')

    assert "\x00" not in fields["ticker"]
    fields["comment"].encode("utf-8")  # no lone surrogate left


def test_unknown_fields_are_ignored_and_names_are_matched_loosely():
    parsed = parse_body(b'{"Ticker": "ES1!", "ACTION": "Buy", "order-type": "market", "interval": "{{interval}}"}')

    assert (parsed.ticker, parsed.action, parsed.order_type) == ("ES1!", "buy", "market")


def test_the_passphrase_is_read_but_never_in_the_payload_and_redacted_from_the_body():
    body = b'{"ticker": "ES1!", "action": "buy", "passphrase": "hunter2"}'

    assert passphrase_of(decode_body(body)) == "hunter2"
    assert "hunter2" not in str(normalised_payload(parse_body(body)))
    assert "hunter2" not in redact_passphrase(body.decode())
    assert "hunter2" not in redact_passphrase("ticker=ES1!\npassphrase = hunter2\naction=buy")
