"""Usage record files (CDRs) a host network drops into storage: a small CSV format, written and parsed."""

from __future__ import annotations

import csv
import io
import json
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

HEADER = ("record_id", "msisdn", "imsi", "service", "started_at", "quantity", "unit")
# The documented usage file schema (docs/usage.md), after the 3GPP charging data record (TS 32.298) fields:
# the served IMSI or MSISDN, the service, the start, the duration (voice) or volume (data), the called number,
# the visited network (MCC+MNC) and the rating group. An SMS or MMS record is one message.
CDR_FIELDS = (
    "record_id",
    "imsi",
    "msisdn",
    "service",
    "started_at",
    "duration_s",
    "volume_bytes",
    "called_number",
    "visited_plmn",
    "rating_group",
)
CDR_REQUIRED = ("record_id", "service", "started_at")
QUANTITY_FIELD = {"data": "volume_bytes", "voice": "duration_s"}
UNIT_BY_SERVICE = {"data": "bytes", "voice": "seconds", "sms": "messages", "mms": "messages"}
SERVICES = tuple(UNIT_BY_SERVICE)
_MESSAGES = frozenset(("sms", "mms"))  # one message a record: no quantity column
INCOMING_PREFIX = "usage/incoming/"

MSISDN_RE = re.compile(r"\+[1-9][0-9]{6,14}")
IMSI_RE = re.compile(r"[0-9]{6,15}")
NETWORK_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
PLMN_RE = re.compile(r"[0-9]{5,6}")
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
    # Fields of the CDR schema (docs/usage.md) that rating does not use but keeps with the record.
    called_number: str = ""
    visited_plmn: str = ""
    rating_group: int | None = None

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
        if not self.msisdn and not self.imsi:
            raise ValueError("msisdn and imsi are both empty: a record names its line by one of them")
        if self.msisdn and not MSISDN_RE.fullmatch(self.msisdn):
            raise ValueError(f"msisdn {self.msisdn!r} is not E.164 with a leading '+'")
        if self.imsi and not IMSI_RE.fullmatch(self.imsi):
            raise ValueError(f"imsi {self.imsi!r} must be 6 to 15 digits")
        if self.visited_plmn and not PLMN_RE.fullmatch(self.visited_plmn):
            raise ValueError(f"visited_plmn {self.visited_plmn!r} must be MCC and MNC, 5 or 6 digits")
        if self.rating_group is not None and (isinstance(self.rating_group, bool) or self.rating_group < 0):
            raise ValueError(f"rating_group {self.rating_group!r} must be a whole number >= 0")
        if self.record_id and not _RECORD_ID_RE.fullmatch(self.record_id):
            raise ValueError(f"record_id {self.record_id!r} must be 1-128 of A-Z a-z 0-9 . _ : -")


@dataclass(frozen=True)
class UsageFileError:
    """A line of a usage file that could not be read, and why.

    What could be read of it (its record id and line) lets the platform keep it as the line's tenant's
    rejection (`malformed`) instead of only on the file's report.
    """

    line: int
    reason: str
    record_id: str = ""
    msisdn: str = ""
    imsi: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    # The usage reason code it earns: malformed, or unknown_service / invalid_quantity when that is what is wrong.
    code: str = "malformed"


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
    """Read a whole usage file: good lines become records, bad lines and repeated ids errors; a bad header raises."""
    records: list[UsageFileRecord] = []
    errors: list[UsageFileError] = []
    first_line_of: dict[str, int] = {}
    for number, item in iter_usage_file(data.splitlines()):
        if isinstance(item, UsageFileError):
            errors.append(item)
        elif item.record_id in first_line_of:
            reason = f"record_id {item.record_id!r} already on line {first_line_of[item.record_id]}"
            errors.append(UsageFileError(number, reason))
        else:
            first_line_of[item.record_id] = number
            records.append(item)
    return ParsedUsageFile(records=records, errors=errors)


def iter_usage_file(
    lines: Iterable[bytes], *, json_lines: bool = False, header: str | None = None, first_line: int = 1
) -> Iterator[tuple[int, UsageFileRecord | UsageFileError]]:
    """Read a usage file line by line: (line number, record or error); memory does not grow with the file.

    CSV files start with a header: the simulator's (`HEADER`) or the CDR schema's columns (`CDR_FIELDS`, in
    any order). JSON lines files hold one object with the CDR schema's fields per line, and no header.
    A header that is neither raises ValueError, and so does a file that is not UTF-8 from its first line.
    A segment of a file (its lines from `first_line` on) is read with the file's `header` given apart.
    """
    return read_numbered_lines(enumerate(lines, start=first_line), json_lines=json_lines, header=header)


def read_numbered_lines(
    numbered: Iterator[tuple[int, bytes]], *, json_lines: bool = False, header: str | None = None
) -> Iterator[tuple[int, UsageFileRecord | UsageFileError]]:
    """As `iter_usage_file`, for lines that carry their own line numbers (a partition of a file)."""
    if json_lines:
        for number, raw in numbered:
            if raw.strip():
                yield number, _json_line(number, raw)
        return
    if header is None:
        columns, read = _header(numbered)
    else:
        columns, read = parse_header(header)
    for number, raw in numbered:
        if not raw or raw.isspace():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, UsageFileError(number, f"not UTF-8: {exc}")
            continue
        yield number, read(number, _without_nul(line), columns)


