"""marshmallow fields shared by every API schema.

They are strict about what they accept, and the OpenAPI document says exactly that: no string may hold
a NUL or an unpaired surrogate, every string has a bounded length, integers are JSON integers (never
1.5, never "1"), money is a decimal string, countries are real ISO 3166-1 codes, and dates fall in a
range our storage and calendars handle.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from apispec import BasePlugin
from babel import Locale
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing, validate
from marshmallow.decorators import POST_DUMP, POST_LOAD, PRE_DUMP, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

# re.ASCII throughout: as in ECMA-262, \d is 0-9 only (Python's \d also matches other scripts' digits).
_DECIMAL = re.compile(r"^-?\d{1,14}(\.\d{1,6})?$", re.ASCII)
_UNSIGNED_DECIMAL = re.compile(r"^\d{1,14}(\.\d{1,6})?$", re.ASCII)

# Characters no string of the API may hold: PostgreSQL refuses NUL in text, and an unpaired surrogate
# (JSON allows "\ud800") cannot be encoded as UTF-8 at all.
_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")
# How the document states it (ECMA-262 syntax): any string without NUL. JSON text carries no unpaired
# surrogate that a schema could describe.
NO_NUL_PATTERN = r"^[^\u0000]*$"

EARLIEST_YEAR = 2000
LATEST_YEAR = 2100
_YEAR = r"(20\d{2}|2100)"
PERIOD_PATTERN = rf"^{_YEAR}-(0[1-9]|1[0-2])$"
DATE_TIME_PATTERN = (
    rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{{1,6}})?"
    r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)$"
)
_DATE_TIME = re.compile(DATE_TIME_PATTERN, re.ASCII)
_INTEGER_TEXT = re.compile(r"-?[0-9]{1,18}")


def forbidden_character(text: str) -> str | None:
    """Why `text` cannot be accepted (it holds a NUL or an unpaired surrogate), or None when it can."""
    found = _FORBIDDEN_CHARACTER.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "Must not contain NUL characters."
    return "Must not contain unpaired surrogates (invalid Unicode)."


def money_str(value: Decimal) -> str:
    """A decimal as text with at least two decimals and no float noise ("9.90", "0.0125")."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normalized = normalized.quantize(Decimal("0.01"))
    return f"{normalized:f}"


class DecimalString(fields.Field):
    """Money on the wire: a JSON string such as "12.50", never a float.

    Non-negative unless `minimum=None`, and the documented pattern says so (no leading minus).
    """

    def __init__(self, *, minimum: Decimal | None = Decimal(0), **kwargs: Any) -> None:
        signed = minimum is None or minimum < 0
        self._pattern = _DECIMAL if signed else _UNSIGNED_DECIMAL
        metadata: dict[str, Any] = {
            "type": "string",
            "format": "decimal",
            "pattern": self._pattern.pattern,
            "maxLength": len("-") + 14 + len(".") + 6,
            "example": "9.99",
        }
        if minimum is not None:
            metadata["x-minimum"] = str(minimum)
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, **kwargs)
        self.minimum = minimum

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else money_str(Decimal(value))

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if self.minimum is not None and isinstance(value, str) and _DECIMAL.fullmatch(value) and value.startswith("-"):
            raise ValidationError(f"Must be at least {self.minimum}.")
        if not isinstance(value, str) or not self._pattern.fullmatch(value):
            raise ValidationError('Must be a decimal string such as "12.50" (at most 6 decimals).')
        amount = Decimal(value)
        if self.minimum is not None and amount < self.minimum:
            raise ValidationError(f"Must be at least {self.minimum}.")
        return amount


def _absent() -> None:
    return None


