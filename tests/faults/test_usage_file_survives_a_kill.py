"""A usage file whose worker is killed with SIGKILL mid-segment: every record rated once, and the file says so.

Real processes on PostgreSQL and Redis (see conftest.py); the end state is read from the database.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import func, select

from mvne.charging import billing
from mvne.charging.models import BalanceBucket, UsageFile, UsageRecord
from mvne.provisioning.models import Subscription
from tests.faults.conftest import LEASE_S, Plant
from tests.faults.test_jobs_survive_faults import ZONE, _billable_lines, _customers, _offer, _tenant

CDR_HEADER = "record_id,imsi,msisdn,service,started_at,duration_s,volume_bytes,called_number,visited_plmn,rating_group"
MB = 1_000_000


def _usage_file(plant: Plant, msisdns: list[str], per_line: int, started: str) -> tuple[str, int]:
    """A CDR file in the incoming folder of the plant's storage: `per_line` records of 1 MB for each line."""
    rows = [CDR_HEADER]
    for n in range(per_line):
        rows.extend(f"k-{n}-{index},,{msisdn},data,{started},,{MB},,," for index, msisdn in enumerate(msisdns))
    key = "usage/incoming/killnet/cdr-0001.csv"
    path = Path(plant.env["MVNE_STORAGE_URL"].removeprefix("file://")) / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows))
    return key, len(rows) - 1


def _rated(plant: Plant, tenant_id: str) -> int:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        return int(session.scalar(select(func.count()).select_from(UsageRecord)) or 0)


def _file(plant: Plant, key: str) -> UsageFile | None:
    with plant.db.transaction(platform=True) as session:
        return session.scalar(select(UsageFile).where(UsageFile.key == key))


def test_a_usage_file_whose_worker_is_killed_mid_segment_is_rated_once_and_counted_as_rated(plant: Plant) -> None:
    lines, per_line = 400, 50
    _, period_start = billing.last_ended_period(ZONE)
    tenant_id = _tenant(plant)
    offer_id = _offer(plant, tenant_id)  # 1000 MB a month: every record below is within the allowance
    _billable_lines(plant, tenant_id, offer_id, _customers(plant, tenant_id, lines), period_start)
    with plant.db.transaction(tenant_id=tenant_id) as session:
        msisdns = sorted(session.scalars(select(Subscription.msisdn)))
    key, records = _usage_file(plant, msisdns, per_line, started=billing.utcnow().replace(microsecond=0).isoformat())
    plant.start_scheduler()
    plant.start_worker("worker-1", threads=1)

    plant.poll(lambda: _rated(plant, tenant_id) >= records // 5, timeout=120, what="the file's first rated records")
    plant.kill("worker-1")
    at_kill = _rated(plant, tenant_id)
    killed = _file(plant, key)
    assert killed is not None
    assert killed.status == "running", f"the kill landed after the file was processed: {killed.status}"
    assert at_kill < records, "the kill landed after every record was rated"
    # Several segments (MVNE_USAGE_SEGMENT_BYTES): the file was partitioned by line, each line in one partition.
    assert (killed.segments_total or 0) > 1
    storage = Path(plant.env["MVNE_STORAGE_URL"].removeprefix("file://"))
    assert len(list((storage / "usage/partitions" / killed.id).iterdir())) == killed.segments_total

    restarted = time.monotonic()
    plant.start_worker("worker-2", threads=1)
    done = plant.poll(
        lambda: (f := _file(plant, key)) is not None and f.status == "processed" and f,
        timeout=180,
        what="the file to be processed after the worker was restarted",
        every=0.5,
    )
    print(
        f"\n{records} records on {lines} lines; worker killed at {at_kill} rated; file processed "
        f"{time.monotonic() - restarted:.1f} s after the restart (lease {LEASE_S} s)"
    )

    # The records the dead worker committed are the same lines of the same file: rated, not duplicates.
    assert (done.records, done.accepted, done.duplicates, done.rejected) == (records, records, 0, 0), done.errors
    assert _rated(plant, tenant_id) == records
    assert not (storage / "usage/partitions" / killed.id).exists() or not any(
        (storage / "usage/partitions" / killed.id).iterdir()
    )
    with plant.db.transaction(tenant_id=tenant_id) as session:
        used = session.scalar(select(func.sum(BalanceBucket.used)).where(BalanceBucket.service == "data"))
        once = session.scalar(
            select(func.count()).select_from(
                select(UsageRecord.record_id).group_by(UsageRecord.record_id).having(func.count() > 1).subquery()
            )
        )
    assert used == records * MB  # each record drew on its line's allowance once
    assert once == 0
