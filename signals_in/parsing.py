"""What a webhook body says (pure): TradersPost-style JSON, TradingView placeholder output, key=value
lines and CrossTrade `;` text, normalised into one ParsedSignal or refused with a ParseError.

Two steps, so the caller can check the body's passphrase before judging the rest:
`decode_body` (bytes -> a flat dict of fields) and `parse_fields` (fields -> ParsedSignal).
Field names are matched without regard to case, `_` or `-` (orderType = order_type = ordertype);
unknown fields are ignored (TradersPost does the same), so senders can add their own.
"""

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from config.errors import DomainError

MAX_BODY_BYTES = 64 * 1024
MAX_QUANTITY = Decimal("99999999")  # Signal.quantity: 12 digits, 4 decimals
MAX_PRICE = Decimal("999999999999")  # Signal prices: 20 digits, 8 decimals
PRICE_QUANTUM = Decimal("0.00000001")
QUANTITY_QUANTUM = Decimal("0.0001")
MAX_TICKER_LENGTH = 40
MAX_ID_LENGTH = 100

ACTIONS = {
    "buy": "buy",
    "sell": "sell",
    "exit": "exit",
    "close": "exit",  # PickMyTrade's `data: close`
    "flatten": "exit",
    "cancel": "cancel",
    "add": "add",
}
SENTIMENTS = {"bullish": "long", "long": "long", "bearish": "short", "short": "short", "flat": "flat"}
ORDER_TYPES = {
    "market": "market",
    "mkt": "market",
    "limit": "limit",
    "lmt": "limit",
    "stop": "stop",
    "stp": "stop",
    "stopmarket": "stop",
    "stoplimit": "stop_limit",
    "trailingstop": "trailing_stop",
}
# CrossTrade's `command=`: PLACE uses `action`; these stand for an action of their own.
COMMANDS = {"closeposition": "exit", "flattenposition": "exit", "flatten": "exit", "cancelallorders": "cancel"}

# Our field name -> the spellings senders use (compared after `_key`).
ALIASES = {
    "ticker": ("ticker", "symbol", "instrument"),
    "action": ("action", "data"),
    "command": ("command",),
    "sentiment": ("sentiment", "marketposition"),
    "quantity": ("quantity", "qty", "contracts"),
    "order_type": ("ordertype",),
    "limit_price": ("limitprice",),
    "stop_price": ("stopprice",),
    "trail_amount": ("trailamount",),
    "signal_price": ("signalprice", "price"),
    "time": ("time", "timenow", "date"),
    "id": ("id", "signalid"),
    "passphrase": ("passphrase",),
    "stop_loss": ("stoploss",),
    "take_profit": ("takeprofit",),
    "time_in_force": ("timeinforce", "tif"),
    "comment": ("comment", "message"),
    "extras": ("extras",),
}
_ALIAS_TO_FIELD = {alias: name for name, aliases in ALIASES.items() for alias in aliases}

_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")
_KEY_VALUE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*[=:]\s*(.*?)\s*$")
_PASSPHRASE_JSON = re.compile(r'("passphrase"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.IGNORECASE)
_PASSPHRASE_TEXT = re.compile(r"(\bpassphrase\s*[=:]\s*)([^;\r\n]*)", re.IGNORECASE)


class ParseError(DomainError):
    """A body we refuse, with a machine code (`malformed_body`, `unknown_action`, ...) and a sentence."""


@dataclass(frozen=True)
class ParsedSignal:
    action: str  # buy, sell, exit, cancel, add
    ticker: str  # as sent (exchange prefix and all); signals_in.tickers resolves it
    sentiment: str = ""  # long, short, flat (after the trade), or "" when not sent
    quantity: Decimal | None = None  # None: the subscription sizes it (exits: the whole position)
    order_type: str = "market"
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_amount: Decimal | None = None
    signal_price: Decimal | None = None
    signal_time: datetime | None = None
    external_id: str = ""
    stop_loss: dict[str, Any] | None = None  # {"price": "..."} | {"ticks": n} | {"amount": "points"}, maybe "type"
    take_profit: dict[str, Any] | None = None
    time_in_force: str = ""
    comment: str = ""
    extras: dict[str, Any] = field(default_factory=dict)


# -- Step 1: bytes -> fields ------------------------------------------------------------------------


def decode_body(raw: bytes) -> dict[str, Any]:
    """The body's fields: JSON (whatever the Content-Type said) or key=value lines / `;` pairs."""
    if len(raw) > MAX_BODY_BYTES:
        raise ParseError(f"The body is larger than {MAX_BODY_BYTES // 1024} KB.", code="body_too_large")
    text = body_text(raw).strip().lstrip("\ufeff")
    if not text:
        raise ParseError("The body is empty; send a JSON object or key=value lines.", code="malformed_body")
    if text[0] in "{[":
        return _decode_json(text)
    return _decode_key_values(text)


def body_text(raw: bytes) -> str:
    """The body as storable text: undecodable bytes and NULs (PostgreSQL refuses them) replaced."""
    return raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def redact_passphrase(text: str) -> str:
    """The body with the value of any `passphrase` field blanked, before it is stored."""
    return _PASSPHRASE_TEXT.sub(r"\1***", _PASSPHRASE_JSON.sub(r"\1***\3", text))


def _decode_json(text: str) -> dict[str, Any]:
    try:
        # NaN (an unquoted numeric placeholder with no value) becomes Decimal NaN and is refused
        # by the field it sits in, with that field's name.
        data = json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)
    except (ValueError, RecursionError) as exc:
        if _PLACEHOLDER.search(text):
            raise ParseError(
                f"The body is not valid JSON and holds an unfilled placeholder {_PLACEHOLDER.search(text)[0]}: "
                "TradingView only fills placeholders it knows for this alert type.",
                code="unfilled_placeholder",
            ) from None
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise ParseError(
            f"The body is not valid JSON{where}. An unquoted placeholder that came out empty, or smart quotes, "
            "break JSON: quote every placeholder.",
            code="malformed_body",
        ) from None
    if not isinstance(data, dict):
        raise ParseError("The body must be a JSON object, not a list or a single value.", code="malformed_body")
    try:
        return _clean(data)
    except RecursionError:
        raise ParseError("The body is nested too deeply.", code="malformed_body") from None