def _without_nul(text: str) -> str:
    """The text with any NUL character shown as U+FFFD: PostgreSQL's text and JSON cannot hold NUL, and a line
    carrying one must still end as an error or a rejection that says where, not fail its whole chunk."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def read_header(first: bytes) -> str:
    """The header line of a CSV usage file, as text; ValueError when it is not UTF-8."""
    try:
        return first.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"usage file is not UTF-8: {exc}") from exc


_LineReader = Callable[[int, str, tuple[str, ...]], "UsageFileRecord | UsageFileError"]


def _header(numbered: Iterator[tuple[int, bytes]]) -> tuple[tuple[str, ...], _LineReader]:
    first = next(numbered, None)
    return parse_header(read_header(first[1]) if first else "")


def parse_header(text: str) -> tuple[tuple[str, ...], _LineReader]:
    """The columns of a CSV usage file's header and the reader of its lines; ValueError for any other header."""
    header = tuple(cell.strip() for cell in text.split(","))
    if header == HEADER:
        return header, _simulator_line
    if set(header) <= set(CDR_FIELDS) and len(set(header)) == len(header) and set(CDR_REQUIRED) <= set(header):
        return header, _cdr_reader(header)
    found = text or "(empty file)"
    raise ValueError(
        f"usage file header must be {','.join(HEADER)!r} or columns of {','.join(CDR_FIELDS)!r} "
        f"including {','.join(CDR_REQUIRED)!r}, found {found[:200]!r}"
    )


# The fast path: a line that passes these plain string checks makes a record without the dataclass's
# validation (its regular expressions); any line that does not is read the slow way, which finds the
# same reason as before. Only a line holding a quote goes through the csv module.
_RECORD_ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"
_new_record = object.__new__


def _cells(line: str) -> list[str]:
    return line.split(",") if '"' not in line else next(csv.reader([line]))


def _plain_msisdn(msisdn: str) -> bool:
    return 8 <= len(msisdn) <= 16 and msisdn[0] == "+" and msisdn[1] != "0" and msisdn[1:].isdigit()


def _plain_imsi(imsi: str) -> bool:
    return 6 <= len(imsi) <= 15 and imsi.isdigit()


def _fast_timestamp(text: str) -> datetime | None:
    """`YYYY-MM-DDTHH:MM:SS[.ffffff]Z` of the years 2000 to 2100, or None to take the general path."""
    if text[-1:] != "Z" or not ("2000" <= text[:4] <= "2100") or text[4:5] != "-":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is UTC else None


def _plain_record(  # noqa: PLR0917 (one call per line: positional arguments are the cheaper call)
    record_id: str,
    msisdn: str,
    imsi: str,
    service: str,
    started_at: datetime,
    quantity: int,
    called_number: str = "",
    visited_plmn: str = "",
    rating_group: int | None = None,
) -> UsageFileRecord | None:
    """The record, when every field passes the plain checks; None when the dataclass must judge it."""
    if (
        not record_id
        or len(record_id) > 128
        or not record_id.isascii()
        or record_id.strip(_RECORD_ID_CHARS)
        or not (msisdn or imsi)
        or (msisdn and not (msisdn.isascii() and _plain_msisdn(msisdn)))
        or (imsi and not (imsi.isascii() and _plain_imsi(imsi)))
        or (visited_plmn and not (visited_plmn.isascii() and 5 <= len(visited_plmn) <= 6 and visited_plmn.isdigit()))
    ):
        return None
    record: UsageFileRecord = _new_record(UsageFileRecord)
    record.__dict__.update(
        msisdn=msisdn,
        imsi=imsi,
        service=service,
        started_at=started_at,
        quantity=quantity,
        record_id=record_id,
        unit=UNIT_BY_SERVICE[service],
        called_number=called_number,
        visited_plmn=visited_plmn,
        rating_group=rating_group,
    )
    return record


def _simulator_line(number: int, line: str, header: tuple[str, ...]) -> UsageFileRecord | UsageFileError:
    cells = _cells(line)
    if len(cells) == 7:
        record_id, msisdn, imsi, service, started_at, quantity, unit = cells
        if (
            record_id
            and quantity.isdigit()
            and quantity.isascii()
            and UNIT_BY_SERVICE.get(service) == unit
            and (moment := _fast_timestamp(started_at)) is not None
            and (record := _plain_record(record_id, msisdn, imsi, service, moment, int(quantity))) is not None
        ):
            return record
    try:
        return _parse_line(cells)
    except ValueError as exc:
        return UsageFileError(number, str(exc))


