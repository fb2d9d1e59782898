"""Usage files from host networks: found in storage, cut in segments, each segment rated by its own job.

A file is cut into segments of about `SEGMENT_BYTES`. A file of several (its size tells how many) is
partitioned by line (a record's MSISDN, else its IMSI) in one pass over it: each partition is an object
holding every record of its lines, each with its line number in the file, so each line's records are rated
by one job, in file order, and workers rating partitions side by side never wait on each other's lines or
balances. A file of one segment (or of too many) is cut in byte ranges on line boundaries instead, found in
one pass over its bytes. Each segment is a job (`ingest_usage_segment`), so the workers share a large file. A
segment reads its partition (or, for a file of one segment, its byte range), looks up the lines
(MSISDN or IMSI to tenant and line) of all its records at once, and rates them chunk by chunk, each
chunk of a tenant in its own transaction. Its counts and first errors are kept on the file's row under
its number; the segment that finds every number there completes the file with a conditional UPDATE,
once. A segment delivered again after its counts were kept does nothing; one that ran part way before
finds its committed records already accepted (each record counts once per tenant and record id): those
of the same line of the same file are counted as accepted, as the dead run would have, other lines with
their record id as duplicates. Partitions are deleted once the file is processed.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Generator, Iterator
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.charging.models import UsageFile
from mvne.charging.rating import Service
from mvne.charging.usage import FILE_SOURCE, UsageInput, UsageWindow, ingest_usage
from mvne.esim.models import Sim
from mvne.infra.db import Database, one_of, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue, enqueue_many
from mvne.infra.storage import Storage
from mvne.provisioning.models import Subscription
from mvne.provisioning.usage_files import (
    INCOMING_PREFIX,
    UsageFileError,
    UsageFileRecord,
    parse_header,
    read_header,
    read_numbered_lines,
)
from mvne.tenants.models import Tenant

log = logging.getLogger("mvne.usage")
T = TypeVar("T")

PROCESSED_PREFIX = "usage/processed/"
# A file's partitions while its segments run: `usage/partitions/<file id>/<segment>`.
PARTITION_PREFIX = "usage/partitions/"
# Files of more segments are cut in byte ranges instead (as many temporary files would be open at once).
MAX_PARTITIONS = 256
USAGE_FILE_SUFFIXES = (".csv", ".jsonl")
# Records rated per transaction of a tenant: a chunk's row locks are held only while it is rated.
FILE_CHUNK = 5000
# Bytes of a file per segment (about 40,000 records): a worker holds one segment's records at a time.
SEGMENT_BYTES = 4 << 20
# Records a segment reads, sorts by line and rates at a time: a partition that one busy line swells (a skewed
# file) is rated in spans of this many, so a worker's memory stays bounded whatever the file.
SPAN_RECORDS = 100_000
FILE_REPORT_ERRORS = 200
# pending -> running (cut; its segments run) -> processed; pending | running -> failed (a job failed for good)
# -> pending | running (the job replayed).
SEGMENTS_RUN = ("running", "failed")
# Values per lookup of the lines of a segment's MSISDNs and IMSIs.
OWNER_LOOKUP_CHUNK = 10_000
# The longest storage key a usage file's row holds.
KEY_LENGTH: int = UsageFile.__table__.c.key.type.length  # type: ignore[attr-defined]
_TOO_LONG_SEEN: set[str] = set()


def discover_usage_files(db: Database, storage: Storage) -> int:
    """Register new files (CSV or JSON lines) in the incoming folder and queue their ingestion; returns how many."""
    keys = [k for k in storage.list(INCOMING_PREFIX) if k.endswith(USAGE_FILE_SUFFIXES)]
    # A key too long to be kept is left where it is, and said so: taken in, it would fail every file's discovery.
    for key in (k for k in keys if len(k) > KEY_LENGTH and k not in _TOO_LONG_SEEN):
        _TOO_LONG_SEEN.add(key)  # said once per process, not at every look
        log.warning("usage file key too long to be taken in", extra={"key": key[:200], "length": len(key)})
    keys = [k for k in keys if len(k) <= KEY_LENGTH]
    if not keys:
        return 0
    found = 0
    with db.transaction(platform=True) as session:
        known = set(session.scalars(select(UsageFile.key).where(UsageFile.key.in_(keys))))
        upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        for key in keys:
            if key in known:
                continue
            file_id = new_id("ufl")
            session.execute(
                upsert(UsageFile)
                .values(id=file_id, key=key, status="pending", errors=[], created_at=utcnow())
                .on_conflict_do_nothing()
            )
            enqueue(session, "charging.ingest_usage_file", usage_file_id=file_id, key=f"ingest-{key}")
            found += 1
    return found


@dataclass(frozen=True)
class Segment:
    """Bytes `start` to `end` (exclusive) of a usage file: whole lines, the first of them line `first_line`."""

    number: int
    start: int
    end: int
    first_line: int


def file_header(storage: Storage, key: str) -> str:
    """A CSV usage file's header, read from its first line alone; ValueError when it is none of the formats."""
    lines = storage.lines(key)
    first = next(lines, b"")
    if isinstance(lines, Generator):
        lines.close()  # the rest of the object is not downloaded
    header = read_header(first)
    parse_header(header)
    return header


