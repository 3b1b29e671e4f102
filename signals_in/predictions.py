"""A prediction feed's JSON body read into predictions (pure): lenient on spelling, strict on meaning.

Accepted bodies: a list of predictions, or an object {"predictions": [...]}. Each prediction has
`symbol` (a root such as MNQ or a contract such as MNQZ6), `direction` (BUY, SELL or SHORT, any
case), `confidence` (0..1; also accepted as a percentage 1..100 written with a % sign), `horizon`
(free text or a number, kept as given) and `id` (the feed's own id, unique per prediction).
An item that is not understood is skipped with a reason; it never fails the whole body.

What a direction means for us (TradersPost's convention, which TradingView users already know):
BUY is a buy, SHORT is a sell, and SELL is a sell too. A sell while flat therefore enters short;
a sell while long exits (and reverses if the subscription allows it) in the fan-out. A feed that
means "exit only" should not be a prediction feed.
"""

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_ID_LENGTH = 100  # Signal.external_id
MAX_SYMBOL_LENGTH = 40  # Signal.ticker

DIRECTIONS = {"BUY": "buy", "LONG": "buy", "SELL": "sell", "SHORT": "sell"}


@dataclass(frozen=True)
class Prediction:
    external_id: str
    symbol: str
    direction: str  # as sent, upper case: BUY, SELL, SHORT
    action: str  # buy or sell
    confidence: Decimal
    horizon: str


@dataclass(frozen=True)
class SkippedItem:
    index: int
    code: str
    reason: str


@dataclass(frozen=True)
class ParsedFeed:
    predictions: list[Prediction]
    skipped: list[SkippedItem]

    @property
    def received(self) -> int:
        return len(self.predictions) + len(self.skipped)


class FeedBodyError(ValueError):
    """The body as a whole is not a feed answer (not JSON, or no list of predictions)."""

    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def parse_feed_body(body: bytes | str) -> ParsedFeed:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FeedBodyError(f"The feed's answer is not JSON ({exc}).", code="malformed_body") from exc
    return parse_feed_data(data)


def parse_feed_data(data: Any) -> ParsedFeed:
    items = data.get("predictions") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise FeedBodyError(
            'The feed answer must be a list of predictions or an object {"predictions": [...]}.',
            code="no_predictions",
        )
    predictions: list[Prediction] = []
    skipped: list[SkippedItem] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        try:
            prediction = parse_prediction(item)
        except InvalidPrediction as exc:
            skipped.append(SkippedItem(index=index, code=exc.code, reason=f"item {index}: {exc.reason}"))
            continue
        if prediction.external_id in seen:
            reason = f"item {index}: id {prediction.external_id!r} repeats in the same answer"
            skipped.append(SkippedItem(index=index, code="repeated_id", reason=reason))
            continue
        seen.add(prediction.external_id)
        predictions.append(prediction)
    return ParsedFeed(predictions=predictions, skipped=skipped)


class InvalidPrediction(ValueError):
    def __init__(self, reason: str, *, code: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _field(item: dict[str, Any], *names: str) -> Any:
    """The first of `names` present, whatever the case of the key."""
    lowered = {str(k).lower(): v for k, v in item.items()}
    for name in names:
        if name in lowered and lowered[name] is not None:
            return lowered[name]
    return None


def parse_confidence(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise InvalidPrediction("confidence is missing.", code="missing_confidence")
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        number = Decimal(text.rstrip("%").strip())
    except InvalidOperation as exc:
        raise InvalidPrediction(f"confidence {value!r} is not a number.", code="invalid_confidence") from exc
    if not number.is_finite():
        raise InvalidPrediction(f"confidence {value!r} is not a number.", code="invalid_confidence")
    if percent:
        number = number / 100
    if not Decimal(0) <= number <= Decimal(1):
        raise InvalidPrediction(
            f"confidence {value!r} is outside 0..1 (write percentages with a % sign).", code="invalid_confidence"
        )
    return number.quantize(Decimal("0.0001"))


def parse_prediction(item: Any) -> Prediction:
    if not isinstance(item, dict):
        raise InvalidPrediction("A prediction must be a JSON object.", code="not_an_object")
    raw_id = _field(item, "id", "prediction_id", "external_id")
    if raw_id is None or isinstance(raw_id, bool | dict | list) or not str(raw_id).strip():
        raise InvalidPrediction("id is missing: without it a prediction cannot be deduplicated.", code="missing_id")
    external_id = str(raw_id).strip()
    if len(external_id) > MAX_ID_LENGTH:
        raise InvalidPrediction(f"id is longer than {MAX_ID_LENGTH} characters.", code="invalid_id")
    symbol = _field(item, "symbol", "ticker")
    if not isinstance(symbol, str) or not symbol.strip():
        raise InvalidPrediction("symbol is missing.", code="missing_symbol")
    symbol = symbol.strip().upper()
    if len(symbol) > MAX_SYMBOL_LENGTH or not symbol.replace(" ", "").replace("-", "").replace("!", "").isalnum():
        raise InvalidPrediction(f"symbol {symbol!r} is not a ticker.", code="invalid_symbol")
    direction = _field(item, "direction", "side", "action")
    if not isinstance(direction, str) or direction.strip().upper() not in DIRECTIONS:
        raise InvalidPrediction(f"direction {direction!r} is not BUY, SELL or SHORT.", code="unknown_direction")
    direction = direction.strip().upper()
    confidence = parse_confidence(_field(item, "confidence", "probability"))
    horizon = _field(item, "horizon")
    return Prediction(
        external_id=external_id,
        symbol=symbol,
        direction=direction,
        action=DIRECTIONS[direction],
        confidence=confidence,
        horizon="" if horizon is None else str(horizon)[:50],
    )