def _cdr_reader(header: tuple[str, ...]) -> _LineReader:
    """A reader of CDR lines with `header`'s columns: a fast path for plain lines, `_cdr_record` for the rest."""
    width = len(header)
    at = {name: header.index(name) for name in header}
    record_at, started_at = at["record_id"], at["started_at"]
    service_at = at["service"]
    optional = {name: at.get(name) for name in ("msisdn", "imsi", "called_number", "visited_plmn", "rating_group")}
    quantity_at = {"data": at.get("volume_bytes"), "voice": at.get("duration_s")}
    msisdn_at, imsi_at = optional["msisdn"], optional["imsi"]
    called_at, visited_at, group_at = optional["called_number"], optional["visited_plmn"], optional["rating_group"]

    def read(number: int, line: str, columns: tuple[str, ...]) -> UsageFileRecord | UsageFileError:
        cells = _cells(line)
        if len(cells) != width:
            return UsageFileError(number, f"expected {width} fields, found {len(cells)}")
        if '"' not in line and " " not in line and "\t" not in line:
            service = cells[service_at]
            if service in _MESSAGES:
                quantity: int | None = 1
            else:
                where = quantity_at.get(service)
                text = cells[where] if where is not None else ""
                quantity = int(text) if text.isdigit() and text.isascii() else None
            group = cells[group_at] if group_at is not None else ""
            if (
                quantity is not None
                and (not group or (group.isdigit() and group.isascii()))
                and (moment := _fast_timestamp(cells[started_at])) is not None
            ):
                record = _plain_record(
                    cells[record_at],
                    cells[msisdn_at] if msisdn_at is not None else "",
                    cells[imsi_at] if imsi_at is not None else "",
                    service,
                    moment,
                    quantity,
                    cells[called_at].strip()[:32] if called_at is not None else "",
                    cells[visited_at] if visited_at is not None else "",
                    int(group) if group else None,
                )
                if record is not None:
                    return record
        return _cdr_record(number, {name: cell.strip() for name, cell in zip(header, cells, strict=True)})

    return read


def _json_line(number: int, raw: bytes) -> UsageFileRecord | UsageFileError:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return UsageFileError(number, f"not a JSON object: {exc}")
    if not isinstance(value, dict):
        return UsageFileError(number, "not a JSON object")
    value = {_without_nul(str(k)): _without_nul(v) if isinstance(v, str) else v for k, v in value.items()}
    unknown = sorted(set(value) - set(CDR_FIELDS))
    fields = {str(k): "" if v is None else str(v) for k, v in value.items() if k in CDR_FIELDS}
    if unknown:
        return _cdr_error(number, f"unknown fields: {', '.join(unknown)[:200]}", fields)
    if any(isinstance(v, (dict, list, bool, float)) for v in value.values()):
        return _cdr_error(number, "every field is a string or a whole number", fields)
    return _cdr_record(number, fields)


def _cdr_error(number: int, reason: str, fields: dict[str, str], code: str = "malformed") -> UsageFileError:
    return UsageFileError(
        number,
        reason,
        code=code,
        record_id=fields.get("record_id", "")[:128],
        msisdn=fields.get("msisdn", "")[:16],
        imsi=fields.get("imsi", "")[:15],
        fields={k: v[:200] for k, v in fields.items()},
    )


def _whole(name: str, text: str) -> int:
    if not text.lstrip("-").isdigit() or not text.isascii():
        raise ValueError(f"{name} {text!r} must be a whole number")
    return int(text)


def _cdr_record(number: int, fields: dict[str, str]) -> UsageFileRecord | UsageFileError:
    """One record of the CDR schema, from its fields as text; an error naming what is wrong otherwise."""
    service = fields.get("service", "")
    try:
        if not fields.get("record_id"):
            raise ValueError("record_id is empty")
        try:
            moment = parse_timestamp(fields.get("started_at", ""))
        except ValueError as exc:
            raise ValueError(
                f"started_at {fields.get('started_at')!r} is not an ISO 8601 datetime with a timezone"
            ) from exc
        quantity_field = QUANTITY_FIELD.get(service)
        if quantity_field is None and service not in UNIT_BY_SERVICE:
            reason = f"service {service!r}: expected one of {', '.join(SERVICES)}"
            return _cdr_error(number, reason, fields, "unknown_service")
        if quantity_field and not fields.get(quantity_field):
            raise ValueError(f"{quantity_field} is needed for service {service}")
        quantity = _whole(quantity_field, fields[quantity_field]) if quantity_field else 1
        if quantity < 0:
            return _cdr_error(number, f"{quantity_field} {quantity} is negative", fields, "invalid_quantity")
        group = fields.get("rating_group", "")
        return UsageFileRecord(
            record_id=fields["record_id"],
            msisdn=fields.get("msisdn", ""),
            imsi=fields.get("imsi", ""),
            service=service,
            started_at=moment,
            quantity=quantity,
            called_number=fields.get("called_number", "")[:32],
            visited_plmn=fields.get("visited_plmn", ""),
            rating_group=_whole("rating_group", group) if group else None,
        )
    except ValueError as exc:
        return _cdr_error(number, str(exc), fields)


def _parse_line(cells: list[str]) -> UsageFileRecord:
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
