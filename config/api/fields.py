"""Input fields whose errors carry our codes: a whole-number quantity and an exact price."""

from decimal import Decimal, InvalidOperation
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


@extend_schema_field(OpenApiTypes.INT)
class QuantityField(serializers.Field):
    """A whole number of contracts given as a JSON integer or a string of digits."""

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool):
            self._fail(data)
        try:
            value = Decimal(str(data).strip()) if isinstance(data, int | Decimal | str) else None
        except InvalidOperation:
            value = None
        if value is None or not value.is_finite() or value != value.to_integral_value() or value < 1:
            self._fail(data)
        return int(value)

    def _fail(self, data: Any) -> None:
        raise serializers.ValidationError(
            f"quantity must be a whole number of contracts, 1 or more (got {data!r}).", code="invalid_quantity"
        )

    def to_representation(self, value: int) -> int:
        return value


@extend_schema_field(OpenApiTypes.STR)
class PriceInputField(serializers.Field):
    """A price as a JSON number or a string ("5000.25"); NaN, infinities and text are refused."""

    def to_internal_value(self, data: Any) -> Decimal:
        value: Decimal | None = None
        if isinstance(data, int | Decimal | str) and not isinstance(data, bool):
            try:
                value = Decimal(str(data).strip())
            except InvalidOperation:
                value = None
        if value is None or not value.is_finite():
            raise serializers.ValidationError(
                f'{self.field_name} must be a number such as "5000.25" (got {data!r}).', code="invalid_price"
            )
        if value <= 0:
            raise serializers.ValidationError(f"{self.field_name} must be above zero.", code="invalid_price")
        return value

    def to_representation(self, value: Decimal) -> str:
        return str(value)


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "example": "4990.25"},
            {"type": "object", "properties": {"ticks": {"type": "integer", "minimum": 1}}, "required": ["ticks"]},
        ]
    }
)
class LevelInputField(serializers.Field):
    """A stop-loss or take-profit level: a price ("4990.25" or 4990.25) or {"ticks": n} from the entry."""

    def to_internal_value(self, data: Any) -> tuple[Decimal | None, int | None]:
        if isinstance(data, dict):
            ticks = data.get("ticks")
            if set(data) != {"ticks"} or isinstance(ticks, bool) or not isinstance(ticks, int) or ticks < 1:
                raise serializers.ValidationError(
                    f'{self.field_name} as ticks is {{"ticks": n}} with n a whole number, 1 or more (got {data!r}).',
                    code="invalid_ticks",
                )
            return None, ticks
        price = PriceInputField()
        price.bind(self.field_name, self.parent)
        return price.to_internal_value(data), None

    def to_representation(self, value: Any) -> Any:
        return value


class StrictSerializer(serializers.Serializer):
    """Refuses keys it does not know, so a typo ("limitPrice") is an error rather than ignored."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        serializers.ErrorDetail("The body must be a JSON object.", code="malformed_body")
                    ]
                }
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {
                    unknown[0]: [
                        serializers.ErrorDetail(
                            f"Unknown field {unknown[0]!r}; expected one of: {', '.join(self.fields)}.",
                            code="unknown_field",
                        )
                    ]
                }
            )
        return super().to_internal_value(data)