def plan_segments(storage: Storage, key: str, segment_bytes: int | None = None) -> tuple[str | None, list[Segment]]:
    """The header (None for JSON lines) and the segments of a file, in one pass over its bytes.

    A segment ends at the first line end at or past `segment_bytes` from its start. A CSV header that
    is not one of the usage file formats raises ValueError, as reading the whole file would.
    """
    size = segment_bytes or SEGMENT_BYTES
    json_lines = key.endswith(".jsonl")
    header: str | None = None
    segments: list[Segment] = []
    start, first_line = 0, 1
    pos = newlines = 0
    pending = b""  # the header's bytes until its line end is seen
    for block in storage.blocks(key):
        search = 0
        if not json_lines and header is None:
            end = block.find(b"\n")
            if end < 0:
                pending += block
                pos += len(block)
                continue
            header = read_header((pending + block[:end]).rstrip(b"\r"))
            parse_header(header)
            pending = b""
            start, first_line = pos + end + 1, 2
            search = end + 1
        while start + size <= pos + len(block):
            found = block.find(b"\n", max(start + size - pos - 1, search))
            if found < 0:
                break
            cut = pos + found + 1
            segments.append(Segment(len(segments), start, cut, first_line))
            first_line = newlines + block.count(b"\n", 0, found + 1) + 1
            start, search = cut, found + 1
        newlines += block.count(b"\n")
        pos += len(block)
    if not json_lines and header is None:
        header = read_header(pending.rstrip(b"\r"))
        parse_header(header)
        return header, []
    if start < pos:
        segments.append(Segment(len(segments), start, pos, first_line))
    return header, segments


_JSON_LINE_KEYS = (re.compile(rb'"msisdn"\s*:\s*"([^"]+)"'), re.compile(rb'"imsi"\s*:\s*"([^"]+)"'))


def _line_key(header: str | None, json_lines: bool) -> Callable[[bytes], bytes]:
    """What names a record's line in a raw line of the file (its MSISDN, else its IMSI), read without parsing it
    whole; a line where neither is found plainly is its own key (it lands in some partition all the same)."""
    if json_lines:

        def of_json(raw: bytes) -> bytes:
            for pattern in _JSON_LINE_KEYS:
                found = pattern.search(raw)
                if found:
                    return found[1]
            return raw

        return of_json
    columns = [cell.strip() for cell in (header or "").split(",")]
    at = [columns.index(name) for name in ("msisdn", "imsi") if name in columns]

    def of_csv(raw: bytes) -> bytes:
        cells = raw.split(b",")
        for index in at:
            if index < len(cells) and cells[index]:
                return cells[index]
        return raw

    return of_csv


def partition_file(storage: Storage, key: str, usage_file_id: str, header: str | None, parts: int) -> list[str]:
    """Write the file's records in `parts` partitions by line, each line as `<line number>\t<line>`; their keys.

    One pass over the file, each partition spooled to a temporary file then stored: memory does not grow with
    the file. Run again, it writes the same partitions.
    """
    json_lines = key.endswith(".jsonl")
    line_key = _line_key(header, json_lines)
    spools = [tempfile.TemporaryFile() for _ in range(parts)]  # noqa: SIM115 (closed together below)
    try:
        numbered = enumerate(storage.lines(key), start=1)
        if not json_lines:
            next(numbered, None)  # the header, given to each segment apart
        for number, raw in numbered:
            if raw and not raw.isspace():
                spools[zlib.crc32(line_key(raw)) % parts].write(b"%d\t%s\n" % (number, raw))
        keys = [f"{PARTITION_PREFIX}{usage_file_id}/{n}" for n in range(parts)]
        for part_key, spool in zip(keys, spools, strict=True):
            spool.seek(0)
            storage.put_file(part_key, spool)
        return keys
    finally:
        for spool in spools:
            spool.close()