class Text(fields.String):
    """A string of bounded length, without NUL or unpaired surrogates, optionally matching `pattern`.

    `pattern` is an anchored regular expression valid both in Python and in ECMA-262 (the document's
    dialect); the whole value must match it.
    """

    def __init__(
        self,
        *,
        min_length: int = 0,
        max_length: int = 255,
        pattern: str | None = None,
        pattern_error: str | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("allow_none") is False and "load_default" in kwargs and kwargs["load_default"] is None:
            # An optional query parameter: None when absent, but never null on the wire, so no null default
            # in the document (a callable default is not documented).
            kwargs["load_default"] = _absent
        validators = kwargs.pop("validate", None)
        validators = [] if validators is None else list(validators) if isinstance(validators, list) else [validators]
        # The first Length validator is what the document shows as minLength/maxLength.
        validators.insert(0, validate.Length(min=min_length or None, max=max_length))
        metadata = {"pattern": pattern or NO_NUL_PATTERN}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(validate=validators, metadata=metadata, **kwargs)
        self._regex = re.compile(pattern, re.ASCII) if pattern else None
        self._pattern_error = pattern_error or "Has an invalid format."

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        reason = forbidden_character(text)
        if reason:
            raise ValidationError(reason)
        if self._regex is not None and not self._regex.fullmatch(text):
            raise ValidationError(self._pattern_error)
        return text


class Integer(fields.Integer):
    """A JSON integer: 1.5, 1.0, "1" and true are refused rather than truncated or coerced.

    `from_text=True` is for query strings, where every value is text: plain ASCII digits only
    (no "1.5", "1e3", "+1", "1_000" or " 1").
    """

    def __init__(self, *, from_text: bool = False, **kwargs: Any) -> None:
        super().__init__(strict=True, **kwargs)
        self.from_text = from_text

    def _validated(self, value: Any) -> int:
        if self.from_text and isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.make_error("invalid", input=value)
        return value


def _iso_countries() -> frozenset[str]:
    # CLDR territories hold the ISO 3166-1 alpha-2 codes and, beside them, regions ("001", "EU", "UN"),
    # exceptionally reserved codes (AC, CP, CQ, DG, EA, IC, TA), CLDR's own (QO, XA, XB, ZZ, EZ) and XK,
    # which ISO has not assigned.
    not_iso = {"AC", "CP", "CQ", "DG", "EA", "EU", "EZ", "IC", "QO", "TA", "UN", "XA", "XB", "XK", "ZZ"}
    codes = {str(code) for code in Locale("en").territories if len(str(code)) == 2 and str(code).isalpha()}
    return frozenset(codes - not_iso)


ISO_COUNTRIES = _iso_countries()


class Country(Text):
    """An ISO 3166-1 alpha-2 country code that is assigned to a country (FR, DE, US; not XX or EU)."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"example": "FR", "enum": sorted(ISO_COUNTRIES)}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$", metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            text = super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            raise ValidationError("Must be an ISO 3166-1 alpha-2 country code such as FR.") from None
        if text not in ISO_COUNTRIES:
            raise ValidationError("Must be an ISO 3166-1 alpha-2 country code such as FR.")
        return text


class Period(Text):
    """A billing period, "YYYY-MM", in the years 2000 to 2100."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"example": "2025-01"}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(
            min_length=7,
            max_length=7,
            pattern=PERIOD_PATTERN,
            pattern_error=f"Must be a period YYYY-MM in the years {EARLIEST_YEAR} to {LATEST_YEAR}.",
            metadata=metadata,
            **kwargs,
        )


DATE_PATTERN = r"^(20[0-9]{2}|2100)-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"


def _calendar_day(text: str) -> None:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        raise ValidationError("Not a day of the calendar.") from None


class LocalDate(Text):
    """A calendar date, YYYY-MM-DD, read in the tenant's time zone; loaded as text (`as_date` reads it)."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"example": "2027-01-01", "format": "date"}
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(
            min_length=10,
            max_length=10,
            pattern=DATE_PATTERN,
            pattern_error="Must be a date YYYY-MM-DD in the years 2000 to 2100.",
            validate=_calendar_day,
            metadata=metadata,
            **kwargs,
        )

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


def as_date(text: str | None) -> dt.date | None:
    """A LocalDate's text as a date (already checked to be a day of the calendar)."""
    return None if text is None else dt.date.fromisoformat(text)


class DateTime(fields.AwareDateTime):
    """An RFC 3339 date-time with its offset ("2025-01-31T23:59:59Z"), in the years 2000 to 2100.

    Naive times are refused (whose midnight would it be?), and so are years our calendars and the
    database do not handle: "9999-12-31T23:59:59-14:00" is past the last representable instant in UTC.
    """

    def __init__(self, **kwargs: Any) -> None:
        metadata = {
            "pattern": DATE_TIME_PATTERN,
            "maxLength": 32,
            "example": "2025-01-31T23:59:59Z",
        }
        metadata.update(kwargs.pop("metadata", {}))
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dt.datetime:
        if not isinstance(value, str) or len(value) > 32 or forbidden_character(value):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        if not _DATE_TIME.fullmatch(value):
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T.*", value):
                year = int(value[:4])
                if not EARLIEST_YEAR <= year <= LATEST_YEAR:
                    raise ValidationError(f"Must be in the years {EARLIEST_YEAR} to {LATEST_YEAR}.")
            raise ValidationError(
                'Must be an RFC 3339 date-time with a UTC offset, such as "2025-01-31T23:59:59Z" or '
                '"2025-01-31T23:59:59+01:00".'
            )
        return super()._deserialize(value, attr, data, **kwargs)


