"""marshmallow fields shared by every API schema."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import ValidationError, fields

_DECIMAL = re.compile(r"^-?\d{1,14}(\.\d{1,6})?$")


def money_str(value: Decimal) -> str:
    """A decimal as text with at least two decimals and no float noise ("9.90", "0.0125")."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normalized = normalized.quantize(Decimal("0.01"))
    return f"{normalized:f}"


class DecimalString(fields.Field):
    """Money on the wire: a JSON string such as "12.50", never a float."""

    def __init__(self, *, minimum: Decimal | None = Decimal(0), **kwargs: Any) -> None:
        metadata = {"type": "string", "format": "decimal", "pattern": _DECIMAL.pattern, "example": "9.99"}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, **kwargs)
        self.minimum = minimum

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else money_str(Decimal(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str) or not _DECIMAL.match(value):
            raise ValidationError('Must be a decimal string such as "12.50" (at most 6 decimals).')
        amount = Decimal(value)
        if self.minimum is not None and amount < self.minimum:
            raise ValidationError(f"Must be at least {self.minimum}.")
        return amount


class Country(fields.String):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(metadata={"example": "FR", "pattern": "^[A-Z]{2}$"}, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if not re.fullmatch(r"[A-Z]{2}", text):
            raise ValidationError("Must be an ISO 3166 alpha-2 country code such as FR.")
        return text