def _spooled_lines(storage: Storage, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
    """The lines of the object's bytes `start` to `end`, fetched whole into a temporary file first: no download
    stays open while a segment's spans are rated (a slow span would outlast the storage's read timeout)."""
    with tempfile.TemporaryFile() as spool:
        for block in storage.blocks(key, start, end):
            spool.write(block)
        spool.seek(0)
        for raw in spool:
            yield raw.rstrip(b"\r\n")


def _partition_lines(storage: Storage, part_key: str) -> Iterator[tuple[int, bytes]]:
    for raw in _spooled_lines(storage, part_key):
        number, _, line = raw.partition(b"\t")
        yield int(number), line


def _drop_partitions(storage: Storage, usage_file_id: str) -> None:
    for part_key in storage.list(f"{PARTITION_PREFIX}{usage_file_id}/"):
        storage.delete(part_key)


def sweep_partitions(db: Database, storage: Storage) -> int:
    """Delete the partitions of files that no longer need them (processed, or gone), which a process that died
    between a file's completion and their deletion left behind; how many files' partitions were deleted."""
    keys = storage.list(PARTITION_PREFIX)
    owners = {key: key.removeprefix(PARTITION_PREFIX).split("/", 1)[0] for key in keys}
    file_ids = sorted(set(owners.values()))
    if not file_ids:
        return 0
    with db.transaction(platform=True) as session:
        status = dict(session.execute(select(UsageFile.id, UsageFile.status).where(UsageFile.id.in_(file_ids))).all())
    # A file being cut (pending) or rated (running), or failed and waiting for a replay, keeps its partitions.
    done = {file_id for file_id in file_ids if status.get(file_id, "processed") == "processed"}
    for key, file_id in owners.items():
        if file_id in done:
            storage.delete(key)
    return len(done)


@dataclass
class SegmentReport:
    """What a segment of a usage file gave, counted as its chunks are rated; the first errors kept for operators."""

    records: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    # Seconds spent reading and parsing the segment, and rating it (its SQL included).
    read_s: float = 0.0
    rate_s: float = 0.0

    def error(self, entry: dict[str, Any]) -> None:
        """Count a rejected line; the report keeps the first ones in file order, whatever order they were met in."""
        self.rejected += 1
        self.errors.append(entry)
        if len(self.errors) >= 2 * FILE_REPORT_ERRORS:
            self._keep_first()

    def _keep_first(self) -> None:
        self.errors.sort(key=lambda entry: entry.get("line") or 0)
        del self.errors[FILE_REPORT_ERRORS:]

    def as_json(self) -> dict[str, Any]:
        self._keep_first()
        return asdict(self)


def ingest_usage_file(
    db: Database,
    storage: Storage,
    usage_file_id: str,
    *,
    window: UsageWindow | None = None,
    segment_bytes: int | None = None,
) -> UsageFile | None:
    """Cut a network usage file into segments and queue a job per segment; a file of one segment is rated at once.

    Safe to run twice: a file already cut is left to its segments' jobs, queued with it in one transaction.
    """
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id)
        if usage_file is None or usage_file.status != "pending":
            return usage_file
        key = usage_file.key
    size = segment_bytes or SEGMENT_BYTES
    parts = -(-storage.size(key) // size)
    jobs: list[dict[str, Any]]
    partitioned = 1 < parts <= MAX_PARTITIONS
    if partitioned:
        # Partitioned in one pass over the file: a partition holds its lines' records from the whole file.
        header = None if key.endswith(".jsonl") else file_header(storage, key)
        partitions = partition_file(storage, key, usage_file_id, header, parts)
        jobs = [{"segment": number, "partition": part_key} for number, part_key in enumerate(partitions)]
        segments: list[Segment] = []
    else:
        header, segments = plan_segments(storage, key, size)
        jobs = [{"segment": s.number, "start": s.start, "end": s.end, "first_line": s.first_line} for s in segments]
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id, with_for_update=True)
        assert usage_file is not None
        if usage_file.status != "pending":
            return usage_file  # cut by another delivery meanwhile
        usage_file.status = "running"
        usage_file.segments_total = len(jobs)
        usage_file.segment_results = {}
        enqueue_many(
            session,
            "charging.ingest_usage_segment",
            [
                (
                    f"ingest-{usage_file_id}-segment-{where['segment']}",
                    {"usage_file_id": usage_file_id, "header": header, **where},
                )
                for where in jobs
            ],
        )
        if not jobs:
            _complete(session, storage, usage_file)
    log.info("usage file cut in segments", extra={"key": key, "segments": len(jobs), "partitioned": partitioned})
    if len(segments) == 1:
        # Its job, queued above, then finds it done: a small file does not wait for a second job.
        only = segments[0]
        ingest_usage_segment(
            db,
            storage,
            usage_file_id,
            segment=only.number,
            start=only.start,
            end=only.end,
            first_line=only.first_line,
            header=header,
            window=window,
        )
    with db.transaction(platform=True) as session:
        return session.get(UsageFile, usage_file_id)