def _decode_key_values(text: str) -> dict[str, Any]:
    """`key=value` per line, or CrossTrade's `key=value;` pairs (both at once work too)."""
    fields: dict[str, Any] = {}
    for part in re.split(r"[;\r\n]+", text):
        if not part.strip():
            continue
        match = _KEY_VALUE.match(part)
        if match is None:
            raise ParseError(
                f"Cannot read {part.strip()[:60]!r}: send a JSON object or key=value lines.", code="malformed_body"
            )
        key, value = match.groups()
        fields[key] = value.strip().strip('"').strip("'")
    return _clean(fields)


def _clean(value: Any) -> Any:
    """Strings that PostgreSQL can store: no NULs, no lone surrogates (\\ud800 is valid JSON)."""
    if isinstance(value, str):
        return value.encode("utf-8", errors="replace").decode("utf-8").replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(".", "")


def canonical_fields(data: dict[str, Any]) -> dict[str, Any]:
    """Our field names -> values; the first spelling present wins, unknown fields are dropped."""
    fields: dict[str, Any] = {}
    for key, value in data.items():
        name = _ALIAS_TO_FIELD.get(_key(key))
        if name is not None and name not in fields:
            fields[name] = value
    return fields


def passphrase_of(data: dict[str, Any]) -> str | None:
    value = canonical_fields(data).get("passphrase")
    return None if value is None else str(value)


# -- Step 2: fields -> ParsedSignal ------------------------------------------------------------------


def parse_body(raw: bytes) -> ParsedSignal:
    return parse_fields(decode_body(raw))


def parse_fields(data: dict[str, Any]) -> ParsedSignal:
    fields = canonical_fields(data)
    for name, value in fields.items():
        _refuse_placeholder(name, value)

    action = _action(fields)
    ticker = _text(fields, "ticker", MAX_TICKER_LENGTH)
    if not ticker:
        raise ParseError("ticker is required (e.g. MNQ1! or MNQZ2026).", code="missing_field", field="ticker")
    sentiment = _choice(fields, "sentiment", SENTIMENTS, "unknown_sentiment")
    quantity = _quantity(fields.get("quantity"), action)
    limit_price = _price(fields, "limit_price")
    stop_price = _price(fields, "stop_price")
    trail_amount = _price(fields, "trail_amount")
    order_type = _order_type(fields, limit_price, stop_price, trail_amount)
    signal_price = _price(fields, "signal_price")
    return ParsedSignal(
        action=action,
        ticker=ticker,
        sentiment=sentiment,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        stop_price=stop_price,
        trail_amount=trail_amount,
        signal_price=signal_price,
        signal_time=_time(fields.get("time")),
        external_id=_text(fields, "id", MAX_ID_LENGTH),
        stop_loss=_level(fields.get("stop_loss"), "stop_loss"),
        take_profit=_level(fields.get("take_profit"), "take_profit"),
        time_in_force=_text(fields, "time_in_force", 10).lower(),
        comment=_text(fields, "comment", 255, truncate=True),
        extras=fields["extras"] if isinstance(fields.get("extras"), dict) else {},
    )


