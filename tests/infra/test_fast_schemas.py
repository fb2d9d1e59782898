"""The fast loader and dumper of batch records answer as their schemas would.

Every record hypothesis makes, valid or hostile, either loads to exactly what `schema.load` gives, or is
left to the schema (None); a record the schema refuses is never taken. Well-formed records are taken.
Every batch result dumps to exactly what `schema.dump` gives.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from mvne.charging.online.api import ChargingDataRequestSchema
from mvne.charging.schemas import (
    CALLED_PATTERN,
    MSISDN_PATTERN,
    PLMN_PATTERN,
    UsageBatchResultSchema,
    UsageBatchSchema,
    UsageRecordInSchema,
)
from mvne.charging.usage import IngestResult, RecordOutcome
from mvne.infra.fields import Country, DateTime, Integer, LocalDate, Text, fast_dumper, fast_loader

SCHEMA = UsageRecordInSchema()
LOAD = fast_loader(SCHEMA)

OFFSETS = st.sampled_from(["Z", "+00:00", "+01:00", "-05:30", "+14:00", "-23:59", "+24:00", "", "z", "+0100"])
FRACTIONS = st.sampled_from(["", ".5", ".123456", ".1234567", ".", ",5"])


@st.composite
def instants(draw: st.DrawFn) -> str:
    """RFC 3339 texts, most of them valid; some with impossible days, years out of range or odd offsets."""
    year = draw(st.sampled_from([1999, 2000, 2026, 2100, 2101, 9999]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 24)), draw(st.integers(0, 60)), draw(st.integers(0, 60))
    separator = draw(st.sampled_from(["T", "T", "T", " ", "t"]))
    text = f"{year:04d}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}"
    return text + draw(FRACTIONS) + draw(OFFSETS)


def valid_instants() -> st.SearchStrategy[str]:
    offsets = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(minutes=330))])
    # hypothesis takes naive bounds and adds the zone it draws
    first, last = dt.datetime(2000, 1, 2), dt.datetime(2099, 12, 30)  # noqa: DTZ001
    return st.datetimes(min_value=first, max_value=last, timezones=offsets).map(dt.datetime.isoformat)


ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
WORDS = st.text(st.characters(codec="utf-8"), max_size=140)
# A short word with a NUL or a lone surrogate inside: the schema refuses both, whatever else the field allows.
FORBIDDEN = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(max_size=3),
    st.sampled_from(["\x00", "\ud800", "\udfff"]),
    st.text(max_size=3),
)
TEXTS = WORDS | FORBIDDEN
QUANTITIES = st.integers(-(2 * 10**15), 2 * 10**15) | st.sampled_from([10**15, -(10**15), 10**15 + 1, 0, 1])

HOSTILE_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "record_id": TEXTS | ODD,
    "subscription": TEXTS | ODD,
    "msisdn": st.from_regex(MSISDN_PATTERN) | TEXTS | ODD,
    "service": st.sampled_from(["data", "voice", "sms", "mms", "fax", ""]) | TEXTS | ODD,
    "started_at": valid_instants() | instants() | TEXTS | ODD,
    "volume": QUANTITIES | ODD,
    "duration": QUANTITIES | ODD,
    "count": QUANTITIES | ODD,
    "visited_plmn": st.from_regex(PLMN_PATTERN) | TEXTS | ODD,
    "called_number": st.from_regex(CALLED_PATTERN) | TEXTS | ODD,
    "rating_group": st.integers(-2, 2**32) | st.sampled_from([2**32 - 1, 2**32]) | ODD,
    "unexpected": ODD,
}


@st.composite
def well_formed_records(draw: st.DrawFn) -> dict[str, Any]:
    service = draw(st.sampled_from(["data", "voice", "sms", "mms"]))
    record: dict[str, Any] = {
        "record_id": draw(st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=128)),
        "service": service,
        "started_at": draw(valid_instants()),
    }
    if draw(st.booleans()):
        record["msisdn"] = draw(st.from_regex(MSISDN_PATTERN, fullmatch=True))
    else:
        record["subscription"] = draw(st.from_regex(r"sub_[0-9A-Z]{26}", fullmatch=True))
    quantity = draw(st.integers(0, 10**12))
    record[{"data": "volume", "voice": "duration"}.get(service, "count")] = quantity
    for name, pattern in (("visited_plmn", PLMN_PATTERN), ("called_number", CALLED_PATTERN)):
        if draw(st.booleans()):
            record[name] = draw(st.from_regex(pattern, fullmatch=True))
    if draw(st.booleans()):
        record["rating_group"] = draw(st.integers(0, 2**32 - 1) | st.none())
    return record


@st.composite
def hostile_records(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed record with one to three fields made hostile, dropped, or added where the schema has none."""
    record = draw(well_formed_records())
    for name in draw(st.sets(st.sampled_from(sorted(HOSTILE_FIELDS)), min_size=1, max_size=3)):
        if name in record and draw(st.integers(0, 4)) == 0:
            del record[name]
        else:
            record[name] = draw(HOSTILE_FIELDS[name])
    return record


