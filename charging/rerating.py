"""Re-rating: a period's usage rated again with today's terms and rate cards, the difference billed next.

A run takes the lines with usage in the period (or one line) in chunks; each chunk is one transaction:
the lines' buckets are locked, what the period's records had consumed is given back (the period's plan
and rollover buckets start again from zero), and the records are replayed in (started_at, id) order.
A record not invoiced yet is updated in place. A record already invoiced keeps what it billed and gets
a usage adjustment: the new amount minus what it was charged so far (the record and earlier
adjustments), billed on the customer's next invoice. A difference of zero writes nothing, so a run
repeated, or a chunk run twice after a crash, adds nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, null, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.catalog.terms import line_terms
from mvne.charging import engine
from mvne.charging.errors import InvalidPeriod, ReratingRunInProgress, ReratingRunNotFound
from mvne.charging.models import BalanceBucket, ReratingRun, UsageAdjustment, UsageRecord
from mvne.charging.ratecards import PricingError
from mvne.charging.rating import Service
from mvne.charging.usage import (
    RATED_COLUMNS,
    _chunks,
    _plan_allowances,
    ensure_plan_buckets,
    locked_buckets,
    period_of,
    period_window,
    plan_terms,
    rated_columns,
    rating_context,
    settle_buckets,
)
from mvne.charging.zones import EU, HOME, zone_of
from mvne.infra.db import Database, get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue
from mvne.provisioning.service import get_subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import get_tenant, record_event

LINES_PER_CHUNK = 200
OPEN = ("pending", "running")
ZERO = Decimal(0)
# What a re-rating compares to decide whether a record changed: what rating decides, but the offer (its version
# says it).
_COMPARED = tuple(name for name in RATED_COLUMNS if name != "offer_id")


def start_rerating_run(
    session: Session, tenant: Tenant, *, period: str, subscription_id: str | None = None
) -> ReratingRun:
    """Queue a re-rating of a period (of one line, or all); one run at a time per period."""
    if subscription_id is not None:
        get_subscription(session, subscription_id)
    current = period_of(utcnow(), tenant.timezone)
    if period > current:
        raise InvalidPeriod(
            f"Period {period} has not started: usage of {current} or earlier can be re-rated.",
            errors={"period": [f"At most {current}."]},
        )
    busy = session.scalar(select(ReratingRun.id).where(ReratingRun.period == period, ReratingRun.status.in_(OPEN)))
    if busy is not None:
        raise ReratingRunInProgress(f"Re-rating run {busy} of {period} is still in progress.")
    run = ReratingRun(
        id=new_id("rrr"),
        period=period,
        subscription_id=subscription_id,
        status="pending",
        records_total=0,
        records_done=0,
        lines=[],
        chunks_done=0,
        records_changed=0,
        adjustments=0,
    )
    session.add(run)
    session.flush()
    enqueue(
        session, "charging.execute_rerating_run", tenant_id=tenant.id, rerating_run_id=run.id, key=f"rerating-{run.id}"
    )
    record_event(session, "rerating_run.created", run.id, {"period": period, "subscription": subscription_id})
    return run


def get_rerating_run(session: Session, run_id: str) -> ReratingRun:
    return get_or_raise(session, ReratingRun, run_id, ReratingRunNotFound, "re-rating run")


def _locked_run(session: Session, run_id: str) -> ReratingRun:
    run = session.get(ReratingRun, run_id, with_for_update=True)
    if run is None:
        raise ReratingRunNotFound(f"No re-rating run {run_id}.")
    return run


def execute_rerating_run(db: Database, *, tenant_id: str, rerating_run_id: str) -> None:
    """Run a re-rating chunk by chunk, each in its own transaction; run again, it resumes after the last chunk done."""
    with db.transaction(tenant_id=tenant_id) as session:
        run = _locked_run(session, rerating_run_id)
        if run.status not in OPEN:
            return
        if run.started_at is None:
            lines_stmt = select(UsageRecord.subscription_id).where(UsageRecord.period == run.period).distinct()
            count_stmt = select(func.count()).select_from(UsageRecord).where(UsageRecord.period == run.period)
            if run.subscription_id is not None:
                lines_stmt = lines_stmt.where(UsageRecord.subscription_id == run.subscription_id)
                count_stmt = count_stmt.where(UsageRecord.subscription_id == run.subscription_id)
            run.lines = sorted(session.scalars(lines_stmt))
            run.records_total = session.scalar(count_stmt) or 0
            run.status = "running"
            run.started_at = utcnow()
            record_event(session, "rerating_run.started", run.id, {"period": run.period, "records": run.records_total})
        lines = list(run.lines)
    chunks = [lines[i : i + LINES_PER_CHUNK] for i in range(0, len(lines), LINES_PER_CHUNK)]
    for number, chunk in enumerate(chunks):
        with db.transaction(tenant_id=tenant_id) as session:
            run = _locked_run(session, rerating_run_id)
            if run.status != "running" or run.chunks_done > number:
                continue
            tenant = get_tenant(session, tenant_id)
            done = rerate_lines(session, tenant, run, chunk)
            run.records_done += done.records
            run.records_changed += done.changed
            run.adjustments += done.adjustments
            run.chunks_done = number + 1
    with db.transaction(tenant_id=tenant_id) as session:
        run = _locked_run(session, rerating_run_id)
        if run.status == "running":
            run.status = "completed"
            run.completed_at = utcnow()
            record_event(
                session,
                "rerating_run.completed",
                run.id,
                {
                    "period": run.period,
                    "records": run.records_done,
                    "changed": run.records_changed,
                    "adjustments": run.adjustments,
                },
            )


def fail_rerating_run(session: Session, *, tenant_id: str, rerating_run_id: str, reason: str) -> None:
    """The run's job failed for good: the run shows it, with why."""
    run = session.get(ReratingRun, rerating_run_id, with_for_update=True)
    if run is None or run.status not in OPEN:
        return
    run.status = "failed"
    run.failure_reason = reason[:500]
    record_event(
        session, "rerating_run.failed", run.id, {"period": run.period, "reason": reason[:500]}, tenant_id=tenant_id
    )