class SchemaExtrasPlugin(BasePlugin):
    """Adds a schema's `openapi_extra` (rules across fields, such as `anyOf` of required fields) to its document.

    A marshmallow schema states each field; a rule like "give subscription or msisdn" lives in a
    `validates_schema` method, and `openapi_extra` states it in the document too.
    """

    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        if schema is None:
            return None
        extra = getattr(schema if isinstance(schema, type) else type(schema), "openapi_extra", None)
        return dict(extra) if extra else None


# A loader of one item: the dict the schema's `load` would give, or None when it would refuse the item or
# when the loader cannot be sure it would not.
FastLoad = Callable[[Any], dict[str, Any] | None]


def _text_converter(field: Text) -> Callable[[Any], Any]:
    validators = field.validators
    length = validators[0]
    if len(validators) != 1 or not isinstance(length, validate.Length) or length.equal is not None:
        raise TypeError(f"{field!r}: only its length is checked fast")
    low, high, regex = length.min or 0, length.max, field._regex

    def convert(value: Any) -> Any:
        if (
            type(value) is str
            and low <= len(value) <= (high if high is not None else len(value))
            and _FORBIDDEN_CHARACTER.search(value) is None
            and (regex is None or regex.fullmatch(value) is not None)
        ):
            return value
        return missing

    return convert


def _integer_converter(field: Integer) -> Callable[[Any], Any]:
    if field.from_text:
        raise TypeError(f"{field!r}: integers from text are not checked fast")
    bounds = []
    for rule in field.validators:
        if not isinstance(rule, validate.Range):
            raise TypeError(f"{field!r}: only ranges are checked fast")
        bounds.append(rule)

    def convert(value: Any) -> Any:
        if type(value) is not int:
            return missing
        for rule in bounds:
            if rule.min is not None and (value < rule.min if rule.min_inclusive else value <= rule.min):
                return missing
            if rule.max is not None and (value > rule.max if rule.max_inclusive else value >= rule.max):
                return missing
        return value

    return convert


def _date_time_value(value: Any) -> Any:
    """The instant of an RFC 3339 text the DateTime field accepts, or `missing` when it might not accept it."""
    if type(value) is not str or len(value) > 32 or not _DATE_TIME.fullmatch(value):
        return missing
    try:
        return dt.datetime.fromisoformat(value)  # aware: the pattern requires Z or an offset
    except ValueError:  # a day the calendar lacks (2026-02-30)
        return missing


def _nested_converter(field: fields.Nested) -> Callable[[Any], Any]:
    if field.validators or field.many or field.unknown is not None:
        raise TypeError(f"{field!r}: only a plain nested record is checked fast")
    load = fast_loader(field.schema)

    def convert(value: Any) -> Any:
        loaded = load(value)
        return missing if loaded is None else loaded

    return convert


def _list_converter(field: fields.List) -> Callable[[Any], Any]:
    low, high = 0, None
    for rule in field.validators:
        if not isinstance(rule, validate.Length) or rule.equal is not None:
            raise TypeError(f"{field!r}: only its length is checked fast")
        low, high = max(low, rule.min or 0), rule.max if high is None else min(high, rule.max or high)
    inner = field.inner
    item: Callable[[Any], Any]
    if type(inner) is fields.Nested:
        item = _nested_converter(inner)
    elif type(inner) is fields.Dict and inner.key_field is None and inner.value_field is None and not inner.validators:
        item = _dict_value
    else:
        raise TypeError(f"{field!r}: a list of {type(inner).__name__} is not checked fast")

    def convert(value: Any) -> Any:
        if type(value) is not list or len(value) < low or (high is not None and len(value) > high):
            return missing
        items = []
        for one in value:
            converted = item(one)
            if converted is missing:
                return missing
            items.append(converted)
        return items

    return convert


def _dict_value(value: Any) -> Any:
    return dict(value) if type(value) is dict else missing


