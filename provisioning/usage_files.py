"""Usage record files (CDRs) a host network drops into storage: a small CSV format, written and parsed."""

from __future__ import annotations

import csv
import io
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

HEADER = ("record_id", "msisdn", "imsi", "service", "started_at", "quantity", "unit")
UNIT_BY_SERVICE = {"data": "bytes", "voice": "seconds", "sms": "messages"}
SERVICES = tuple(UNIT_BY_SERVICE)
INCOMING_PREFIX = "usage/incoming/"

MSISDN_RE = re.compile(r"\+[1-9][0-9]{6,14}")
IMSI_RE = re.compile(r"[0-9]{6,15}")
NETWORK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_RECORD_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True, kw_only=True)
class UsageFileRecord:
    """One usage record: `quantity` of `service` (in its unit) used by a line, starting at `started_at`."""

    msisdn: str
    imsi: str
    service: str
    started_at: datetime
    quantity: int
    # Empty until the file is written: emit_usage_file numbers the records of each file.
    record_id: str = ""
    unit: str = field(default="")

    def __post_init__(self) -> None:
        if self.service not in UNIT_BY_SERVICE:
            raise ValueError(f"service {self.service!r}: expected one of {', '.join(SERVICES)}")
        expected_unit = UNIT_BY_SERVICE[self.service]
        if not self.unit:
            object.__setattr__(self, "unit", expected_unit)
        elif self.unit != expected_unit:
            raise ValueError(f"unit {self.unit!r} does not match service {self.service!r} ({expected_unit})")
        if self.started_at.tzinfo is None or self.started_at.utcoffset() is None:
            raise ValueError("started_at must be timezone-aware")
        object.__setattr__(self, "started_at", self.started_at.astimezone(UTC))
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity < 0:
            raise ValueError(f"quantity {self.quantity!r} must be a whole number >= 0")
        if not MSISDN_RE.fullmatch(self.msisdn):
            raise ValueError(f"msisdn {self.msisdn!r} is not E.164 with a leading '+'")
        if not IMSI_RE.fullmatch(self.imsi):
            raise ValueError(f"imsi {self.imsi!r} must be 6 to 15 digits")
        if self.record_id and not _RECORD_ID_RE.fullmatch(self.record_id):
            raise ValueError(f"record_id {self.record_id!r} must be 1-128 of A-Z a-z 0-9 . _ : -")


@dataclass(frozen=True)
class UsageFileError:
    """A line of a usage file that could not be read, and why."""

    line: int
    reason: str


@dataclass(frozen=True)
class ParsedUsageFile:
    """The good records of a usage file, and one error per bad line (line numbers count the header)."""

    records: list[UsageFileRecord]
    errors: list[UsageFileError]


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z` and whole seconds, or microseconds when there are some."""
    moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 datetime with a timezone (`Z` or an offset), converted to UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{text!r} has no timezone")
    # Bounded before converting: an edge year with an offset would overflow (9999-12-31T23:59:59-14:00).
    if not 2000 <= moment.year <= 2100:
        raise ValueError(f"{text!r} is outside the years 2000 to 2100")
    return moment.astimezone(UTC)


def write_usage_file(records: list[UsageFileRecord]) -> bytes:
    """The CSV bytes (UTF-8, `\\n` line ends) of `records`, header first; every record needs its id."""
    seen: set[str] = set()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for record in records:
        if not record.record_id:
            raise ValueError("every record written to a usage file needs a record_id")
        if record.record_id in seen:
            raise ValueError(f"record_id {record.record_id!r} appears twice")
        seen.add(record.record_id)
        writer.writerow(
            (
                record.record_id,
                record.msisdn,
                record.imsi,
                record.service,
                format_timestamp(record.started_at),
                str(record.quantity),
                record.unit,
            )
        )
    return out.getvalue().encode("utf-8")


def parse_usage_file(data: bytes) -> ParsedUsageFile:
    """Read a usage file: good lines become records, bad lines become errors; a wrong header raises."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"usage file is not UTF-8: {exc}") from exc
    lines = text.splitlines()
    if not lines or tuple(cell.strip() for cell in lines[0].split(",")) != HEADER:
        found = lines[0] if lines else "(empty file)"
        raise ValueError(f"usage file header must be {','.join(HEADER)!r}, found {found!r}")
    records: list[UsageFileRecord] = []
    errors: list[UsageFileError] = []
    first_line_of: dict[str, int] = {}
    # Each physical line is one record: the format never quotes newlines, so csv runs per line.
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            record = _parse_line(line)
        except ValueError as exc:
            errors.append(UsageFileError(number, str(exc)))
            continue
        if record.record_id in first_line_of:
            reason = f"record_id {record.record_id!r} already on line {first_line_of[record.record_id]}"
            errors.append(UsageFileError(number, reason))
            continue
        first_line_of[record.record_id] = number
        records.append(record)
    return ParsedUsageFile(records=records, errors=errors)


def _parse_line(line: str) -> UsageFileRecord:
    cells = next(csv.reader([line]))
    if len(cells) != len(HEADER):
        raise ValueError(f"expected {len(HEADER)} fields, found {len(cells)}")
    record_id, msisdn, imsi, service, started_at, quantity, unit = (cell.strip() for cell in cells)
    if not record_id:
        raise ValueError("record_id is empty")
    if not unit:
        raise ValueError("unit is empty")
    if not quantity.isdigit() or not quantity.isascii():
        raise ValueError(f"quantity {quantity!r} must be a whole number >= 0")
    try:
        moment = parse_timestamp(started_at)
    except ValueError as exc:
        raise ValueError(f"started_at {started_at!r} is not an ISO 8601 datetime with a timezone") from exc
    return UsageFileRecord(
        record_id=record_id,
        msisdn=msisdn,
        imsi=imsi,
        service=service,
        started_at=moment,
        quantity=int(quantity),
        unit=unit,
    )


def incoming_prefix(network_name: str) -> str:
    """The storage prefix under which `network_name` drops its usage files."""
    _check_network_name(network_name)
    return f"{INCOMING_PREFIX}{network_name}/"


def new_usage_file_key(network_name: str, now: datetime | None = None) -> str:
    """A fresh key `usage/incoming/<network>/<UTC timestamp>-<random>.csv`; keys sort by time."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return f"{incoming_prefix(network_name)}{moment:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}.csv"


def _check_network_name(network_name: str) -> None:
    if not NETWORK_NAME_RE.fullmatch(network_name):
        raise ValueError(f"network name {network_name!r}: expected lowercase letters, digits and '-'")