def resume_rerating_run(session: Session, *, tenant_id: str, rerating_run_id: str) -> None:
    """The failed job was replayed: the run proceeds from its last chunk done."""
    run = session.get(ReratingRun, rerating_run_id, with_for_update=True)
    if run is not None and run.status == "failed":
        run.status = "running" if run.started_at is not None else "pending"
        run.failure_reason = None


@dataclass
class ChunkDone:
    records: int = 0
    changed: int = 0
    adjustments: int = 0


_RECORD_COLUMNS = (
    UsageRecord.id,
    UsageRecord.subscription_id,
    UsageRecord.service,
    UsageRecord.started_at,
    UsageRecord.quantity,
    UsageRecord.visited_plmn,
    UsageRecord.called_number,
    UsageRecord.invoice_id,
    *(getattr(UsageRecord, name) for name in _COMPARED),
)


def _give_back(
    buckets: list[engine.Bucket], records: Sequence[Any], period: str, plan_updates: dict[str, dict[str, Any]]
) -> None:
    """Give back what the records consumed: the period's plan and rollover buckets from zero, others by parts."""
    by_id = {b.id: b for b in buckets}
    own = {b.id for b in buckets if b.origin in ("plan", "rollover") and b.period == period}
    for bucket_id in own:
        reset = by_id[bucket_id]
        reset.used, reset.eu_used = 0, 0
        for name, value in plan_updates.get(bucket_id, {}).items():
            setattr(reset, name, value)
    for record in records:
        for bucket_id, quantity in record.bucket_parts or []:
            bucket = by_id.get(bucket_id)
            if bucket is None or bucket_id in own:
                continue
            bucket.used = max(bucket.used - int(quantity), 0)
            if record.zone == EU and bucket.zone == HOME:
                bucket.eu_used = max(bucket.eu_used - int(quantity), 0)


