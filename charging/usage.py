"""Usage ingestion and rating: from the API or from host-network files, each record counted once.

A record is inserted first with ON CONFLICT DO NOTHING on (tenant, record id), so a duplicate,
even one racing in another worker, is seen before anything is rated. Rating then locks the line's
allowance balance for the period, consumes it, and prices the rest as overage.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.charging.models import AllowanceBalance, UsageFile, UsageRecord
from mvne.charging.rating import Service, allowance_units, rate_usage
from mvne.infra.db import Database, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue
from mvne.infra.metrics import USAGE_RECORDS
from mvne.infra.storage import Storage
from mvne.provisioning.models import Subscription
from mvne.provisioning.usage_files import parse_usage_file
from mvne.tenants.models import Tenant

log = logging.getLogger("mvne.usage")
T = TypeVar("T")

INCOMING_PREFIX = "usage/incoming/"
PROCESSED_PREFIX = "usage/processed/"
RATEABLE_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class UsageInput:
    record_id: str
    service: Service
    started_at: dt.datetime
    quantity: int
    subscription_id: str | None = None
    msisdn: str | None = None


@dataclass(frozen=True)
class UsageWindow:
    """When usage may have happened: not after now plus a clock-skew tolerance, not before the retention."""

    clock_skew: dt.timedelta = dt.timedelta(minutes=15)
    retention: dt.timedelta = dt.timedelta(days=180)

    @classmethod
    def of(cls, clock_skew_s: int, retention_days: int) -> UsageWindow:
        return cls(dt.timedelta(seconds=clock_skew_s), dt.timedelta(days=retention_days))

    def refusal(self, started_at: dt.datetime, now: dt.datetime) -> tuple[str, str] | None:
        """Why a record's time is refused (code, reason), or None when it is acceptable."""
        if started_at > now + self.clock_skew:
            return (
                "in_the_future",
                f"The record starts at {started_at.isoformat()}, later than now ({now.isoformat(timespec='seconds')}) "
                f"by more than the {int(self.clock_skew.total_seconds())} s clock-skew tolerance.",
            )
        if started_at < now - self.retention:
            return (
                "too_old",
                f"The record starts at {started_at.isoformat()}, older than the {self.retention.days}-day "
                "retention window for usage.",
            )
        return None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def period_of(moment: dt.datetime, timezone: str) -> str:
    """The billing period (YYYY-MM) a moment falls in, in the tenant's time zone."""
    return moment.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y-%m")


def _offer_allowance(offer: Offer, service: Service) -> tuple[int, Decimal]:
    if service is Service.DATA:
        return allowance_units(service, offer.data_mb), offer.overage_data_per_mb
    if service is Service.VOICE:
        return allowance_units(service, offer.voice_minutes), offer.overage_voice_per_minute
    return allowance_units(service, offer.sms), offer.overage_sms_per_message


