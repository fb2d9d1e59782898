"""Usage ingestion on a real database: each record counted once, allowances consumed in order."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from mvne.charging.models import BalanceBucket, UsageRecord
from mvne.charging.rating import Service
from mvne.charging.usage import IngestResult, UsageInput, ingest_usage
from mvne.infra.runtime import Runtime
from mvne.tenants.models import Tenant
from tests.support.api import TenantHandle, active_subscription, customer, published_offer

MB = 1_000_000


def line(tenant: TenantHandle) -> dict[str, Any]:
    offer = published_offer(tenant.api)  # 1000 MB, 60 min, 10 SMS; 0.01 per MB beyond
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def data(record_id: str, sub: dict[str, Any], mb: int, *, seconds_after: int = 1) -> UsageInput:
    started = dt.datetime.fromisoformat(sub["activated_at"]) + dt.timedelta(seconds=seconds_after)
    return UsageInput(record_id, Service.DATA, started, mb * MB, subscription_id=sub["id"])


def ingest(runtime: Runtime, tenant_id: str, records: list[UsageInput]) -> IngestResult:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        return ingest_usage(session, tenant, records, source="test")


def totals(runtime: Runtime, tenant_id: str, sub_id: str) -> tuple[int, int, Decimal, int]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        count = session.scalar(select(func.count()).where(UsageRecord.subscription_id == sub_id)) or 0
        amounts = session.scalars(select(UsageRecord.amount).where(UsageRecord.subscription_id == sub_id)).all()
        used = session.scalars(select(BalanceBucket.used).where(BalanceBucket.subscription_id == sub_id)).all()
        overage = session.scalars(
            select(UsageRecord.overage_quantity).where(UsageRecord.subscription_id == sub_id)
        ).all()
        return count, sum(used), sum(amounts, Decimal(0)), sum(overage)


def test_the_allowance_is_consumed_first_and_the_rest_priced_as_overage(
    runtime: Runtime, tenant: TenantHandle, live_url: str
) -> None:
    sub = line(tenant)
    first = ingest(runtime, tenant.id, [data("a", sub, 600)])
    second = ingest(runtime, tenant.id, [data("b", sub, 600, seconds_after=2)])

    assert (first.accepted, second.accepted) == (1, 1)
    count, used, amount, overage = totals(runtime, tenant.id, sub["id"])
    assert (count, used, overage) == (2, 1000 * MB, 200 * MB)
    assert amount == Decimal("2.000000")


def test_a_record_sent_again_or_twice_in_one_batch_is_counted_once(
    runtime: Runtime, tenant: TenantHandle, live_url: str
) -> None:
    sub = line(tenant)
    first = ingest(runtime, tenant.id, [data("r1", sub, 100), data("r1", sub, 100), data("r2", sub, 100)])
    again = ingest(runtime, tenant.id, [data("r2", sub, 100), data("r3", sub, 100)])

    assert (first.accepted, first.duplicates) == (2, 1)
    assert (again.accepted, again.duplicates) == (1, 1)
    assert totals(runtime, tenant.id, sub["id"])[:2] == (3, 300 * MB)


def test_two_batches_racing_with_the_same_records_count_each_record_once(
    runtime: Runtime, tenant: TenantHandle, live_url: str
) -> None:
    sub = line(tenant)
    batch = [data(f"race-{n}", sub, 30, seconds_after=n + 1) for n in range(40)]  # 1,200 MB in all
    results: list[IngestResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            results.append(ingest(runtime, tenant.id, batch))
        except BaseException as exc:  # surfaced below: a lost update must not pass silently
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sorted(r.accepted for r in results) == [0, 40]
    assert sorted(r.duplicates for r in results) == [0, 40]
    count, used, amount, overage = totals(runtime, tenant.id, sub["id"])
    assert (count, used, overage) == (40, 1000 * MB, 200 * MB)
    assert amount == Decimal("2.000000")


def test_records_of_unknown_lines_or_from_before_activation_are_rejected_one_by_one(
    runtime: Runtime, tenant: TenantHandle, live_url: str
) -> None:
    sub = line(tenant)
    early = data("early", sub, 10, seconds_after=-3600)
    unknown = UsageInput("ghost", Service.SMS, dt.datetime.now(dt.UTC), 1, msisdn="+33780009998")

    result = ingest(runtime, tenant.id, [early, unknown, data("good", sub, 10)])

    assert result.accepted == 1
    assert [(r["record_id"], r["code"]) for r in result.rejected] == [
        ("early", "line_not_active_then"),
        ("ghost", "unknown_line"),
    ]