def _refuse_placeholder(name: str, value: Any) -> None:
    if isinstance(value, str) and (found := _PLACEHOLDER.search(value)):
        raise ParseError(
            f"{name} holds the unfilled placeholder {found[0]}: TradingView did not substitute it "
            "(it only fills placeholders it knows for this alert type).",
            code="unfilled_placeholder",
            field=name,
        )
    if isinstance(value, dict):
        for key, inner in value.items():
            _refuse_placeholder(f"{name}.{key}", inner)


def _text(fields: dict[str, Any], name: str, max_length: int, *, truncate: bool = False) -> str:
    value = fields.get(name)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | Decimal):
        raise ParseError(f"{name} must be text (got {_show(value)}).", code=f"invalid_{name}", field=name)
    text = _plain(value).strip()
    if len(text) > max_length:
        if truncate:
            return text[:max_length]
        raise ParseError(f"{name} is longer than {max_length} characters.", code=f"invalid_{name}", field=name)
    return text


def _plain(value: str | Decimal) -> str:
    if isinstance(value, Decimal):
        # Positional only when short: format(Decimal("1e999999999"), "f") would be a gigabyte.
        return format(value, "f") if value.is_finite() and -30 < value.adjusted() < 30 else str(value)
    return value


def _action(fields: dict[str, Any]) -> str:
    command = fields.get("command")
    if isinstance(command, str) and _key(command) in COMMANDS:
        return COMMANDS[_key(command)]
    value = fields.get("action")
    if value is None or value == "":
        raise ParseError(
            "action is required: buy, sell, exit, cancel or add ({{strategy.order.action}} gives buy or sell).",
            code="missing_field",
            field="action",
        )
    action = ACTIONS.get(value.strip().lower()) if isinstance(value, str) else None
    if action is None:
        raise ParseError(
            f"Unknown action {_show(value)}: use buy, sell, exit, cancel or add.", code="unknown_action", field="action"
        )
    return action


def _choice(fields: dict[str, Any], name: str, choices: dict[str, str], code: str) -> str:
    value = fields.get(name)
    if value is None or value == "":
        return ""
    chosen = choices.get(_key(value)) if isinstance(value, str) else None
    if chosen is None:
        raise ParseError(
            f"Unknown {name} {_show(value)}: use one of {', '.join(sorted(set(choices)))}.", code=code, field=name
        )
    return chosen


def _order_type(
    fields: dict[str, Any], limit_price: Decimal | None, stop_price: Decimal | None, trail: Decimal | None
) -> str:
    order_type = _choice(fields, "order_type", ORDER_TYPES, "unknown_order_type")
    if not order_type:
        # Not said: the prices sent tell (TradersPost falls back to the subscription's default).
        order_type = {(True, True): "stop_limit", (True, False): "limit", (False, True): "stop"}.get(
            (limit_price is not None, stop_price is not None), "market"
        )
    needs = {"limit": ("limit_price",), "stop": ("stop_price",), "stop_limit": ("limit_price", "stop_price")}
    given = {"limit_price": limit_price, "stop_price": stop_price}
    for name in needs.get(order_type, ()):
        if given[name] is None:
            raise ParseError(f"A {order_type} order needs {name}.", code="missing_field", field=name)
    if order_type == "trailing_stop" and trail is None:
        raise ParseError("A trailing_stop order needs trailAmount.", code="missing_field", field="trail_amount")
    return order_type


