"""A re-rating run whose worker is killed with SIGKILL between chunks: each record re-rated once, each allowance
drawn once, and the run says so.

Real processes on PostgreSQL and Redis (see conftest.py); the end state is read from the database.
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

from sqlalchemy import func, select

from mvne.catalog.models import OfferVersion
from mvne.charging import billing, usage
from mvne.charging.models import BalanceBucket, ReratingRun, UsageRecord
from mvne.charging.rerating import LINES_PER_CHUNK, start_rerating_run
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Event, Tenant
from tests.faults.conftest import LEASE_S, Plant
from tests.faults.test_jobs_survive_faults import ZONE, _billable_lines, _customers, _offer, _tenant

LINES = 6 * LINES_PER_CHUNK
# Each line calls 50 minutes, then 20: the second call's last 10 minutes are beyond the 60 of the allowance.
CALLS_S = (3000, 1200)


def _rate_calls(plant: Plant, tenant_id: str) -> str:
    """The lines' calls rated through the usage service, in the middle of the current period; that period."""
    now = billing.utcnow()
    period = usage.period_of(now, ZONE)
    start, _ = usage.period_window(period, ZONE)
    started = start + (now - start) / 2
    with plant.db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get_one(Tenant, tenant_id)
        lines = sorted(session.execute(select(Subscription.id, Subscription.msisdn)).all())
        records = [
            usage.UsageInput(
                record_id=f"call-{n}-{index}",
                service="voice",
                started_at=started.replace(microsecond=0) + dt.timedelta(minutes=index),
                quantity=seconds,
                subscription_id=line_id,
            )
            for n, (line_id, _) in enumerate(lines)
            for index, seconds in enumerate(CALLS_S)
        ]
        result = usage.ingest_usage(session, tenant, records, source="api", window=usage.UsageWindow())
    assert (result.accepted, result.duplicates, len(result.rejected)) == (len(records), 0, 0)
    return period


def _run(plant: Plant, tenant_id: str, run_id: str) -> ReratingRun:
    with plant.db.transaction(tenant_id=tenant_id) as session:
        return session.get_one(ReratingRun, run_id)


def test_a_rerating_run_whose_worker_is_killed_mid_run_resumes_and_rerates_each_record_once(plant: Plant) -> None:
    _, period_start = billing.last_ended_period(ZONE)
    tenant_id = _tenant(plant)
    offer_id = _offer(plant, tenant_id)  # 60 voice minutes, 0.20 a minute beyond
    _billable_lines(plant, tenant_id, offer_id, _customers(plant, tenant_id, LINES), period_start)
    period = _rate_calls(plant, tenant_id)
    with plant.db.transaction(tenant_id=tenant_id) as session:
        # The price beyond the allowance was wrong: 0.50 a minute. The fix applies to the period's usage.
        version = session.scalars(select(OfferVersion).where(OfferVersion.offer_id == offer_id)).one()
        version.usage_prices = {"home": {**version.usage_prices["home"], "voice": "0.50"}}
        run_id = start_rerating_run(session, session.get_one(Tenant, tenant_id), period=period).id
    plant.start_scheduler()
    plant.start_worker("worker-1", threads=1)

    plant.poll(lambda: _run(plant, tenant_id, run_id).chunks_done >= 1, timeout=120, what="a first chunk", every=0.02)
    plant.kill("worker-1")
    at_kill = _run(plant, tenant_id, run_id)
    chunks = -(-LINES // LINES_PER_CHUNK)
    assert at_kill.status == "running", f"the kill landed after the run ended: {at_kill.status}"
    assert at_kill.chunks_done < chunks, "the kill landed after the last chunk"

    restarted = time.monotonic()
    plant.start_worker("worker-2", threads=1)
    run = plant.poll(
        lambda: (r := _run(plant, tenant_id, run_id)).status == "completed" and r,
        timeout=120,
        what="the run to complete after the worker was restarted",
        every=0.2,
    )
    figures = plant.figures(actor="charging.execute_rerating_run", tenant_id=tenant_id)
    print(
        f"\nre-rating of {LINES * len(CALLS_S)} records on {LINES} lines in {chunks} chunks; worker killed after "
        f"{at_kill.chunks_done} chunks; run completed {time.monotonic() - restarted:.1f} s after the restart "
        f"(lease {LEASE_S} s); run job sent {figures.sent}, resent {figures.resent}"
    )

    assert (run.records_total, run.records_done, run.records_changed, run.adjustments, run.chunks_done) == (
        LINES * len(CALLS_S),
        LINES * len(CALLS_S),
        LINES,
        0,
        chunks,
    )
    assert figures.resent >= 1
    with plant.db.transaction(tenant_id=tenant_id) as session:
        amounts = session.execute(
            select(UsageRecord.record_id, UsageRecord.amount, UsageRecord.rerated_count).order_by(UsageRecord.record_id)
        ).all()
        used = session.execute(
            select(func.count(), func.sum(BalanceBucket.used)).where(
                BalanceBucket.service == "voice", BalanceBucket.origin == "plan", BalanceBucket.period == period
            )
        ).one()
        completed = session.scalar(
            select(func.count()).where(Event.object_id == run_id, Event.type == "rerating_run.completed")
        )
    # The second call of each line: 10 minutes beyond the allowance at 0.50, once, whichever worker rated it.
    assert sorted({(record_id.endswith("-1"), amount, count) for record_id, amount, count in amounts}) == [
        (False, Decimal("0"), 0),
        (True, Decimal("5.00"), 1),
    ]
    # Given back and drawn again once per line: the whole hour, not two.
    assert tuple(used) == (LINES, LINES * 3600)
    assert completed == 1
