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
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import select
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


def ingest_usage(session: Session, tenant: Tenant, records: list[UsageInput], *, source: str) -> IngestResult:
    """Store and rate a batch for the session's tenant; unknown lines are rejected one by one."""
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
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert

    for index, record in enumerate(records):
        sub = subs.get(record.subscription_id) if record.subscription_id else subs_by_msisdn.get(record.msisdn or "")
        if sub is None:
            result.rejected.append(
                {
                    "index": index,
                    "record_id": record.record_id,
                    "code": "unknown_subscription",
                    "reason": "No line with that subscription id or MSISDN.",
                }
            )
            continue
        if sub.status not in RATEABLE_STATUSES or (sub.activated_at and record.started_at < sub.activated_at):
            result.rejected.append(
                {
                    "index": index,
                    "record_id": record.record_id,
                    "code": "line_not_active",
                    "reason": f"The line was not active at {record.started_at.isoformat()}.",
                }
            )
            continue
        period = period_of(record.started_at, tenant.timezone)
        usage_id = new_id("usg")
        inserted = session.scalar(
            insert(UsageRecord)
            .values(
                id=usage_id,
                tenant_id=tenant.id,
                record_id=record.record_id,
                subscription_id=sub.id,
                msisdn=sub.msisdn or "",
                service=record.service.value,
                started_at=record.started_at,
                quantity=record.quantity,
                period=period,
                amount=Decimal(0),
                source=source[:300],
                received_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "record_id"])
            .returning(UsageRecord.id)
        )
        if inserted is None:
            result.duplicates += 1
            continue
        granted, price = _offer_allowance(offers[sub.offer_id], record.service)
        balance = _locked_balance(session, tenant.id, sub.id, period=period, service=record.service, granted=granted)
        rated = rate_usage(record.service, record.quantity, max(balance.granted - balance.used, 0), price)
        balance.used += rated.allowance_used
        usage = session.get(UsageRecord, usage_id)
        assert usage is not None
        usage.allowance_used = rated.allowance_used
        usage.overage_quantity = rated.overage_quantity
        usage.amount = rated.amount
        result.accepted += 1
    session.flush()
    USAGE_RECORDS.labels("accepted").inc(result.accepted)
    USAGE_RECORDS.labels("duplicate").inc(result.duplicates)
    USAGE_RECORDS.labels("rejected").inc(len(result.rejected))
    return result


def _locked_balance(
    session: Session, tenant_id: str, subscription_id: str, *, period: str, service: Service, granted: int
) -> AllowanceBalance:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(AllowanceBalance)
        .values(
            id=new_id("bal"),
            tenant_id=tenant_id,
            subscription_id=subscription_id,
            period=period,
            service=service.value,
            granted=granted,
            used=0,
        )
        .on_conflict_do_nothing(index_elements=["subscription_id", "period", "service"])
    )
    balance = session.scalar(
        select(AllowanceBalance)
        .where(
            AllowanceBalance.subscription_id == subscription_id,
            AllowanceBalance.period == period,
            AllowanceBalance.service == service.value,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert balance is not None
    return balance


def discover_usage_files(db: Database, storage: Storage) -> int:
    """Register new files in the incoming folder and queue their ingestion; returns how many."""
    keys = [k for k in storage.list(INCOMING_PREFIX) if k.endswith(".csv")]
    if not keys:
        return 0
    found = 0
    with db.transaction(platform=True) as session:
        known = set(session.scalars(select(UsageFile.key).where(UsageFile.key.in_(keys))))
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        for key in keys:
            if key in known:
                continue
            file_id = new_id("ufl")
            session.execute(
                insert(UsageFile)
                .values(id=file_id, key=key, status="pending", errors=[], created_at=utcnow())
                .on_conflict_do_nothing()
            )
            enqueue(session, "charging.ingest_usage_file", usage_file_id=file_id, key=f"ingest-{key}")
            found += 1
    return found


def ingest_usage_file(db: Database, storage: Storage, usage_file_id: str) -> UsageFile | None:
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
            outcome = ingest_usage(session, tenant, records, source=f"file:{key}")
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
