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
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.catalog.terms import TermsTimeline, line_terms
from mvne.charging.models import BalanceBucket, UsageRecord, UsageRejection
from mvne.charging.rating import Service, allowance_units, rate_usage
from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.infra.metrics import USAGE_RECORDS
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

log = logging.getLogger("mvne.usage")
T = TypeVar("T")

RATEABLE_STATUSES = ("active", "suspended")


@dataclass(frozen=True)
class UsageInput:
    record_id: str
    # A Service value; anything else is rejected as `unknown_service`.
    service: str
    started_at: dt.datetime
    quantity: int
    subscription_id: str | None = None
    msisdn: str | None = None
    # Where the record was: its index in a batch or its line in a file (kept on a rejection).
    position: int | None = None
    # Fields of the sender's record beyond the ones above (a file's IMSI, called number...), kept on a rejection.
    extra: dict[str, Any] | None = None
    # Refused before it got here (a file line that could not be read): the code and detail; `extra` holds the
    # fields as they were read, and the other fields are placeholders.
    refusal: tuple[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        """The record as plain JSON values, as a rejection keeps it."""
        if self.refusal is not None:
            line = {"subscription": self.subscription_id, "msisdn": self.msisdn}
            return {**(self.extra or {}), "record_id": self.record_id, **{k: v for k, v in line.items() if v}}
        return {
            **(self.extra or {}),
            "record_id": self.record_id,
            "subscription": self.subscription_id,
            "msisdn": self.msisdn,
            "service": str(self.service),
            "started_at": self.started_at.isoformat(),
            "quantity": self.quantity,
        }


# Reason codes of rejected usage, stable: senders and the tenant's tools branch on them (docs/usage.md).
REASON_CODES = (
    "unknown_line",
    "line_not_active_then",
    "invalid_quantity",
    "unknown_service",
    "in_the_future",
    "too_old",
    "malformed",
)
# A record larger than these is a fault of the sender, not usage: 10 TB of data, a day of voice, 100 SMS.
QUANTITY_LIMITS = {Service.DATA: 10 * 10**12, Service.VOICE: 24 * 3600, Service.SMS: 100}
# A data session or a call may be of zero length (rated at nothing); a message is at least one.
QUANTITY_MINIMUMS = {Service.DATA: 0, Service.VOICE: 0, Service.SMS: 1}
SERVICE_NAMES = frozenset(s.value for s in Service)
UNITS = {Service.DATA: "bytes", Service.VOICE: "seconds", Service.SMS: "messages"}


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
class RecordOutcome:
    """What became of one record of a batch: rated, duplicate (already accepted) or rejected."""

    index: int
    record_id: str
    outcome: str
    usage_record: str | None = None
    rejection: str | None = None
    code: str | None = None
    reason: str | None = None


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    records: list[RecordOutcome] = field(default_factory=list)


def period_of(moment: dt.datetime, timezone: str) -> str:
    """The billing period (YYYY-MM) a moment falls in, in the tenant's time zone."""
    return moment.astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y-%m")


def _offer_allowance(offer: Offer, service: Service) -> tuple[int, Decimal]:
    if service is Service.DATA:
        return allowance_units(service, offer.data_mb), offer.overage_data_per_mb
    if service is Service.VOICE:
        return allowance_units(service, offer.voice_minutes), offer.overage_voice_per_minute
    return allowance_units(service, offer.sms), offer.overage_sms_per_message


def _quantity_refusal(service: Service, quantity: int) -> tuple[str, str] | None:
    low, high = QUANTITY_MINIMUMS[service], QUANTITY_LIMITS[service]
    if isinstance(quantity, bool) or not isinstance(quantity, int):
        return ("invalid_quantity", f"The quantity must be a whole number of {UNITS[service]}.")
    if not low <= quantity <= high:
        return (
            "invalid_quantity",
            f"{quantity} {UNITS[service]} of {service.value} in one record: expected {low} to {high}.",
        )
    return None


def _line_refusal(record: UsageInput, sub: Subscription | None) -> tuple[str, str] | None:
    if sub is None:
        named = f"line {record.subscription_id}" if record.subscription_id else f"MSISDN {record.msisdn}"
        return ("unknown_line", f"No {named} among the tenant's lines.")
    if sub.activated_at is None:
        return (
            "line_not_active_then",
            f"The line was not active at {record.started_at.isoformat()} (never activated).",
        )
    ended = sub.terminated_at is not None and record.started_at >= sub.terminated_at
    if record.started_at < sub.activated_at or ended:
        until = f" to {sub.terminated_at.isoformat()}" if sub.terminated_at else ""
        return (
            "line_not_active_then",
            f"The line was not active at {record.started_at.isoformat()} "
            f"(active from {sub.activated_at.isoformat()}{until}).",
        )
    return None


def refusal_of(
    record: UsageInput, sub: Subscription | None, window: UsageWindow, now: dt.datetime
) -> tuple[str, str] | None:
    """Why a record cannot be rated (reason code, detail), or None when it can."""
    if record.refusal is not None:
        return record.refusal
    if record.service not in SERVICE_NAMES:
        return ("unknown_service", f"Service {str(record.service)[:40]!r} is not one of data, voice, sms.")
    return (
        _quantity_refusal(Service(record.service), record.quantity)
        or window.refusal(record.started_at, now)
        or _line_refusal(record, sub)
    )


@dataclass
class _Sorted:
    """A batch sorted before rating: what to rate, what is refused, what repeats an earlier record."""

    outcomes: list[RecordOutcome | None]
    candidates: list[tuple[int, UsageInput, Subscription, str]] = field(default_factory=list)
    refused: list[tuple[int, UsageInput, str, str]] = field(default_factory=list)
    first_of: dict[str, int] = field(default_factory=dict)
    repeated: list[int] = field(default_factory=list)


def _sort_batch(
    session: Session, tenant: Tenant, records: list[UsageInput], window: UsageWindow
) -> tuple[_Sorted, dict[str, Offer]]:
    batch = _Sorted(outcomes=[None] * len(records))
    existing = _accepted_ids(session, tenant.id, [r.record_id for r in records])
    by_id = {r.subscription_id for r in records if r.subscription_id}
    by_msisdn = {r.msisdn for r in records if r.msisdn and not r.subscription_id}
    subs = {
        s.id: s
        for s in session.scalars(
            select(Subscription).where(
                Subscription.tenant_id == tenant.id,
                (Subscription.id.in_(by_id)) | (Subscription.msisdn.in_(by_msisdn)),
            )
        )
    }
    subs_by_msisdn = {s.msisdn: s for s in subs.values() if s.msisdn}
    offers = {o.id: o for o in session.scalars(select(Offer).where(Offer.id.in_({s.offer_id for s in subs.values()})))}
    now = utcnow()
    for index, record in enumerate(records):
        if record.record_id in existing:
            batch.outcomes[index] = RecordOutcome(index, record.record_id, "duplicate", existing[record.record_id])
            continue
        sub = subs.get(record.subscription_id) if record.subscription_id else subs_by_msisdn.get(record.msisdn or "")
        refusal = refusal_of(record, sub, window, now)
        if refusal is not None:
            batch.refused.append((index, record, *refusal))
        elif record.record_id in batch.first_of:
            batch.repeated.append(index)
        elif sub is not None:
            batch.first_of[record.record_id] = index
            batch.candidates.append((index, record, sub, period_of(record.started_at, tenant.timezone)))
    return batch, offers


def ingest_usage(
    session: Session,
    tenant: Tenant,
    records: list[UsageInput],
    *,
    source: str,
    window: UsageWindow | None = None,
) -> IngestResult:
    """Store and rate a batch for the session's tenant; every record ends rated, duplicate or rejected (and kept).

    The batch is rated in memory under row locks on the allowance balances it touches, taken in a
    fixed order; duplicates are looked for after the locks are held, so two batches carrying the same
    record (they touch the same balance) cannot both count it. Records, then rejections, are written
    in multi-row inserts in the caller's transaction: a batch that fails writes neither.
    """
    result = IngestResult()
    batch, offers = _sort_batch(session, tenant, records, window or UsageWindow())
    rated = _rate(session, tenant, batch, offers, source) if batch.candidates else {}
    result.accepted = len(rated)
    for index in batch.repeated:
        first = batch.outcomes[batch.first_of[records[index].record_id]]
        batch.outcomes[index] = RecordOutcome(
            index, records[index].record_id, "duplicate", usage_record=first.usage_record if first else None
        )
    kept = _keep_rejections(session, tenant.id, source, batch.refused)
    for index, record, code, detail in batch.refused:
        rejection_id = kept[record.record_id]
        batch.outcomes[index] = RecordOutcome(index, record.record_id, "rejected", None, rejection_id, code, detail)
        result.rejected.append(
            {"index": index, "record_id": record.record_id, "code": code, "reason": detail, "rejection": rejection_id}
        )
    if rated:
        _resolve_rejections(session, tenant.id, rated)
    if batch.refused:
        reasons: dict[str, int] = defaultdict(int)
        for _, _, code, _ in batch.refused:
            reasons[code] += 1
        # One event per batch, not per record: a file of a million bad records is one piece of news.
        record_event(
            session,
            "usage.rejected",
            kept[batch.refused[0][1].record_id],
            {"count": len(batch.refused), "source": source[:300], "reasons": dict(reasons)},
            tenant_id=tenant.id,
        )
    result.records = [o for o in batch.outcomes if o is not None]
    result.duplicates = sum(1 for o in result.records if o.outcome == "duplicate")
    session.flush()
    return _counted(result)


def _rate(session: Session, tenant: Tenant, batch: _Sorted, offers: dict[str, Offer], source: str) -> dict[str, str]:
    """Rate the batch's candidates under the balance locks and insert them; their usage record ids by record id."""
    keys = sorted({(sub.id, period, str(record.service)) for _, record, sub, period in batch.candidates})
    terms = line_terms(session, {sub.id for _, _, sub, _ in batch.candidates})
    balances = _locked_balances(session, tenant, keys, terms)
    # Looked for again under the locks: a batch racing this one may have accepted some meanwhile.
    known = _accepted_ids(session, tenant.id, [record.record_id for _, record, _, _ in batch.candidates])
    received = utcnow()
    rated: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for index, record, sub, period in batch.candidates:
        if record.record_id in known:
            batch.outcomes[index] = RecordOutcome(index, record.record_id, "duplicate", known[record.record_id])
            continue
        service = Service(record.service)
        balance = balances[(sub.id, period, service.value)]
        price = _offer_allowance(offers[sub.offer_id], service)[1]
        left = max((balance.granted or 0) - balance.used, 0)
        outcome = rate_usage(service, record.quantity, left, price)
        balance.used += outcome.allowance_used
        usage_id = new_id("usg")
        rated[record.record_id] = usage_id
        batch.outcomes[index] = RecordOutcome(index, record.record_id, "rated", usage_record=usage_id)
        rows.append(
            {
                "id": usage_id,
                "tenant_id": tenant.id,
                "record_id": record.record_id,
                "subscription_id": sub.id,
                "msisdn": sub.msisdn or "",
                "service": service.value,
                "started_at": record.started_at,
                "quantity": record.quantity,
                "period": period,
                "allowance_used": outcome.allowance_used,
                "overage_quantity": outcome.overage_quantity,
                "amount": outcome.amount,
                "source": source[:300],
                "received_at": received,
                "offer_id": sub.offer_id,
                "allowance_before": left,
                "overage_unit_price": price,
                "amount_exact": outcome.amount_exact,
            }
        )
    for row_chunk in _chunks(rows, 500):
        session.execute(insert(UsageRecord), row_chunk)
    return rated


def _accepted_ids(session: Session, tenant_id: str, record_ids: list[str]) -> dict[str, str]:
    """The usage record ids of the sender's record ids the tenant has already accepted."""
    found: dict[str, str] = {}
    for id_chunk in _chunks(sorted(set(record_ids)), 1000):
        rows = session.execute(
            select(UsageRecord.record_id, UsageRecord.id).where(
                UsageRecord.tenant_id == tenant_id, UsageRecord.record_id.in_(id_chunk)
            )
        )
        found.update((record_id, usage_id) for record_id, usage_id in rows)
    return found


def _keep_rejections(
    session: Session, tenant_id: str, source: str, refused: list[tuple[int, UsageInput, str, str]]
) -> dict[str, str]:
    """Write the rejections (one open rejection per record id: sent again, it is updated); their ids by record id."""
    latest: dict[str, dict[str, Any]] = {}
    received = utcnow()
    for _, record, code, detail in refused:
        latest[record.record_id] = {
            "id": new_id("urj"),
            "tenant_id": tenant_id,
            "record_id": record.record_id,
            "source": source[:300],
            "position": record.position,
            "raw": record.as_json(),
            "fixes": {},
            "reason_code": code,
            "reason_detail": detail[:500],
            "status": "open",
            "received_at": received,
        }
    ids: dict[str, str] = {}
    if not latest:
        return ids
    table = cast(Table, UsageRejection.__table__)
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for chunk in _chunks(list(latest.values()), 500):
        stmt = upsert(table).values(chunk)
        returning = stmt.on_conflict_do_update(
            index_elements=["tenant_id", "record_id"],
            index_where=text("status = 'open'"),
            set_={
                name: stmt.excluded[name]
                for name in ("source", "position", "raw", "reason_code", "reason_detail", "received_at")
            },
        ).returning(table.c.record_id, table.c.id)
        ids.update((record_id, rejection_id) for record_id, rejection_id in session.execute(returning))
    return ids


def _resolve_rejections(session: Session, tenant_id: str, rated: dict[str, str]) -> None:
    """Open rejections of records now accepted are resolved as duplicates of the accepted record."""
    open_ids: list[tuple[str, str]] = []
    for id_chunk in _chunks(sorted(rated), 1000):
        open_ids.extend(
            (rejection_id, record_id)
            for rejection_id, record_id in session.execute(
                select(UsageRejection.id, UsageRejection.record_id).where(
                    UsageRejection.tenant_id == tenant_id,
                    UsageRejection.status == "open",
                    UsageRejection.record_id.in_(id_chunk),
                )
            )
        )
    if not open_ids:
        return
    table = cast(Table, UsageRejection.__table__)
    session.connection().execute(
        table.update()
        .where(table.c.id == bindparam("rejection_id"), table.c.status == "open")
        .values(status="duplicate", resolved_at=utcnow(), usage_record_id=bindparam("usage_id")),
        [{"rejection_id": rid, "usage_id": rated[record_id]} for rid, record_id in open_ids],
    )


def _counted(result: IngestResult) -> IngestResult:
    USAGE_RECORDS.labels("accepted").inc(result.accepted)
    USAGE_RECORDS.labels("duplicate").inc(result.duplicates)
    USAGE_RECORDS.labels("rejected").inc(len(result.rejected))
    return result


def _chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _period_window(period: str, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    """The UTC instants a billing period (YYYY-MM, in the tenant's time zone) starts and ends."""
    tz = zoneinfo.ZoneInfo(timezone)
    year, month = int(period[:4]), int(period[5:7])
    following = (year + month // 12, month % 12 + 1)
    start = dt.datetime(year, month, 1, tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime(following[0], following[1], 1, tzinfo=tz).astimezone(dt.UTC)
    return start, end


def _locked_balances(
    session: Session,
    tenant: Tenant,
    keys: list[tuple[str, str, str]],
    terms: dict[str, TermsTimeline],
) -> dict[tuple[str, str, str], BalanceBucket]:
    """The home plan buckets of (line, period, service), created when missing, locked in key order."""
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = []
    for sub_id, period, service in keys:
        start, end = _period_window(period, tenant.timezone)
        line = terms[sub_id].at(start) or terms[sub_id].terms[0]
        granted = sum(a.quantity or 0 for a in line.allowances if a.service == service and a.zone == "home")
        values.append(
            {
                "id": new_id("bkt"),
                "tenant_id": tenant.id,
                "subscription_id": sub_id,
                "service": service,
                "zone": "home",
                "origin": "plan",
                "origin_key": f"plan:{period}:{service}:home",
                "offer_version_id": line.offer_version_id,
                "period": period,
                "granted": granted,
                "used": 0,
                "roam_like_at_home": False,
                "eu_used": 0,
                "priority": 100,
                "valid_from": start,
                "valid_to": end,
                "notified_percent": 0,
                "created_at": utcnow(),
            }
        )
    for chunk in _chunks(values, 500):
        session.execute(
            upsert(BalanceBucket).values(chunk).on_conflict_do_nothing(index_elements=["subscription_id", "origin_key"])
        )
    locked: dict[tuple[str, str, str], BalanceBucket] = {}
    sub_ids = sorted({k[0] for k in keys})
    for sub_chunk in _chunks(sub_ids, 500):
        rows = session.scalars(
            select(BalanceBucket)
            .where(BalanceBucket.subscription_id.in_(sub_chunk), BalanceBucket.origin == "plan")
            .order_by(BalanceBucket.subscription_id, BalanceBucket.origin_key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        for bucket in rows:
            locked[(bucket.subscription_id, bucket.period or "", bucket.service)] = bucket
    return {key: locked[key] for key in keys}


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
