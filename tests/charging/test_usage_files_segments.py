"""A usage file cut into segments, each a job: shared by workers, every record counted once whatever runs twice."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from mvne.charging import usage_files as usage_files_module
from mvne.charging.models import UsageFile, UsageRecord
from mvne.charging.usage_files import (
    SegmentReport,
    fail_usage_file,
    ingest_usage_file,
    ingest_usage_segment,
    plan_segments,
    resume_usage_file,
)
from mvne.infra.ids import new_id
from mvne.infra.jobs import OutboxMessage
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.infra.storage import FileStorage, Storage
from mvne.provisioning.models import Subscription
from tests.charging.test_usage_outcomes import MB, at, stored
from tests.support.api import TenantHandle, active_subscription, customer, published_offer, wait_for


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    """An active line on an offer of 1000 MB."""
    offer = published_offer(tenant.api, code=f"SEG-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


CDR_HEADER = "record_id,imsi,msisdn,service,started_at,duration_s,volume_bytes,called_number,visited_plmn,rating_group"


def test_a_file_is_cut_on_line_boundaries_and_each_segment_knows_its_first_line(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    body = [f"r{n},,+3361234{n:04d},sms,2025-03-01T12:30:00Z,,,,," for n in range(200)]
    body[50] = ""  # a blank line still counts as a line
    storage.put("usage/incoming/net/a.csv", ("\ufeff" + CDR_HEADER + "\r\n" + "\r\n".join(body) + "\r\n").encode())

    header, segments = plan_segments(storage, "usage/incoming/net/a.csv", 1000)

    assert header == CDR_HEADER
    assert len(segments) > 5
    assert [s.number for s in segments] == list(range(len(segments)))
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    read: list[tuple[int, bytes]] = []
    for segment in segments:
        lines = list(storage.lines("usage/incoming/net/a.csv", segment.start, segment.end))
        read.extend(enumerate(lines, start=segment.first_line))
    assert read == [(n + 2, text.encode()) for n, text in enumerate(body)]


def test_json_lines_have_no_header_and_a_bad_header_refuses_the_file_whole(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.put("a.jsonl", b'{"record_id": "j1"}\n{"record_id": "j2"}\n')
    storage.put("bad.csv", b"id,msisdn\nr1,+33612345678\n")
    storage.put("header-only.csv", CDR_HEADER.encode())

    header, segments = plan_segments(storage, "a.jsonl", 10)

    assert header is None
    assert [(s.start, s.first_line) for s in segments] == [(0, 1), (20, 2)]
    with pytest.raises(ValueError, match="header"):
        plan_segments(storage, "bad.csv")
    assert plan_segments(storage, "header-only.csv") == (CDR_HEADER, [])


def test_json_lines_are_partitioned_by_msisdn_else_imsi_each_line_with_its_number(storage: Storage) -> None:
    records = [
        {"record_id": "a1", "msisdn": "+33600000001"},
        {"record_id": "b1", "imsi": "208010000000002"},
        {"record_id": "a2", "msisdn": "+33600000001", "imsi": "208010000000001"},
        {"record_id": "b2", "imsi": "208010000000002"},
        {"record_id": "a3", "msisdn": "+33600000001"},
    ]
    lines = [json.dumps(r).encode() for r in records]
    storage.put("usage/incoming/j.jsonl", b"\n".join([lines[0], lines[1], b"", *lines[2:]]) + b"\n")

    keys = usage_files_module.partition_file(storage, "usage/incoming/j.jsonl", "ufl_x", None, 3)

    assert keys == [f"usage/partitions/ufl_x/{n}" for n in range(3)]
    parts = [list(storage.lines(k)) for k in keys]
    assert sorted(raw for part in parts for raw in part) == sorted(
        b"%d\t%s" % (number, raw) for number, raw in zip([1, 2, 4, 5, 6], lines, strict=True)
    )
    # Each line's records in one partition, in file order (the blank line 3 is not a record).
    by_record = {json.loads(raw.partition(b"\t")[2])["record_id"]: n for n, part in enumerate(parts) for raw in part}
    assert by_record["a1"] == by_record["a2"] == by_record["a3"]
    assert by_record["b1"] == by_record["b2"]
    holding_a = [raw.partition(b"\t")[0] for raw in parts[by_record["a1"]] if b'"a' in raw]
    assert holding_a == [b"1", b"4", b"6"]


def test_a_file_of_several_segments_is_rated_partition_by_partition_each_line_by_one_job(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_files_module, "SPAN_RECORDS", 7)  # a partition read and rated a few records at a time
    offer = published_offer(tenant.api, code=f"PART-{secrets.token_hex(3)}")
    others = [active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"]) for _ in range(3)]
    subs = [line, *others]
    tag = secrets.token_hex(3)
    body = [CDR_HEADER]
    for n in range(40):
        sub = subs[n % len(subs)]
        body.append(f"p-{tag}-{n},,{sub['msisdn']},data,{at(sub)},,{MB},,,")
    key = f"usage/incoming/partnet/{tag}.csv"
    runtime.storage.put(key, "\n".join(body).encode())
    file_id = _pending_file(runtime, key)

    read: list[tuple[str, str]] = []  # the storage's reads, each (how, key), the storage itself answering
    lines_of, blocks_of = runtime.storage.lines, runtime.storage.blocks
    monkeypatch.setattr(runtime.storage, "lines", lambda k, *a: read.append(("lines", k)) or lines_of(k, *a))
    monkeypatch.setattr(runtime.storage, "blocks", lambda k, *a: read.append(("blocks", k)) or blocks_of(k, *a))

    ingest_usage_file(runtime.db, runtime.storage, file_id, segment_bytes=500)
    # Its header line alone, then one pass for the partitions: the file is not also read to cut byte ranges.
    assert [how for how, k in read if k == key] == ["lines", "lines"]
    payloads = _segment_payloads(runtime, file_id)
    assert len(payloads) > 3
    assert all(p["partition"] == f"usage/partitions/{file_id}/{p['segment']}" for p in payloads)
    holders = {}
    for payload in payloads:
        for raw in runtime.storage.lines(payload["partition"]):
            holders.setdefault(raw.split(b",")[2], set()).add(payload["segment"])
    assert len(holders) == 4
    assert all(len(segments) == 1 for segments in holders.values())  # each line's records in one partition
    for payload in payloads:
        ingest_usage_segment(runtime.db, runtime.storage, **payload)

    report = _processed(runtime, file_id)
    assert (report.records, report.accepted, report.duplicates, report.rejected) == (40, 40, 0, 0)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        positions = dict(
            session.execute(
                select(UsageRecord.record_id, UsageRecord.position).where(UsageRecord.source == f"file:{key}")
            ).all()
        )
    assert positions == {f"p-{tag}-{n}": n + 2 for n in range(40)}  # line 1 is the header
    assert runtime.storage.list(f"usage/partitions/{file_id}/") == []


def test_partitions_a_processed_or_forgotten_file_left_behind_are_swept_the_others_kept(runtime: Runtime) -> None:
    tag = secrets.token_hex(3)
    running = _running_file(runtime, f"usage/incoming/sweepnet/{tag}-a.csv", segments_total=2)
    processed = _running_file(runtime, f"usage/incoming/sweepnet/{tag}-b.csv", segments_total=2)
    with runtime.db.transaction(platform=True) as session:
        session.get_one(UsageFile, processed).status = "processed"
    forgotten = new_id("ufl")  # no row: nothing will ever read it
    for file_id in (running, processed, forgotten):
        for n in range(2):
            runtime.storage.put(f"usage/partitions/{file_id}/{n}", b"2\tr1,,+33600000001,sms,2026-01-01T00:00:00Z")

    assert usage_files_module.sweep_partitions(runtime.db, runtime.storage) >= 2

    left = {key.split("/")[2] for key in runtime.storage.list("usage/partitions/")}
    assert running in left
    assert not left & {processed, forgotten}


def _pending_file(runtime: Runtime, key: str) -> str:
    """A usage file found in storage and not cut yet; its id."""
    file_id = new_id("ufl")
    with runtime.db.transaction(platform=True) as session:
        session.add(UsageFile(id=file_id, key=key, status="pending", errors=[], created_at=dt.datetime.now(dt.UTC)))
    return file_id


def _processed(runtime: Runtime, file_id: str) -> UsageFile:
    """The file once its last segment has completed it."""

    def done() -> UsageFile | None:
        with runtime.db.transaction(platform=True) as session:
            found = session.get(UsageFile, file_id)
            return found if found is not None and found.status == "processed" else None

    return wait_for(done, what=f"usage file {file_id} to be processed")


def _segment_payloads(runtime: Runtime, file_id: str) -> list[dict[str, Any]]:
    with runtime.db.transaction(platform=True) as session:
        payloads = session.scalars(
            select(OutboxMessage.payload).where(OutboxMessage.actor == "charging.ingest_usage_segment")
        )
        return [p for p in payloads if p["usage_file_id"] == file_id]


def _running_file(runtime: Runtime, key: str, *, segments_total: int) -> str:
    """A usage file already cut into `segments_total` segments, none of them run yet; its id."""
    file_id = new_id("ufl")
    with runtime.db.transaction(platform=True) as session:
        session.add(
            UsageFile(
                id=file_id,
                key=key,
                status="running",
                errors=[],
                segments_total=segments_total,
                segment_results={},
                created_at=dt.datetime.now(dt.UTC),
            )
        )
    return file_id


def _rate_first_segment(runtime: Runtime, key: str, data: bytes) -> SegmentReport:
    """Put a one-segment file in storage and run its segment, the file kept open (a second segment to come)."""
    runtime.storage.put(key, data)
    header, (segment,) = plan_segments(runtime.storage, key)
    file_id = _running_file(runtime, key, segments_total=2)
    where = {"segment": 0, "start": segment.start, "end": segment.end, "first_line": segment.first_line}
    report = ingest_usage_segment(runtime.db, runtime.storage, file_id, header=header, **where)
    assert isinstance(report, SegmentReport)
    return report


def test_segments_run_out_of_order_and_twice_count_every_record_once(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_files_module, "FILE_CHUNK", 3)
    tag = secrets.token_hex(3)
    started = at(line)
    good = [f"s-{tag}-{n},,{line['msisdn']},data,{started},,{10 * MB},,," for n in range(12)]
    lines = [*good[:5], f"s-{tag}-bad,,{line['msisdn']},data,{started},,lots,,,", *good[5:]]
    lines.append(f"s-{tag}-nobody,,+33780009997,data,{started},,{MB},,,")
    key = f"usage/incoming/segnet/{tag}.csv"
    runtime.storage.put(key, "\n".join([CDR_HEADER, *lines]).encode())
    file_id = _pending_file(runtime, key)

    # The cut queues a job per segment, which the worker runs; the test delivers every segment again, last first.
    ingest_usage_file(runtime.db, runtime.storage, file_id, segment_bytes=200)
    payloads = _segment_payloads(runtime, file_id)
    assert len(payloads) > 3
    for payload in sorted(payloads, key=lambda p: -int(p["segment"])) * 2:
        ingest_usage_segment(runtime.db, runtime.storage, **payload)

    report = _processed(runtime, file_id)
    assert report.segments_total == len(payloads)
    assert sorted(report.segment_results or {}, key=int) == [str(n) for n in range(len(payloads))]
    assert (report.records, report.accepted + report.duplicates, report.rejected) == (14, 12, 2)
    assert any("+33780009997" in e["reason"] for e in report.errors)
    # One rated row per good record, the balance used once; the bad line kept as the tenant's rejection.
    assert stored(runtime, tenant.id) == (12, 1, 120 * MB)
    kept = tenant.api.get("/v1/usage-rejections", source=f"file:{key}").json["data"]
    assert [(r["record_id"], r["position"]) for r in kept] == [(f"s-{tag}-bad", 7)]
    assert not runtime.storage.exists(key)
    assert runtime.storage.exists(f"usage/processed/segnet/{tag}.csv")


def test_a_segment_whose_counts_were_lost_runs_again_and_charges_nothing_twice(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    tag = secrets.token_hex(3)
    started = at(line)
    body = [CDR_HEADER, *(f"l-{tag}-{n},,{line['msisdn']},data,{started},,{MB},,," for n in range(4))]
    body.append(f"l-{tag}-0,,{line['msisdn']},data,{started},,{MB},,,")  # line 6 repeats line 2's record
    key = f"usage/incoming/lostnet/{tag}.csv"
    runtime.storage.put(key, "\n".join(body).encode())
    header, (segment,) = plan_segments(runtime.storage, key)
    file_id = _running_file(runtime, key, segments_total=2)  # a second segment still to come keeps the file open
    where = {"segment": 0, "start": segment.start, "end": segment.end, "first_line": segment.first_line}

    first = ingest_usage_segment(runtime.db, runtime.storage, file_id, header=header, **where)
    with runtime.db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, file_id)
        assert usage_file is not None
        usage_file.segment_results = {}  # as if the worker died after rating, before keeping the counts
    again = ingest_usage_segment(runtime.db, runtime.storage, file_id, header=header, **where)
    third = ingest_usage_segment(runtime.db, runtime.storage, file_id, header=header, **where)

    assert isinstance(first, SegmentReport)
    assert isinstance(again, SegmentReport)
    assert (first.accepted, first.duplicates) == (4, 1)
    # The same lines of the same file are the records rated before: counted as rated, as the first run did.
    assert (again.accepted, again.duplicates) == (4, 1)
    assert third is None  # its counts are kept now: delivered again, it does nothing
    assert stored(runtime, tenant.id) == (4, 0, 4 * MB)
    with runtime.db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, file_id)
        assert usage_file is not None
        assert usage_file.status == "running"
        assert usage_file.segment_results is not None
        assert (usage_file.segment_results["0"]["accepted"], usage_file.segment_results["0"]["duplicates"]) == (4, 1)


def test_a_file_whose_segment_failed_for_good_shows_it_and_completes_once_the_segment_is_replayed(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    tag = secrets.token_hex(3)
    started = at(line)
    body = [CDR_HEADER, *(f"f-{tag}-{n},,{line['msisdn']},sms,{started},,,,," for n in range(6))]
    key = f"usage/incoming/failnet/{tag}.csv"
    runtime.storage.put(key, "\n".join(body).encode())
    header, segments = plan_segments(runtime.storage, key, 150)
    file_id = _running_file(runtime, key, segments_total=len(segments))

    def run(number: int) -> None:
        s = segments[number]
        where = {"start": s.start, "end": s.end, "first_line": s.first_line}
        ingest_usage_segment(runtime.db, runtime.storage, file_id, segment=number, header=header, **where)

    def state() -> tuple[str, int, list[Any]]:
        with runtime.db.transaction(platform=True) as session:
            usage_file = session.get(UsageFile, file_id)
            assert usage_file is not None
            return usage_file.status, usage_file.accepted, usage_file.errors

    with runtime.db.transaction(platform=True) as session:
        fail_usage_file(session, file_id, "RuntimeError: the database went away")
    for number in range(1, len(segments)):
        run(number)  # the other segments' jobs still run while the file shows it failed
    failed = state()
    with runtime.db.transaction(platform=True) as session:
        resume_usage_file(session, file_id)
    run(0)

    assert len(segments) >= 2
    assert failed == ("failed", 0, [{"reason": "RuntimeError: the database went away"}])
    assert state() == ("processed", 6, [])
    assert stored(runtime, tenant.id)[0] == 6


def test_lines_another_worker_holds_are_rated_after_the_others_and_each_record_once(
    runtime: Runtime,
    tenant: TenantHandle,
    line: dict[str, Any],
    postgres_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(usage_files_module, "FILE_CHUNK", 2)
    offer = published_offer(tenant.api, code=f"HELD-{secrets.token_hex(3)}")
    other = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    tag = secrets.token_hex(3)
    body = [CDR_HEADER]
    for n in range(4):
        body.append(f"h-{tag}-a{n},,{line['msisdn']},data,{at(line)},,{MB},,,")
        body.append(f"h-{tag}-b{n},,{other['msisdn']},data,{at(other)},,{MB},,,")
    key = f"usage/incoming/heldnet/{tag}.csv"
    runtime.storage.put(key, "\n".join(body).encode())
    header, (segment,) = plan_segments(runtime.storage, key)
    file_id = _running_file(runtime, key, segments_total=1)
    where = {"segment": 0, "start": segment.start, "end": segment.end, "first_line": segment.first_line}

    def rated_on(sub_id: str) -> int:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            return session.scalar(select(func.count()).where(UsageRecord.subscription_id == sub_id)) or 0

    # Another worker's batch holds the first line for as long as this test says.
    holder = runtime.db.session(tenant_id=tenant.id)
    holder.execute(select(Subscription.id).where(Subscription.id == line["id"]).with_for_update(key_share=True))
    reports: list[SegmentReport | None] = []
    worker = threading.Thread(
        target=lambda: reports.append(
            ingest_usage_segment(runtime.db, runtime.storage, file_id, header=header, **where)
        )
    )
    worker.start()
    try:
        # The other line's records are rated, chunk after chunk, while the held line's wait at the end.
        wait_for(lambda: rated_on(other["id"]) == 4, what="the free line's records")
        time.sleep(0.5)
        assert worker.is_alive()
        assert rated_on(line["id"]) == 0
    finally:
        holder.rollback()
        holder.close()
    worker.join(timeout=60)

    assert not worker.is_alive()
    (report,) = reports
    assert report is not None
    assert (report.records, report.accepted, report.duplicates, report.rejected) == (8, 8, 0, 0)
    assert (rated_on(line["id"]), rated_on(other["id"])) == (4, 4)
    assert stored(runtime, tenant.id) == (8, 0, 8 * MB)


def test_a_segment_rated_line_by_line_reports_its_first_errors_in_file_order_with_their_lines(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_files_module, "FILE_REPORT_ERRORS", 3)
    other = active_subscription(tenant.api, customer(tenant.api)["id"], line["offer"])
    tag = secrets.token_hex(3)
    started = at(line)
    records = []
    for n in range(8):  # file line n + 2: the two lines' records and unknown numbers, interleaved
        owner = (line, other, None)[n % 3]
        msisdn = owner["msisdn"] if owner else f"+3377{n:07d}"  # outside the numbers lines are given
        records.append(f"o-{tag}-{n},,{msisdn},sms,{started},,,,,")
    records.append(f"o-{tag}-early,,{other['msisdn']},sms,2020-01-01T00:00:00Z,,,,,")  # line 10: too old to rate
    key = f"usage/incoming/ordernet/{tag}.csv"

    report = _rate_first_segment(runtime, key, "\n".join([CDR_HEADER, *records]).encode())

    assert (report.records, report.accepted, report.rejected) == (9, 6, 3)
    kept = report.as_json()["errors"]
    assert [(e["line"], e["record_id"]) for e in kept] == [
        (4, f"o-{tag}-2"),
        (7, f"o-{tag}-5"),
        (10, f"o-{tag}-early"),
    ]
    rejections = tenant.api.get("/v1/usage-rejections", source=f"file:{key}").json["data"]
    assert [(r["record_id"], r["position"], r["reason_code"]) for r in rejections] == [
        (f"o-{tag}-early", 10, "too_old")
    ]
    rated = tenant.api.get("/v1/usage-records", subscription=line["id"]).json["data"]
    explained = [tenant.api.get(f"/v1/usage-records/{r['id']}").json for r in rated]
    assert sorted((r["record_id"], r["position"], r["source"]) for r in explained) == [
        (f"o-{tag}-{n}", n + 2, f"file:{key}") for n in (0, 3, 6)
    ]


def test_nul_characters_in_a_file_end_as_rejections_that_say_where_and_the_other_records_are_rated(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    tag = secrets.token_hex(3)
    started = at(line)
    msisdn = line["msisdn"]
    csv_rows = [
        CDR_HEADER,
        f"n-{tag}-1,,{msisdn},voice,{started},60,,+3361\x002345678,,",  # line 2
        f"n-{tag}-2,,{msisdn},data,{started},,100,,208\x0001,",
        f"n-{tag}-3,,{msisdn},data,{started},,100,,,1\x002",
        f"n-{tag}-4,,{msisdn},da\x00ta,{started},,100,,,",
        f"n-{tag}\x00-5,,{msisdn},data,{started},,100,,,",  # line 6: kept under its id as read
        f"n-{tag}-6,,{msisdn},data,{started},,{MB},,,",  # the good one
    ]
    common = {"msisdn": msisdn, "started_at": started, "duration_s": 60}
    json_rows = [  # json.dumps writes a NUL character as the escape \u0000
        json.dumps({"record_id": f"j-{tag}-1", "service": "voice", "called_number": "+3361\x00234", **common}),
        json.dumps({"record_id": f"j-{tag}-2", "service": "sms", "x\x00": "1", **common}),
    ]
    reports = {}
    for suffix, rows in (("csv", csv_rows), ("jsonl", json_rows)):
        key = f"usage/incoming/nulnet/{tag}.{suffix}"
        reports[suffix] = _rate_first_segment(runtime, key, "\n".join(rows).encode())

    csv, jsonl = reports["csv"], reports["jsonl"]
    assert (csv.records, csv.accepted, csv.rejected) == (6, 1, 5)
    assert (jsonl.records, jsonl.accepted, jsonl.rejected) == (2, 0, 2)
    assert all("\x00" not in str(error) for error in [*csv.errors, *jsonl.errors])
    kept = tenant.api.get("/v1/usage-rejections", source=f"file:usage/incoming/nulnet/{tag}.csv").json["data"]
    assert sorted((r["position"], r["reason_code"]) for r in kept) == [
        (2, "malformed"),
        (3, "malformed"),
        (4, "malformed"),
        (5, "unknown_service"),
        (6, "malformed"),
    ]
    called = next(r for r in kept if r["position"] == 2)
    assert called["raw"]["called_number"] == "+3361\ufffd2345678"


def test_a_file_whose_key_is_too_long_to_keep_is_left_alone_and_the_others_are_taken_in(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    tag = secrets.token_hex(3)
    body = "\n".join([CDR_HEADER, f"k-{tag}-1,,{line['msisdn']},sms,{at(line)},,,,,"]).encode()
    long_key = f"usage/incoming/longnet/{'d' * 240}/{'e' * 240}/{tag}.csv"
    key = f"usage/incoming/longnet/{tag}.csv"
    runtime.storage.put(long_key, body)
    runtime.storage.put(key, body)

    found = usage_files_module.discover_usage_files(runtime.db, runtime.storage)

    assert len(long_key) > usage_files_module.KEY_LENGTH
    assert found >= 1
    with runtime.db.transaction(platform=True) as session:
        known = set(session.scalars(select(UsageFile.key).where(UsageFile.key.like("usage/incoming/longnet/%"))))
    assert known == {key}
    assert runtime.storage.exists(long_key)  # left in place for an operator to rename


def test_two_files_whose_long_keys_differ_only_at_the_end_do_not_pass_for_each_other(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    tag = secrets.token_hex(3)
    body = "\n".join([CDR_HEADER, f"s-{tag}-1,,{line['msisdn']},sms,{at(line)},,,,,"]).encode()
    folder = f"usage/incoming/samenet/{'f' * 200}/{'g' * 200}"
    reports = []
    for name in ("first", "second"):  # the same record at the same line of two files
        reports.append(_rate_first_segment(runtime, f"{folder}/{tag}-{name}.csv", body))

    first, second = reports
    assert len(f"file:{folder}/{tag}-first.csv") > 300
    assert (first.accepted, first.duplicates) == (1, 0)
    assert (second.accepted, second.duplicates) == (0, 1)  # another file's record: a duplicate, not its own
