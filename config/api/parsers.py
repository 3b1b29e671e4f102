"""JSON bodies with exact decimals: 5000.25 arrives as Decimal("5000.25"), never as a float."""

import json
from decimal import Decimal
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


class DecimalJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return json.loads(stream.read().decode(encoding), parse_float=Decimal, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"The body is not valid JSON: {exc}") from exc