def ingest_usage_segment(
    db: Database,
    storage: Storage,
    usage_file_id: str,
    *,
    segment: int,
    header: str | None,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
    partition: str | None = None,
    window: UsageWindow | None = None,
) -> SegmentReport | None:
    """Rate the records of one segment of a usage file (its `partition`, else its bytes `start` to `end`) and keep
    its counts; the last segment completes the file.

    None when there was nothing to do: the file is gone or processed, or this segment's counts are kept already.
    """
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id)
        # A file failed by another segment's job still takes this one's counts, so a replay can complete it.
        done = str(segment) in (usage_file.segment_results or {}) if usage_file else True
        if usage_file is None or usage_file.status not in SEGMENTS_RUN or done:
            return None
        key = usage_file.key
    report = SegmentReport()
    json_lines = key.endswith(".jsonl")
    numbered = (
        _partition_lines(storage, partition)
        if partition is not None
        else enumerate(_spooled_lines(storage, key, start, end), start=first_line)
    )
    read = read_numbered_lines(numbered, json_lines=json_lines, header=header)
    waiting: dict[str, list[UsageInput]] = {}
    while True:
        started = time.perf_counter()
        items = list(itertools.islice(read, SPAN_RECORDS))
        report.read_s += time.perf_counter() - started
        if not items:
            break
        started = time.perf_counter()
        items.sort(key=_line_order(segment))
        owners = _file_owners(
            db, {i.msisdn for _, i in items if i.msisdn}, {i.imsi for _, i in items if i.imsi and not i.msisdn}
        )
        for chunk in _chunks(items, FILE_CHUNK):
            report.records += len(chunk)
            _ingest_file_chunk(db, key, chunk, report, window=window, owners=owners, waiting=waiting)
        report.rate_s += time.perf_counter() - started
    started = time.perf_counter()
    # What another worker's lines held back to the end: rated now, waiting for those lines if need be.
    for tenant_id, records in waiting.items():
        _ingest_group(db, key, tenant_id, records, report, window=window, defer=False)
    report.rate_s += time.perf_counter() - started
    _finish_segment(db, storage, usage_file_id, segment, report)
    return report


def _line_order(segment: int) -> Callable[[tuple[int, UsageFileRecord | UsageFileError]], int]:
    """The order a segment rates its records in: a line's records together (in file order, the sort being
    stable), so a chunk's locks, balances and terms serve several records of each line; lines in a hashed
    order that each segment enters at its own point, so that workers rating segments side by side are on
    different lines rather than waiting on each other's."""
    entry = (segment * _GOLDEN_STRIDE) & 0xFFFFFFFF

    def order(numbered: tuple[int, UsageFileRecord | UsageFileError]) -> int:
        item = numbered[1]
        return (zlib.crc32((item.msisdn or item.imsi).encode()) - entry) & 0xFFFFFFFF

    return order


# 2^32 over the golden ratio: segment after segment, entry points spread evenly around the line order.
_GOLDEN_STRIDE = 0x9E3779B9


USAGE_FILE_COUNTS = ("records", "accepted", "duplicates", "rejected")


def _segments_so_far(usage_file: UsageFile) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """The segments that have run: how many, their counts summed, and their first errors in segment order."""
    results = [r for _, r in sorted((usage_file.segment_results or {}).items(), key=lambda item: int(item[0]))]
    counts = {name: sum(int(r[name]) for r in results) for name in USAGE_FILE_COUNTS}
    errors = [error for r in results for error in r["errors"]][:FILE_REPORT_ERRORS]
    return len(results), counts, errors


def processed_key(key: str) -> str:
    """Where a processed file is kept: out of the incoming folder, so that discovery does not find it again."""
    return PROCESSED_PREFIX + key.removeprefix(INCOMING_PREFIX)