def ingest_usage(
    session: Session,
    tenant: Tenant,
    records: list[UsageInput],
    *,
    source: str,
    window: UsageWindow | None = None,
) -> IngestResult:
    """Store and rate a batch for the session's tenant; unknown lines are rejected one by one.

    The batch is rated in memory under row locks on the allowance balances it touches, taken in a
    fixed order; duplicates are looked for after the locks are held, so two batches carrying the same
    record (they touch the same balance) cannot both count it. Records are then written in one insert.
    """
    result = IngestResult()
    by_id = {r.subscription_id for r in records if r.subscription_id}
    by_msisdn = {r.msisdn for r in records if r.msisdn and not r.subscription_id}
    subs = {
        s.id: s
        for s in session.scalars(
            select(Subscription).where((Subscription.id.in_(by_id)) | (Subscription.msisdn.in_(by_msisdn)))
        )
    }
    subs_by_msisdn = {s.msisdn: s for s in subs.values() if s.msisdn}
    offers = {o.id: o for o in session.scalars(select(Offer).where(Offer.id.in_({s.offer_id for s in subs.values()})))}

    candidates: list[tuple[UsageInput, Subscription, str]] = []
    seen_in_batch: set[str] = set()
    window = window or UsageWindow()
    now = utcnow()
    for index, record in enumerate(records):
        sub = subs.get(record.subscription_id) if record.subscription_id else subs_by_msisdn.get(record.msisdn or "")
        refusal = window.refusal(record.started_at, now)
        if refusal is not None:
            result.rejected.append(_rejection(index, record, *refusal))
        elif sub is None:
            result.rejected.append(_rejection(index, record, "unknown_subscription", "No line with that id or MSISDN."))
        elif sub.status not in RATEABLE_STATUSES or (sub.activated_at and record.started_at < sub.activated_at):
            reason = f"The line was not active at {record.started_at.isoformat()}."
            result.rejected.append(_rejection(index, record, "line_not_active", reason))
        elif record.record_id in seen_in_batch:
            result.duplicates += 1
        else:
            seen_in_batch.add(record.record_id)
            candidates.append((record, sub, period_of(record.started_at, tenant.timezone)))
    if not candidates:
        return _counted(result)

    keys = sorted({(sub.id, period, record.service.value) for record, sub, period in candidates})
    balances = _locked_balances(session, tenant.id, keys, offers, {sub.id: sub for _, sub, _ in candidates})
    known: set[str] = set()
    ids = [record.record_id for record, _, _ in candidates]
    for id_chunk in _chunks(ids, 1000):
        known.update(session.scalars(select(UsageRecord.record_id).where(UsageRecord.record_id.in_(id_chunk))))

    received = utcnow()
    rows: list[dict[str, Any]] = []
    for record, sub, period in candidates:
        if record.record_id in known:
            result.duplicates += 1
            continue
        balance = balances[(sub.id, period, record.service.value)]
        price = _offer_allowance(offers[sub.offer_id], record.service)[1]
        rated = rate_usage(record.service, record.quantity, max(balance.granted - balance.used, 0), price)
        balance.used += rated.allowance_used
        rows.append(
            {
                "id": new_id("usg"),
                "tenant_id": tenant.id,
                "record_id": record.record_id,
                "subscription_id": sub.id,
                "msisdn": sub.msisdn or "",
                "service": record.service.value,
                "started_at": record.started_at,
                "quantity": record.quantity,
                "period": period,
                "allowance_used": rated.allowance_used,
                "overage_quantity": rated.overage_quantity,
                "amount": rated.amount,
                "source": source[:300],
                "received_at": received,
            }
        )
    for row_chunk in _chunks(rows, 500):
        session.execute(insert(UsageRecord), row_chunk)
    result.accepted += len(rows)
    session.flush()
    return _counted(result)


def _rejection(index: int, record: UsageInput, code: str, reason: str) -> dict[str, Any]:
    return {"index": index, "record_id": record.record_id, "code": code, "reason": reason}