def fast_loader(schema: Schema) -> FastLoad:
    """A loader that gives, for a record of Text, Integer and DateTime fields, nested records of the same and
    lists of them, the same dict as `schema.load`, checking the same rules without marshmallow's machinery
    (three to ten times faster).

    It answers None for anything it would refuse, and for anything it is unsure of: the caller then loads
    with the schema, which gives the errors. Schema-level validators run on its result as `load` runs them.
    Unknown fields are refused or dropped as the schema says (RAISE or EXCLUDE). A schema it cannot check the
    same way (other fields or validators, load hooks) is refused here.
    """
    if (
        schema.unknown not in (RAISE, EXCLUDE)
        or schema._hooks[PRE_LOAD]
        or schema._hooks[POST_LOAD]
        or schema._hooks[VALIDATES]
    ):
        raise TypeError(f"{schema!r}: unknown fields kept, load hooks and field validators are not checked fast")
    if any(many or kwargs.get("pass_original") for _, many, kwargs in schema._hooks[VALIDATES_SCHEMA]):
        raise TypeError(f"{schema!r}: its schema validators are not checked fast")
    whole = [getattr(schema, name) for name, _, _ in schema._hooks[VALIDATES_SCHEMA]]
    plan: list[tuple[str, str, Callable[[Any], Any], bool, bool, Any]] = []
    for name, field in schema.load_fields.items():
        convert: Callable[[Any], Any]
        if type(field) is Text:
            convert = _text_converter(field)
        elif type(field) is Integer:
            convert = _integer_converter(field)
        elif type(field) is DateTime and not field.validators and field.default_timezone is None:
            convert = _date_time_value
        elif type(field) is fields.Nested:
            convert = _nested_converter(field)
        elif type(field) is fields.List:
            convert = _list_converter(field)
        else:
            raise TypeError(f"{name}: {type(field).__name__} is not checked fast")
        plan.append((field.data_key or name, name, convert, field.required, field.allow_none, field.load_default))
    keys = frozenset(key for key, *_ in plan)
    strict = schema.unknown == RAISE

    def load(item: Any) -> dict[str, Any] | None:
        if type(item) is not dict or (strict and not keys.issuperset(item)):
            return None
        loaded: dict[str, Any] = {}
        for key, name, convert, required, allow_none, default in plan:
            value = item.get(key, missing)
            if value is missing:
                if required:
                    return None
                if default is not missing:
                    loaded[name] = default() if callable(default) else default
                continue
            if value is None:
                if not allow_none:
                    return None
                loaded[name] = None
                continue
            converted = convert(value)
            if converted is missing:
                return None
            loaded[name] = converted
        try:
            for validator in whole:
                validator(loaded, partial=None, many=False, unknown=RAISE)
        except ValidationError:
            return None
        return loaded

    return load


class FastList(fields.List):
    """A list of nested records that `fast_loader` loads when every one is well formed (a batch of thousands
    in a few milliseconds); any record it is unsure of sends the whole list through the schema, which
    gives the same result or the errors, index by index."""

    def __init__(self, inner: fields.Nested, **kwargs: Any) -> None:
        super().__init__(inner, **kwargs)
        self._fast: FastLoad | None = None

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[Any]:
        if type(value) is list:
            if self._fast is None:
                nested = self.inner
                assert isinstance(nested, fields.Nested)
                self._fast = fast_loader(nested.schema)
            loaded = []
            for item in value:
                record = self._fast(item)
                if record is None:
                    break
                loaded.append(record)
            else:
                return loaded
        return super()._deserialize(value, attr, data, **kwargs)


# A dumper of one object: the dict the schema's `dump` gives.
FastDump = Callable[[Any], dict[str, Any]]


def _attribute(obj: Any, key: str) -> Any:
    """What marshmallow reads as an object's `key`: an item of a mapping, else an attribute (missing if neither)."""
    if hasattr(obj, "__getitem__"):
        try:
            return obj[key]
        except (KeyError, IndexError, TypeError, AttributeError):
            pass
    return getattr(obj, key, missing)


def _leaf(field: fields.Field) -> Callable[[Any], Any]:
    def dump(value: Any) -> Any:
        return field._serialize(value, None, None)

    return dump


def fast_dumper(schema: Schema) -> FastDump:
    """A dumper that gives the same dict as `schema.dump` for a schema of plain strings and integers, and lists
    of nested schemas of them, without marshmallow's per-field machinery (a batch's thousands of outcomes
    in a few milliseconds). A schema with anything else (methods, defaults, renamed attributes, dump hooks)
    is refused here."""
    if schema._hooks[PRE_DUMP] or schema._hooks[POST_DUMP]:
        raise TypeError(f"{schema!r}: dump hooks are not run fast")
    plan: list[tuple[str, str, Callable[[Any], Any]]] = []
    for name, field in schema.dump_fields.items():
        if field.dump_default is not missing or field.attribute is not None:
            raise TypeError(f"{name}: defaults and renamed attributes are not dumped fast")
        convert: Callable[[Any], Any]
        if type(field) in (fields.String, Text) or (
            isinstance(field, fields.Integer) and type(field) in (fields.Integer, Integer) and not field.as_string
        ):
            convert = _leaf(field)
        elif type(field) is fields.List and type(field.inner) is fields.Nested and not field.inner.many:
            convert = _each(fast_dumper(field.inner.schema))
        else:
            raise TypeError(f"{name}: {type(field).__name__} is not dumped fast")
        plan.append((name, field.data_key or name, convert))

    def dump(obj: Any) -> dict[str, Any]:
        dumped: dict[str, Any] = {}
        for name, key, convert in plan:
            value = _attribute(obj, name)
            if value is not missing:
                dumped[key] = convert(value)
        return dumped

    return dump


def _each(dump: FastDump) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        return None if value is None else [dump(item) for item in value]

    return convert