def usage_file_view(usage_file: UsageFile) -> dict[str, Any]:
    """A usage file as operators follow it: its state, how far its segments have got, its counts so far (final once
    processed) and the first lines that could not be rated; a failed file says why its job failed."""
    done, counts, errors = _segments_so_far(usage_file)
    processed = usage_file.status == "processed"
    if processed:
        counts = {name: getattr(usage_file, name) for name in USAGE_FILE_COUNTS}
        errors = list(usage_file.errors or [])
    failure = None
    if usage_file.status == "failed" and usage_file.errors:
        failure = str(usage_file.errors[0].get("reason", ""))
    total = usage_file.segments_total
    if processed:
        progress = Decimal(100)
    elif total:
        progress = (Decimal(min(done, total)) * 100 / total).quantize(Decimal("0.01"))
    else:
        progress = Decimal(0)
    return {
        "id": usage_file.id,
        "key": usage_file.key,
        "stored_at": processed_key(usage_file.key) if processed else usage_file.key,
        "status": usage_file.status,
        "segments_total": total,
        "segments_done": done,
        "progress_percent": progress,
        **counts,
        "errors": errors,
        "failure_reason": failure,
        "created_at": usage_file.created_at,
        "processed_at": usage_file.processed_at,
    }


def fail_usage_file(session: Session, usage_file_id: str, reason: str) -> None:
    """A job of the file failed past its last retry: the file shows it failed, and why; kept counts stay."""
    session.execute(
        update(UsageFile)
        .where(UsageFile.id == usage_file_id, UsageFile.status.in_(("pending", "running")))
        .values(status="failed", errors=[{"reason": reason[:500]}])
        .execution_options(synchronize_session=False)
    )


def resume_usage_file(session: Session, usage_file_id: str) -> None:
    """The failed job was replayed: the file is pending again (not cut yet) or running (its segments run)."""
    usage_file = session.get(UsageFile, usage_file_id, with_for_update=True)
    if usage_file is not None and usage_file.status == "failed":
        usage_file.status = "pending" if usage_file.segment_results is None else "running"
        usage_file.errors = []


def _finish_segment(db: Database, storage: Storage, usage_file_id: str, segment: int, report: SegmentReport) -> None:
    """Keep the segment's counts under its number (once), and complete the file when every segment has run; the
    file's partitions are deleted once that is committed (until then a segment run again still needs its own)."""
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id, with_for_update=True)
        if usage_file is None:
            return
        results = dict(usage_file.segment_results or {})
        if str(segment) not in results:
            results[str(segment)] = report.as_json()
            usage_file.segment_results = results
        if len(results) >= usage_file.segments_total and usage_file.status == "running":
            _complete(session, storage, usage_file)
        processed = usage_file.status == "processed"
    if processed:
        _drop_partitions(storage, usage_file_id)