def _counted(result: IngestResult) -> IngestResult:
    USAGE_RECORDS.labels("accepted").inc(result.accepted)
    USAGE_RECORDS.labels("duplicate").inc(result.duplicates)
    USAGE_RECORDS.labels("rejected").inc(len(result.rejected))
    return result


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _locked_balances(
    session: Session,
    tenant_id: str,
    keys: list[tuple[str, str, str]],
    offers: dict[str, Offer],
    subs: dict[str, Subscription],
) -> dict[tuple[str, str, str], AllowanceBalance]:
    """The balances of (line, period, service), created when missing, locked in key order."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = [
        {
            "id": new_id("bal"),
            "tenant_id": tenant_id,
            "subscription_id": sub_id,
            "period": period,
            "service": service,
            "granted": _offer_allowance(offers[subs[sub_id].offer_id], Service(service))[0],
            "used": 0,
        }
        for sub_id, period, service in keys
    ]
    for chunk in _chunks(values, 500):
        session.execute(
            upsert(AllowanceBalance)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["subscription_id", "period", "service"])
        )
    locked: dict[tuple[str, str, str], AllowanceBalance] = {}
    sub_ids = sorted({k[0] for k in keys})
    for sub_chunk in _chunks(sub_ids, 500):
        rows = session.scalars(
            select(AllowanceBalance)
            .where(AllowanceBalance.subscription_id.in_(sub_chunk))
            .order_by(AllowanceBalance.subscription_id, AllowanceBalance.period, AllowanceBalance.service)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for balance in rows:
            locked[(balance.subscription_id, balance.period, balance.service)] = balance
    return {key: locked[key] for key in keys}


def discover_usage_files(db: Database, storage: Storage) -> int:
    """Register new files in the incoming folder and queue their ingestion; returns how many."""
    keys = [k for k in storage.list(INCOMING_PREFIX) if k.endswith(".csv")]
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


def ingest_usage_file(
    db: Database, storage: Storage, usage_file_id: str, *, window: UsageWindow | None = None
) -> UsageFile | None:
    """Parse a network usage file and ingest its records, tenant by tenant; safe to run twice."""
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id)
        if usage_file is None or usage_file.status == "processed":
            return usage_file
        key = usage_file.key
    parsed = parse_usage_file(storage.get(key))
    errors: list[dict[str, Any]] = [{"line": e.line, "reason": e.reason} for e in parsed.errors]
    msisdns = {r.msisdn for r in parsed.records}
    with db.transaction(platform=True) as session:
        owners = dict(
            session.execute(
                select(Subscription.msisdn, Subscription.tenant_id).where(Subscription.msisdn.in_(msisdns))
            ).all()
        )
    grouped: dict[str, list[UsageInput]] = defaultdict(list)
    for record in parsed.records:
        tenant_id = owners.get(record.msisdn)
        if tenant_id is None:
            errors.append({"record_id": record.record_id, "reason": f"unknown MSISDN {record.msisdn}"})
            continue
        grouped[tenant_id].append(
            UsageInput(
                record_id=record.record_id,
                service=Service(record.service),
                started_at=record.started_at,
                quantity=record.quantity,
                msisdn=record.msisdn,
            )
        )
    totals = IngestResult()
    for tenant_id, records in grouped.items():
        with db.transaction(tenant_id=tenant_id) as session:
            tenant = session.get(Tenant, tenant_id)
            assert tenant is not None
            outcome = ingest_usage(session, tenant, records, source=f"file:{key}", window=window)
        totals.accepted += outcome.accepted
        totals.duplicates += outcome.duplicates
        errors.extend({"record_id": r["record_id"], "reason": r["reason"]} for r in outcome.rejected)
    processed_key = PROCESSED_PREFIX + key.removeprefix(INCOMING_PREFIX)
    if storage.exists(key):
        storage.move(key, processed_key)
    with db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, usage_file_id)
        assert usage_file is not None
        usage_file.status = "processed"
        usage_file.records = len(parsed.records) + len(parsed.errors)
        usage_file.accepted = totals.accepted
        usage_file.duplicates = totals.duplicates
        usage_file.rejected = len(errors)
        usage_file.errors = errors[:200]
        usage_file.processed_at = utcnow()
    log.info("usage file ingested", extra={"key": key, "accepted": totals.accepted, "rejected": len(errors)})
    return usage_file


@dataclass(frozen=True)
class ServiceUsage:
    service: str
    unit: str
    allowance: int
    quantity: int
    allowance_used: int
    overage_quantity: int
    overage_amount: Decimal
    records: int


def usage_summary(session: Session, subscription: Subscription, period: str) -> list[ServiceUsage]:
    """What a line used in a period, per service: allowance, use, overage and its price so far."""
    offer = session.get(Offer, subscription.offer_id)
    assert offer is not None
    rows = session.execute(
        select(
            UsageRecord.service,
            UsageRecord.quantity,
            UsageRecord.allowance_used,
            UsageRecord.overage_quantity,
            UsageRecord.amount,
        ).where(UsageRecord.subscription_id == subscription.id, UsageRecord.period == period)
    )
    totals: dict[str, list[Any]] = {s.value: [0, 0, 0, Decimal(0), 0] for s in Service}
    for service, quantity, used, overage, amount in rows:
        bucket = totals[service]
        bucket[0] += quantity
        bucket[1] += used
        bucket[2] += overage
        bucket[3] += amount
        bucket[4] += 1
    units = {Service.DATA: "bytes", Service.VOICE: "seconds", Service.SMS: "messages"}
    return [
        ServiceUsage(
            service=s.value,
            unit=units[s],
            allowance=_offer_allowance(offer, s)[0],
            quantity=totals[s.value][0],
            allowance_used=totals[s.value][1],
            overage_quantity=totals[s.value][2],
            overage_amount=totals[s.value][3],
            records=totals[s.value][4],
        )
        for s in Service
    ]