def _schema_load(record: Any) -> dict[str, Any] | None:
    try:
        return SCHEMA.load(record)
    except ValidationError:
        return None


@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_records())
def test_a_record_is_loaded_as_the_schema_loads_it_or_left_to_the_schema(record: dict[str, Any]) -> None:
    expected = _schema_load(record)
    fast = LOAD(record)
    if expected is None:
        assert fast is None, f"the schema refuses {record!r}, the fast loader took it as {fast!r}"
    else:
        assert fast is None or fast == expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(well_formed_records())
def test_a_well_formed_record_is_taken_by_the_fast_loader(record: dict[str, Any]) -> None:
    expected = SCHEMA.load(record)
    assert LOAD(record) == expected


@given(st.lists(well_formed_records(), min_size=1, max_size=5), st.integers(0, 4), hostile_records())
def test_a_batch_with_one_bad_record_gets_the_schemas_errors_at_its_index(
    good: list[dict[str, Any]], at: int, bad: dict[str, Any]
) -> None:
    if _schema_load(bad) is not None:
        return
    at = min(at, len(good))
    batch = [*good[:at], bad, *good[at:]]
    with pytest.raises(ValidationError) as refused:
        UsageBatchSchema().load({"records": batch})
    assert set(refused.value.messages["records"]) == {at}  # type: ignore[call-overload, index]
    assert UsageBatchSchema().load({"records": good})["records"] == [SCHEMA.load(one) for one in good]


def test_a_schema_the_fast_loader_cannot_check_the_same_way_is_refused() -> None:
    class WithCountry(Schema):
        country = Country(required=True)

    class Lenient(Schema):
        amount = fields.Float()

    class Checked(Schema):
        name = Text(required=True)

        @validates_schema(pass_original=True)
        def _whole(self, data: dict[str, Any], original: Any, **kwargs: Any) -> None:
            return None

    for schema in (WithCountry(), Lenient(), Checked()):
        with pytest.raises(TypeError):
            fast_loader(schema)

    class Plain(Schema):
        name = Text(required=True, max_length=3)
        size = Integer(load_default=7)

    load = fast_loader(Plain())
    assert load({"name": "abc"}) == {"name": "abc", "size": 7}
    assert load({"name": "abcd"}) is None
    assert load({"name": "abc", "size": True}) is None
    assert load({"name": "abc", "other": 1}) is None


MAYBE_TEXT = st.none() | st.text(max_size=12)
OUTCOMES = st.builds(
    RecordOutcome,
    index=st.integers(0, 4999),
    record_id=st.text(max_size=12),
    outcome=st.sampled_from(["rated", "duplicate", "rejected"]),
    usage_record=MAYBE_TEXT,
    rejection=MAYBE_TEXT,
    code=MAYBE_TEXT,
    reason=MAYBE_TEXT,
)
REJECTED = st.fixed_dictionaries(
    {},
    optional={
        "index": st.integers(0, 4999),
        "record_id": st.text(max_size=12),
        "code": st.text(max_size=12),
        "reason": st.text(max_size=12),
        "rejection": MAYBE_TEXT,
    },
)


@given(
    st.builds(
        IngestResult,
        accepted=st.integers(0, 5000),
        duplicates=st.integers(0, 5000),
        rejected=st.lists(REJECTED, max_size=4),
        records=st.none() | st.lists(OUTCOMES, max_size=6),
    )
)
def test_a_batch_result_dumps_as_the_schema_dumps_it(result: IngestResult) -> None:
    assert fast_dumper(UsageBatchResultSchema())(result) == UsageBatchResultSchema().dump(result)