def _complete(session: Session, storage: Storage, usage_file: UsageFile) -> None:
    """Sum the segments' counts into the file and mark it processed, once: the UPDATE matches only a running file."""
    _, counts, errors = _segments_so_far(usage_file)
    session.flush()
    done = session.execute(
        update(UsageFile)
        .where(UsageFile.id == usage_file.id, UsageFile.status == "running")
        .values(status="processed", **counts, errors=errors, processed_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        return
    session.refresh(usage_file)
    # Moved before the commit: a failed commit leaves the file running, and its last segment moves nothing twice.
    if storage.exists(usage_file.key):
        storage.move(usage_file.key, processed_key(usage_file.key))
    log.info(
        "usage file ingested",
        extra={"key": usage_file.key, "accepted": usage_file.accepted, "rejected": usage_file.rejected},
    )


@dataclass
class _Owners:
    """The tenants of MSISDNs, and the (tenant, line) of IMSIs, of a segment."""

    by_msisdn: dict[str, str]
    by_imsi: dict[str, tuple[str, str]]


def _file_owners(db: Database, msisdns: set[str], imsis: set[str]) -> _Owners:
    """Whose lines a segment's records name, looked up once for the whole segment."""
    by_msisdn: dict[str, str] = {}
    by_imsi: dict[str, tuple[str, str]] = {}
    with db.transaction(platform=True) as session:
        for msisdn_chunk in _chunks(sorted(msisdns), OWNER_LOOKUP_CHUNK):
            for msisdn, tenant_id in session.execute(
                select(Subscription.msisdn, Subscription.tenant_id).where(
                    one_of(session, Subscription.msisdn, msisdn_chunk)
                )
            ):
                by_msisdn[str(msisdn)] = tenant_id
        for imsi_chunk in _chunks(sorted(imsis), OWNER_LOOKUP_CHUNK):
            # The latest line on the SIM wins: a SIM moved to another line after a swap is that line's now.
            for imsi, tenant_id, sub_id in session.execute(
                select(Sim.imsi, Subscription.tenant_id, Subscription.id)
                .join(Subscription, Subscription.sim_id == Sim.id)
                .where(one_of(session, Sim.imsi, imsi_chunk))
                .order_by(Subscription.created_at)
            ):
                by_imsi[imsi] = (tenant_id, sub_id)
    return _Owners(by_msisdn, by_imsi)


def _ingest_file_chunk(
    db: Database,
    key: str,
    chunk: list[tuple[int, UsageFileRecord | UsageFileError]],
    report: SegmentReport,
    *,
    window: UsageWindow | None,
    owners: _Owners,
    waiting: dict[str, list[UsageInput]],
) -> None:
    """Rate a chunk's records, tenant by tenant, with the records of busy lines earlier chunks left `waiting`;
    those of lines busy now wait in turn."""
    by_msisdn, by_imsi = owners.by_msisdn, owners.by_imsi
    grouped: dict[str, list[UsageInput]] = defaultdict(list)
    for waiting_tenant, held_back in waiting.items():
        grouped[waiting_tenant].extend(held_back)
    waiting.clear()
    services = {s.value: s for s in Service}
    for line, item in chunk:
        tenant_id: str | None = by_msisdn.get(item.msisdn) if item.msisdn else None
        sub_id: str | None = None
        if not item.msisdn and item.imsi in by_imsi:
            tenant_id, sub_id = by_imsi[item.imsi]
        if isinstance(item, UsageFileError):
            if tenant_id is None or not item.record_id:
                report.error({"line": item.line, "reason": item.reason})
                continue
            # Read far enough to name its line: the tenant keeps it as a rejection it can fix.
            grouped[tenant_id].append(
                UsageInput(
                    record_id=item.record_id,
                    service=item.fields.get("service", ""),
                    started_at=utcnow(),
                    quantity=0,
                    subscription_id=sub_id,
                    msisdn=item.msisdn or None,
                    position=item.line,
                    extra=dict(item.fields),
                    refusal=(item.code, f"Line {item.line}: {item.reason}"),
                )
            )
            continue
        if tenant_id is None:
            named = f"MSISDN {item.msisdn}" if item.msisdn else f"IMSI {item.imsi}"
            report.error({"line": line, "record_id": item.record_id, "reason": f"unknown {named}"})
            continue
        extra: dict[str, Any] = {"imsi": item.imsi, "unit": item.unit}
        if item.called_number:
            extra["called_number"] = item.called_number
        if item.visited_plmn:
            extra["visited_plmn"] = item.visited_plmn
        if item.rating_group is not None:
            extra["rating_group"] = item.rating_group
        grouped[tenant_id].append(
            UsageInput(
                record_id=item.record_id,
                service=services[item.service],
                started_at=item.started_at,
                quantity=item.quantity,
                subscription_id=sub_id,
                msisdn=item.msisdn or None,
                position=line,
                extra=extra,
            )
        )
    for group_tenant, records in grouped.items():
        deferred = _ingest_group(db, key, group_tenant, records, report, window=window, defer=True)
        if deferred:
            waiting[group_tenant] = deferred


def _ingest_group(
    db: Database,
    key: str,
    tenant_id: str,
    records: list[UsageInput],
    report: SegmentReport,
    *,
    window: UsageWindow | None,
    defer: bool,
) -> list[UsageInput]:
    """One tenant's records of a chunk in one transaction, counted in the report; the records deferred."""
    with db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        lock_lines: Literal["skip_busy", "wait"] = "skip_busy" if defer else "wait"
        outcome = ingest_usage(
            session, tenant, records, source=f"{FILE_SOURCE}{key}", window=window, lock_lines=lock_lines
        )
    report.accepted += outcome.accepted + outcome.resumed
    report.duplicates += outcome.duplicates
    if outcome.rejected:
        lines = {record.record_id: record.position for record in records}
        for rejected in outcome.rejected:
            record_id = rejected["record_id"]
            report.error(
                {
                    "line": lines.get(record_id),
                    "record_id": record_id,
                    "reason": rejected["reason"],
                    "code": rejected["code"],
                }
            )
    return outcome.deferred


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
