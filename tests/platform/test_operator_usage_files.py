"""Operators follow the host networks' usage files: state, progress, counts, unreadable lines, why one failed."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from sqlalchemy import select

from mvne.charging.models import UsageFile
from mvne.charging.usage_files import PROCESSED_PREFIX, discover_usage_files
from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.provisioning.simulator import emit_usage_file
from mvne.provisioning.usage_files import INCOMING_PREFIX, UsageFileRecord
from tests.support.api import Operator, TenantHandle, active_subscription, customer, published_offer, wait_for

MB = 1_000_000


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    offer = published_offer(tenant.api, code=f"UFL-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def _stored_file(runtime: Runtime, **values: Any) -> str:
    """A usage file's row as a run left it (no object in storage: only its account is read)."""
    file_id = new_id("ufl")
    with runtime.db.transaction(platform=True) as session:
        key = f"{INCOMING_PREFIX}ops-{secrets.token_hex(4)}.csv"
        session.add(UsageFile(id=file_id, key=key, created_at=dt.datetime.now(dt.UTC), **{"errors": [], **values}))
    return file_id


def _segment(records: int, accepted: int, rejected: int, errors: list[dict[str, Any]]) -> dict[str, Any]:
    return {"records": records, "accepted": accepted, "duplicates": 0, "rejected": rejected, "errors": errors}


def test_a_processed_file_shows_its_counts_its_unreadable_lines_and_where_it_is_kept(
    runtime: Runtime, operator: Operator, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    started = dt.datetime.fromisoformat(line["activated_at"]) + dt.timedelta(minutes=1)
    tag = secrets.token_hex(3)
    cdr = {"msisdn": line["msisdn"], "imsi": "", "service": "data", "started_at": started, "quantity": 2 * MB}
    records = [
        UsageFileRecord(**cdr, record_id=f"o-{tag}-1"),
        UsageFileRecord(**{**cdr, "msisdn": "+33780009996"}, record_id=f"o-{tag}-nobody"),
        UsageFileRecord(**cdr, record_id=f"o-{tag}-2"),
    ]
    key = emit_usage_file(runtime.storage, "operators", records)
    discover_usage_files(runtime.db, runtime.storage)

    def processed() -> str | None:
        with runtime.db.transaction(platform=True) as session:
            found = session.scalar(select(UsageFile).where(UsageFile.key == key))
            return found.id if found is not None and found.status == "processed" else None

    file_id = wait_for(processed, what=f"usage file {key}")
    shown = operator.api.get(f"/v1/operator/usage-files/{file_id}")

    assert shown.status_code == 200, shown.json
    body = shown.json
    assert (body["status"], body["progress_percent"], body["failure_reason"]) == ("processed", "100.00", None)
    assert (body["records"], body["accepted"], body["duplicates"], body["rejected"]) == (3, 2, 0, 1)
    assert body["segments_done"] == body["segments_total"] >= 1
    (error,) = body["errors"]
    assert (error["line"], error["record_id"]) == (3, f"o-{tag}-nobody")  # the header is line 1
    assert body["stored_at"].startswith(PROCESSED_PREFIX)
    assert runtime.storage.exists(body["stored_at"])
    assert body["processed_at"] is not None
    listed = operator.api.get("/v1/operator/usage-files", status="processed", limit=100)
    ids = [f["id"] for f in listed.json["data"]]
    while listed.json["has_more"] and file_id not in ids:
        listed = operator.api.get("/v1/operator/usage-files", status="processed", limit=100, starting_after=ids[-1])
        ids += [f["id"] for f in listed.json["data"]]
    assert file_id in ids


def test_a_running_file_shows_how_far_its_segments_have_got_and_a_failed_one_why(
    runtime: Runtime, operator: Operator
) -> None:
    bad_line = {"line": 7, "record_id": "r7", "code": "malformed", "reason": "volume_bytes: not a whole number"}
    running = _stored_file(
        runtime,
        status="running",
        segments_total=3,
        segment_results={"2": _segment(40, 39, 1, [bad_line]), "0": _segment(35, 35, 0, [])},
    )
    failed = _stored_file(
        runtime,
        status="failed",
        segments_total=2,
        segment_results={"1": _segment(10, 10, 0, [])},
        errors=[{"reason": "segment job failed: storage unreachable"}],
    )

    shown = operator.api.get(f"/v1/operator/usage-files/{running}").json
    assert (shown["status"], shown["segments_done"], shown["segments_total"]) == ("running", 2, 3)
    assert shown["progress_percent"] == "66.67"
    assert (shown["records"], shown["accepted"], shown["rejected"]) == (75, 74, 1)
    assert shown["errors"] == [bad_line]
    assert shown["stored_at"] == shown["key"]
    gone = operator.api.get(f"/v1/operator/usage-files/{failed}").json
    assert (gone["status"], gone["progress_percent"], gone["records"]) == ("failed", "50.00", 10)
    assert gone["failure_reason"] == "segment job failed: storage unreachable"
    assert gone["errors"] == []
    only_failed = operator.api.get("/v1/operator/usage-files", status="failed", limit=100).json["data"]
    assert failed in [f["id"] for f in only_failed]
    assert {f["status"] for f in only_failed} == {"failed"}


def test_usage_files_are_for_operators_and_an_unknown_one_is_a_clear_404(
    operator: Operator, tenant: TenantHandle
) -> None:
    missing = operator.api.get("/v1/operator/usage-files/ufl_01M8NHTM21YRHT2QG60D9HJAWD")
    assert (missing.status_code, missing.json["code"]) == (404, "usage_file_not_found")
    assert tenant.api.get("/v1/operator/usage-files").status_code == 403
    bad = operator.api.get("/v1/operator/usage-files", status="lost")
    assert bad.status_code == 422
    assert bad.json["code"]