def test_a_schema_the_fast_dumper_cannot_dump_the_same_way_is_refused() -> None:
    class Dated(Schema):
        day = LocalDate()

    class Defaulted(Schema):
        size = fields.Integer(dump_default=3)

    class Renamed(Schema):
        size = fields.Integer(attribute="length")

    class Counted(Schema):
        size = fields.Integer(as_string=True)

    class Reshaped(Schema):
        size = fields.Integer()

        @post_dump
        def _reshape(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
            return {"shape": data}

    class Single(Schema):
        one = fields.Nested(Renamed)

    for schema in (Dated(), Defaulted(), Renamed(), Counted(), Reshaped(), Single()):
        with pytest.raises(TypeError):
            fast_dumper(schema)


# Nested documents: a 5G core's ChargingDataRequest, whose unknown fields are dropped (EXCLUDE).
NCHF = ChargingDataRequestSchema()
LOAD_NCHF = fast_loader(NCHF)
SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)


def _valid(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values the field accepts."""
    if isinstance(field, fields.Nested):
        return _documents(field.schema, hostile=False)
    if isinstance(field, fields.List):
        inner = field.inner
        items = _documents(inner.schema, hostile=False) if isinstance(inner, fields.Nested) else ODD_DICTS
        return st.lists(items, max_size=3)
    if isinstance(field, Integer):
        low, high = next(((r.min, r.max) for r in field.validators if isinstance(r, validate.Range)), (None, None))
        return st.integers(low, high)
    if isinstance(field, DateTime):
        return valid_instants()
    assert isinstance(field, Text)
    if field._regex is not None:
        return st.from_regex(field._regex, fullmatch=True)
    return SAFE_TEXT


def _hostile(field: fields.Field) -> st.SearchStrategy[Any]:
    """Values the field may refuse, beside ones it accepts."""
    if isinstance(field, fields.Nested):
        return _documents(field.schema, hostile=True) | ODD
    if isinstance(field, fields.List):
        inner = field.inner
        items = _documents(inner.schema, hostile=True) if isinstance(inner, fields.Nested) else ODD_DICTS | ODD
        return st.lists(items, max_size=3) | st.lists(st.just({}), min_size=49, max_size=52) | ODD
    if isinstance(field, Integer):
        return _valid(field) | st.integers(-3, 2**33) | ODD
    if isinstance(field, DateTime):
        return valid_instants() | instants() | TEXTS | ODD
    return _valid(field) | TEXTS | ODD


ODD_DICTS = st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=2)


def _documents(schema: Schema, *, hostile: bool) -> st.SearchStrategy[dict[str, Any]]:
    value = _hostile if hostile else _valid
    required = {name: value(field) for name, field in schema.fields.items() if field.required}
    optional = {name: value(field) for name, field in schema.fields.items() if not field.required}
    optional["fieldOfALaterRelease"] = ODD
    if hostile:
        # A required field is sometimes missing.
        return st.fixed_dictionaries({}, optional={**required, **optional}) | st.fixed_dictionaries(
            required, optional=optional
        )
    return st.fixed_dictionaries(required, optional=optional)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(NCHF, hostile=True))
def test_a_nested_document_is_loaded_as_the_schema_loads_it_or_left_to_the_schema(document: dict[str, Any]) -> None:
    try:
        expected: dict[str, Any] | None = NCHF.load(document)
    except ValidationError:
        expected = None
    fast = LOAD_NCHF(document)
    if expected is None:
        assert fast is None, f"the schema refuses {document!r}, the fast loader took it as {fast!r}"
    else:
        assert fast is None or fast == expected


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(_documents(NCHF, hostile=False))
def test_a_well_formed_nested_document_is_taken_by_the_fast_loader(document: dict[str, Any]) -> None:
    assert LOAD_NCHF(document) == NCHF.load(document)


def test_a_nested_field_the_fast_loader_cannot_check_the_same_way_is_refused() -> None:
    class Inner(Schema):
        name = Text()

    class Many(Schema):
        inner = fields.Nested(Inner, many=True)

    class Floats(Schema):
        values = fields.List(fields.Float())

    class Counted(Schema):
        inner = fields.List(fields.Nested(Inner), validate=validate.Length(equal=2))

    for schema in (Many(), Floats(), Counted()):
        with pytest.raises(TypeError):
            fast_loader(schema)