def _number(value: Any) -> Decimal | None:
    """A finite number from a JSON number or a numeric string; None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        value = Decimal(str(value))
    if isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return None
    if isinstance(value, Decimal) and value.is_finite():
        return value
    return None


def _quantity(value: Any, action: str) -> Decimal | None:
    if value is None or value == "":
        return None
    number = _number(value)
    if number is not None and number == 0 and action in ("exit", "cancel"):
        return None  # PickMyTrade-style 0: the whole position
    too_fine = number is not None and 0 < number <= MAX_QUANTITY and number != number.quantize(QUANTITY_QUANTUM)
    if number is None or number <= 0 or number > MAX_QUANTITY or too_fine:
        raise ParseError(
            f'quantity must be a number of contracts above zero, such as 2 or "2" (got {_show(value)}).',
            code="invalid_quantity",
            field="quantity",
        )
    # 2.0 from {{strategy.order.contracts}} is 2; never an exponent form such as 1E+2.
    return _tidy(number)


def _tidy(number: Decimal) -> Decimal:
    """2.50 -> 2.5 and 100.0 -> 100 (never the exponent form 1E+2)."""
    return number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize()


def _price(fields: dict[str, Any], name: str) -> Decimal | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    return _price_value(value, name)


def _price_value(value: Any, name: str) -> Decimal:
    number = _number(value)
    if number is not None and 0 < number <= MAX_PRICE:
        number = _tidy(number.quantize(PRICE_QUANTUM))
    if number is None or number <= 0 or number > MAX_PRICE:
        raise ParseError(
            f'{name} must be a price above zero, such as 21000.25 or "21000.25" (got {_show(value)}).',
            code="invalid_price",
            field=name,
        )
    return number


def _time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    parsed: datetime | None = None
    try:
        if isinstance(value, str) and _number(value) is None:
            parsed = datetime.fromisoformat(value.strip())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)  # TradingView's {{time}} / {{timenow}} are UTC
            parsed = parsed.astimezone(UTC)
        elif (number := _number(value)) is not None:
            # Epoch seconds, or milliseconds when it is too large to be seconds.
            seconds = number / 1000 if number > 10**11 else number
            parsed = datetime.fromtimestamp(float(seconds), tz=UTC)
    except (ValueError, OverflowError, OSError):
        parsed = None
    if parsed is None:
        raise ParseError(
            f"time must be an ISO-8601 time such as 2026-11-20T14:30:00Z (got {_show(value)}).",
            code="invalid_time",
            field="time",
        )
    return parsed


def _level(value: Any, name: str) -> dict[str, Any] | None:
    """stopLoss / takeProfit -> {"price": "..."} | {"ticks": n} | {"amount": "points"} (+ "type", "limit_price")."""
    if value is None or value == "" or value == {}:
        return None
    if not isinstance(value, dict):
        return {"price": _str(_price_value(value, name))}  # a bare number is a price
    fields = {_key(k): v for k, v in value.items()}
    level: dict[str, Any] = {}
    kind = fields.get("type")
    if kind not in (None, ""):
        level_type = ORDER_TYPES.get(_key(kind)) if isinstance(kind, str) else None
        if level_type not in ("stop", "stop_limit", "trailing_stop", "limit"):
            raise ParseError(f"Unknown {name}.type {_show(kind)}.", code="unknown_order_type", field=f"{name}.type")
        if level_type not in ("stop", "limit"):
            level["type"] = level_type
    if "percent" in fields or "trailpercent" in fields:
        raise ParseError(
            f"{name} in percent is not supported for futures: use stopPrice/limitPrice, amount (points) or ticks.",
            code="unsupported_field",
            field=name,
        )
    price_key = "stopprice" if name == "stop_loss" else "limitprice"
    if fields.get(price_key) not in (None, ""):
        level["price"] = _str(_price_value(fields[price_key], f"{name}.{price_key}"))
    elif fields.get("ticks") not in (None, ""):
        ticks = _number(fields["ticks"])
        if ticks is None or ticks < 1 or ticks != ticks.to_integral_value() or ticks > 100000:
            raise ParseError(
                f"{name}.ticks must be a whole number of ticks, 1 or more (got {_show(fields['ticks'])}).",
                code="invalid_price",
                field=f"{name}.ticks",
            )
        level["ticks"] = int(ticks)
    elif fields.get("amount") not in (None, "") or fields.get("trailamount") not in (None, ""):
        amount_key = "amount" if fields.get("amount") not in (None, "") else "trailamount"
        level["amount"] = _str(_price_value(fields[amount_key], f"{name}.{amount_key}"))
    else:
        raise ParseError(
            f"{name} needs a price ({'stopPrice' if name == 'stop_loss' else 'limitPrice'}), an amount in points "
            "or ticks.",
            code="missing_field",
            field=name,
        )
    if name == "stop_loss" and level.get("type") == "stop_limit":
        if fields.get("limitprice") in (None, ""):
            raise ParseError("A stop_limit stopLoss needs limitPrice.", code="missing_field", field="stop_loss")
        level["limit_price"] = _str(_price_value(fields["limitprice"], "stop_loss.limitPrice"))
    return level


def _show(value: Any) -> str:
    text = _plain(value) if isinstance(value, str | Decimal) else json.dumps(value, default=str)
    return repr(text[:40] + ("…" if len(text) > 40 else ""))


def normalised_payload(parsed: ParsedSignal) -> dict[str, Any]:
    """What goes into Signal.payload: everything understood, JSON-safe (prices as strings), no secrets."""
    payload: dict[str, Any] = {
        "action": parsed.action,
        "sentiment": parsed.sentiment,
        "ticker": parsed.ticker,
        "quantity": _str(parsed.quantity),
        "order_type": parsed.order_type,
        "limit_price": _str(parsed.limit_price),
        "stop_price": _str(parsed.stop_price),
        "trail_amount": _str(parsed.trail_amount),
        "signal_price": _str(parsed.signal_price),
        "signal_time": parsed.signal_time.isoformat() if parsed.signal_time else None,
        "id": parsed.external_id,
        "stop_loss": parsed.stop_loss,
        "take_profit": parsed.take_profit,
        "time_in_force": parsed.time_in_force,
        "comment": parsed.comment,
        "extras": _jsonable(parsed.extras),
    }
    return {k: v for k, v in payload.items() if v not in (None, "", {})}


def _str(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _plain(value) if value.is_finite() else None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
