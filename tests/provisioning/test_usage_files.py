"""The usage file format: written and parsed back, bad lines reported without losing the good ones."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mvne.provisioning.usage_files import (
    UsageFileError,
    UsageFileRecord,
    new_usage_file_key,
    parse_usage_file,
    write_usage_file,
)

HEADER = "record_id,msisdn,imsi,service,started_at,quantity,unit"


def _record(record_id: str = "simnet-1-1", **overrides: Any) -> UsageFileRecord:
    values: dict[str, Any] = {
        "record_id": record_id,
        "msisdn": "+447900000001",
        "imsi": "001010000000001",
        "service": "data",
        "started_at": datetime(2025, 3, 1, 12, 30, tzinfo=UTC),
        "quantity": 1_048_576,
    }
    values.update(overrides)
    return UsageFileRecord(**values)


def test_a_written_file_starts_with_the_header_and_has_one_line_per_record() -> None:
    data = write_usage_file([_record(), _record("simnet-1-2", service="sms", quantity=2)])

    assert data.decode().splitlines() == [
        HEADER,
        "simnet-1-1,+447900000001,001010000000001,data,2025-03-01T12:30:00Z,1048576,bytes",
        "simnet-1-2,+447900000001,001010000000001,sms,2025-03-01T12:30:00Z,2,messages",
    ]


def test_the_unit_follows_from_the_service_and_must_match_it() -> None:
    assert _record(service="voice").unit == "seconds"
    with pytest.raises(ValueError, match="does not match"):
        _record(service="voice", unit="bytes")


def test_a_start_time_in_another_timezone_is_kept_as_the_same_instant_in_utc() -> None:
    record = _record(started_at=datetime(2025, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2))))

    assert record.started_at == datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    assert record.started_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"started_at": datetime(2025, 3, 1, 12, 30)}, "timezone"),  # noqa: DTZ001
        ({"quantity": -1}, "quantity"),
        ({"msisdn": "447900000001"}, "msisdn"),
        ({"imsi": "00101x"}, "imsi"),
        ({"service": "fax"}, "service"),
    ],
)
def test_a_record_with_a_bad_field_cannot_be_made(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _record(**overrides)


def test_writing_refuses_records_without_an_id_or_with_the_same_id_twice() -> None:
    with pytest.raises(ValueError, match="needs a record_id"):
        write_usage_file([_record("")])
    with pytest.raises(ValueError, match="twice"):
        write_usage_file([_record("a"), _record("a")])


def test_bad_lines_are_reported_by_line_number_and_the_good_lines_are_still_read() -> None:
    data = "\n".join(
        [
            HEADER,
            "r1,+447900000001,001010000000001,data,2025-03-01T12:30:00Z,100,bytes",
            "r2,+447900000001,001010000000001,fax,2025-03-01T12:30:00Z,1,pages",
            "r3,+447900000001,001010000000001,voice,2025-03-01T12:30:00Z,60,bytes",
            "r4,+447900000001,001010000000001,sms,2025-03-01T12:30:00,1,messages",
            "r5,+447900000001,001010000000001,sms,2025-03-01T12:30:00Z,-3,messages",
            "r6,+447900000001,001010000000001,sms",
            "r1,+447900000001,001010000000001,sms,2025-03-01T12:30:00Z,1,messages",
            "",
            "r7,+447900000002,001010000000002,voice,2025-03-01T13:00:00+01:00,61,seconds",
        ]
    ).encode()

    parsed = parse_usage_file(data)

    assert [r.record_id for r in parsed.records] == ["r1", "r7"]
    assert parsed.records[1].started_at == datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert [e.line for e in parsed.errors] == [3, 4, 5, 6, 7, 8]
    reasons = {e.line: e.reason for e in parsed.errors}
    assert "fax" in reasons[3]
    assert "does not match" in reasons[4]
    assert "timezone" in reasons[5]
    assert "quantity" in reasons[6]
    assert "expected 7 fields" in reasons[7]
    assert "already on line 2" in reasons[8]
    assert all(isinstance(e, UsageFileError) for e in parsed.errors)


def test_a_start_time_at_the_edge_of_the_calendar_is_a_bad_line_not_a_crash() -> None:
    data = "\n".join(
        [
            HEADER,
            "r1,+447900000001,001010000000001,sms,9999-12-31T23:59:59-14:00,1,messages",
            "r2,+447900000001,001010000000001,sms,0001-01-01T00:00:00+14:00,1,messages",
            "r3,+447900000001,001010000000001,sms,2025-03-01T12:30:00Z,1,messages",
        ]
    ).encode()

    parsed = parse_usage_file(data)

    assert [r.record_id for r in parsed.records] == ["r3"]
    assert [e.line for e in parsed.errors] == [2, 3]
    assert all("started_at" in e.reason for e in parsed.errors)


def test_windows_line_ends_and_a_byte_order_mark_are_read_as_well() -> None:
    data = "\ufeff" + HEADER + "\r\nr1,+447900000001,001010000000001,sms,2025-03-01T12:30:00Z,1,messages\r\n"

    parsed = parse_usage_file(data.encode())

    assert [r.record_id for r in parsed.records] == ["r1"]
    assert parsed.errors == []


@pytest.mark.parametrize(
    "data",
    [b"", b"id,msisdn\n", b"record_id,msisdn,imsi,service,quantity,started_at,unit\n", b"\xff\xfe\x00"],
)
def test_a_file_without_the_right_header_is_refused_whole(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"header|UTF-8"):
        parse_usage_file(data)


CDR_HEADER = "record_id,imsi,msisdn,service,started_at,duration_s,volume_bytes,called_number,visited_plmn,rating_group"


@pytest.mark.parametrize(
    "variant",
    [
        " r1 , , +33612345678 ,voice , 2025-03-01T13:30:00+01:00 , 61 ,, +33698765432\f, 20801 , 7 ",
        '"r1","","+33612345678","voice","2025-03-01T12:30:00.000000Z","61","","+33698765432","20801","7"',
        "r1,,+33612345678,voice,2025-03-01T12:30:00+00:00,61,,+33698765432,20801,7",
    ],
)
def test_a_plain_cdr_line_and_the_same_line_padded_quoted_or_offset_give_the_same_record(variant: str) -> None:
    plain = "r1,,+33612345678,voice,2025-03-01T12:30:00Z,61,,+33698765432,20801,7"

    parsed = parse_usage_file(f"{CDR_HEADER}\n{plain}\n{variant.replace('r1', 'r2', 1)}".encode())

    assert parsed.errors == []
    first, second = parsed.records
    assert first.record_id == "r1"
    assert first == UsageFileRecord(
        record_id="r1",
        msisdn="+33612345678",
        imsi="",
        service="voice",
        started_at=datetime(2025, 3, 1, 12, 30, tzinfo=UTC),
        quantity=61,
        called_number="+33698765432",
        visited_plmn="20801",
        rating_group=7,
    )
    assert second == UsageFileRecord(**{**first.__dict__, "record_id": "r2"})


@pytest.mark.parametrize(
    ("cells", "code", "reason"),
    [
        ("r1,,+33612345678,voice,2025-03-01T12:30:00Z,-5,,,,", "invalid_quantity", "negative"),
        ("r1,,+33612345678,fax,2025-03-01T12:30:00Z,5,,,,", "unknown_service", "fax"),
        ("r1,,+0612345678,sms,2025-03-01T12:30:00Z,,,,,", "malformed", "E.164"),
        ("r1,,+33612345678,data,2101-01-01T00:00:00Z,,5,,,", "malformed", "started_at"),
        ("r1,,+33612345678,data,2025-03-01T12:30:00Z,,5,,2080,", "malformed", "visited_plmn"),
        ("r 1,,+33612345678,sms,2025-03-01T12:30:00Z,,,,,", "malformed", "record_id"),
        (",,+33612345678,sms,2025-03-01T12:30:00Z,,,,,", "malformed", "record_id is empty"),
    ],
)
def test_a_cdr_line_that_is_not_plain_gets_the_reason_and_code_of_what_is_wrong(
    cells: str, code: str, reason: str
) -> None:
    parsed = parse_usage_file(f"{CDR_HEADER}\n{cells}".encode())

    assert parsed.records == []
    assert [(e.line, e.code) for e in parsed.errors] == [(2, code)]
    assert reason in parsed.errors[0].reason


def test_new_file_keys_sit_under_the_network_folder_and_sort_by_time() -> None:
    early = new_usage_file_key("simnet", datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
    late = new_usage_file_key("simnet", datetime(2025, 3, 1, 12, 0, 1, tzinfo=UTC))

    assert re.fullmatch(r"usage/incoming/simnet/20250301T120000000000Z-[0-9a-f]{8}\.csv", early)
    assert early < late
    assert new_usage_file_key("simnet") != new_usage_file_key("simnet")


def test_a_network_name_that_is_not_a_plain_folder_name_is_refused() -> None:
    with pytest.raises(ValueError, match="network name"):
        new_usage_file_key("../escape")


_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_records = st.builds(
    UsageFileRecord,
    record_id=st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True),
    msisdn=st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    imsi=st.from_regex(r"[0-9]{6,15}", fullmatch=True),
    service=st.sampled_from(["data", "voice", "sms"]),
    started_at=st.datetimes(
        min_value=datetime(2000, 1, 2),  # noqa: DTZ001
        max_value=datetime(2099, 12, 30),  # noqa: DTZ001
        timezones=_offsets,
    ),
    quantity=st.integers(min_value=0, max_value=10**15),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_records, max_size=20, unique_by=lambda r: r.record_id))
def test_any_valid_records_survive_a_write_and_parse_round_trip(records: list[UsageFileRecord]) -> None:
    parsed = parse_usage_file(write_usage_file(records))

    assert parsed.errors == []
    assert parsed.records == records