def _plan_updates(
    session: Session, tenant: Tenant, sub_ids: list[str], period: str, terms: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Today's terms for the period's plan buckets (an allowance changed since is applied to the whole period)."""
    start, _ = period_window(period, tenant.timezone)
    updates: dict[str, dict[str, Any]] = {}
    rows = session.execute(
        select(BalanceBucket.id, BalanceBucket.subscription_id, BalanceBucket.service, BalanceBucket.zone).where(
            BalanceBucket.tenant_id == tenant.id,
            BalanceBucket.subscription_id.in_(sub_ids),
            BalanceBucket.origin == "plan",
            BalanceBucket.period == period,
        )
    )
    for bucket_id, sub_id, service, zone in rows:
        if sub_id not in terms:
            continue
        line = plan_terms(terms[sub_id], start)
        allowance = _plan_allowances(line).get((service, zone))
        if allowance is None:
            continue
        updates[bucket_id] = {
            "granted": allowance["granted"],
            "fair_use": allowance["fair_use"],
            "roam_like_at_home": allowance["roam_like_at_home"],
            "eu_fair_use": allowance["eu_fair_use"],
            "priority": allowance["priority"],
        }
    if updates:
        table = cast(Table, BalanceBucket.__table__)
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("bucket_id"))
            .values(
                granted=bindparam("granted"),
                fair_use=bindparam("fair_use"),
                roam_like_at_home=bindparam("roam_like_at_home"),
                eu_fair_use=bindparam("eu_fair_use"),
                priority=bindparam("priority"),
            ),
            [{"bucket_id": bucket_id, **values} for bucket_id, values in updates.items()],
        )
    return updates


def rerate_lines(session: Session, tenant: Tenant, run: ReratingRun, sub_ids: list[str]) -> ChunkDone:
    """Replay the period's records of these lines with today's terms and cards (one transaction, under bucket locks)."""
    done = ChunkDone()
    terms = line_terms(session, sub_ids)
    context = rating_context(session, tenant, terms)
    ensure_plan_buckets(session, tenant, {(sub_id, run.period) for sub_id in sub_ids}, terms)
    records = session.execute(
        select(*_RECORD_COLUMNS)
        .where(
            UsageRecord.tenant_id == tenant.id,
            UsageRecord.subscription_id.in_(sub_ids),
            UsageRecord.period == run.period,
        )
        .order_by(UsageRecord.started_at, UsageRecord.id)
    ).all()
    if not records:
        return done
    start, end = period_window(run.period, tenant.timezone)
    earliest = min(start, *(r.started_at for r in records))
    latest = max(end - dt.timedelta(microseconds=1), *(r.started_at for r in records))
    # Every service of the lines: giving back what the period's records consumed may touch any of them.
    every_service = [(sub_id, service.value) for sub_id in sub_ids for service in Service]
    buckets = locked_buckets(session, tenant.id, every_service, earliest, latest)
    _give_back(buckets, records, run.period, _plan_updates(session, tenant, sub_ids, run.period, terms))
    by_line: dict[str, list[engine.Bucket]] = defaultdict(list)
    for bucket in buckets:
        by_line[bucket.subscription_id].append(bucket)
    charged = _charged_so_far(session, [r.id for r in records if r.invoice_id is not None])
    in_place: list[dict[str, Any]] = []
    parts_only: list[dict[str, Any]] = []
    adjustments: list[dict[str, Any]] = []
    for record in records:
        done.records += 1
        timeline = terms.get(record.subscription_id)
        if timeline is None or not timeline.terms:
            continue
        line = timeline.at(record.started_at) or timeline.terms[-1]
        usage_event = engine.Usage(
            service=record.service,
            started_at=record.started_at,
            quantity=record.quantity,
            zone=zone_of(record.visited_plmn, context.home_mcc),
            called_number=record.called_number,
        )
        try:
            rating = engine.rate(usage_event, line, by_line[record.subscription_id], context.pricing)
        except PricingError:
            _consume_again(by_line[record.subscription_id], record)
            continue
        new = rated_columns(usage_event, line, rating)
        if all(_same(new[name], getattr(record, name)) for name in _COMPARED):
            continue
        if record.invoice_id is None:
            done.changed += 1
            in_place.append({"record": record.id, **{name: new[name] for name in _COMPARED}})
            continue
        if not _same(new["bucket_parts"], record.bucket_parts):
            parts_only.append({"record": record.id, "bucket_parts": new["bucket_parts"]})
        amount, wholesale = charged.get(record.id, (ZERO, ZERO))
        retail_delta = new["amount"] - (record.amount + amount)
        wholesale_delta = (new["wholesale_amount"] or ZERO) - ((record.wholesale_amount or ZERO) + wholesale)
        if retail_delta or wholesale_delta:
            done.changed += 1
            adjustments.append(
                {
                    "id": new_id("uad"),
                    "tenant_id": tenant.id,
                    "usage_record_id": record.id,
                    "rerating_run_id": run.id,
                    "subscription_id": record.subscription_id,
                    "period": run.period,
                    "service": record.service,
                    "amount": retail_delta,
                    "wholesale_amount": wholesale_delta,
                    "created_at": utcnow(),
                }
            )
    _update_records(session, in_place, parts_only)
    done.adjustments = _write_adjustments(session, adjustments)
    # Used again as re-rated, and the 50/80/100 % events of what that crosses (each sent once per bucket).
    settle_buckets(session, tenant.id, buckets)
    return done


def _same(new: Any, old: Any) -> bool:
    if isinstance(new, list) or isinstance(old, list):
        return [list(p) for p in (new or [])] == [list(p) for p in (old or [])]
    return bool(new == old)


def _consume_again(buckets: list[engine.Bucket], record: Any) -> None:
    """A record the cards cannot price now keeps its rating, and what it consumed."""
    by_id = {b.id: b for b in buckets}
    for bucket_id, quantity in record.bucket_parts or []:
        bucket = by_id.get(bucket_id)
        if bucket is not None:
            bucket.used += int(quantity)
            if record.zone == EU and bucket.zone == HOME:
                bucket.eu_used += int(quantity)


def _charged_so_far(session: Session, record_ids: list[str]) -> dict[str, tuple[Decimal, Decimal]]:
    """What earlier re-ratings already added to invoiced records, retail and wholesale."""
    found: dict[str, tuple[Decimal, Decimal]] = {}
    for chunk in _chunks(record_ids, 1000):
        rows = session.execute(
            select(
                UsageAdjustment.usage_record_id,
                func.sum(UsageAdjustment.amount),
                func.sum(UsageAdjustment.wholesale_amount),
            )
            .where(UsageAdjustment.usage_record_id.in_(chunk))
            .group_by(UsageAdjustment.usage_record_id)
        )
        for record_id, amount, wholesale in rows:
            found[record_id] = (Decimal(amount or 0), Decimal(wholesale or 0))
    return found


def _update_records(session: Session, in_place: list[dict[str, Any]], parts_only: list[dict[str, Any]]) -> None:
    """Changed records written back in executemany UPDATEs (no bucket consumed: SQL NULL parts)."""
    table = cast(Table, UsageRecord.__table__)
    connection = session.connection()
    for with_parts in (True, False):
        rows = [r for r in in_place if (r["bucket_parts"] is not None) is with_parts]
        if rows:
            names = [n for n in _COMPARED if n != "bucket_parts"]
            values: dict[str, Any] = {name: bindparam(f"v_{name}") for name in names}
            values["bucket_parts"] = bindparam("v_bucket_parts") if with_parts else null()
            values["rerated_count"] = table.c.rerated_count + 1
            params = [
                {"record": r["record"], **{f"v_{n}": r[n] for n in names}, "v_bucket_parts": r["bucket_parts"]}
                for r in rows
            ]
            connection.execute(update(table).where(table.c.id == bindparam("record")).values(values), params)
        parts = [r for r in parts_only if (r["bucket_parts"] is not None) is with_parts]
        if parts:
            value = bindparam("v_bucket_parts") if with_parts else null()
            connection.execute(
                update(table).where(table.c.id == bindparam("record")).values(bucket_parts=value),
                [{"record": r["record"], "v_bucket_parts": r["bucket_parts"]} for r in parts],
            )


def _write_adjustments(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert adjustments once per (run, record): a chunk run again writes none twice; how many were new."""
    written = 0
    if not rows:
        return written
    table = cast(Table, UsageAdjustment.__table__)
    upsert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for chunk in _chunks(rows, 500):
        stmt = (
            upsert(table)
            .values(chunk)
            .on_conflict_do_nothing(index_elements=["rerating_run_id", "usage_record_id"])
            .returning(table.c.id)
        )
        written += len(list(session.scalars(stmt)))
    return written
