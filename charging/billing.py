"""Billing runs and invoices: one invoice per customer and period, whatever happens.

A run invoices each customer in its own transaction; the unique (customer, period) constraint makes
a second run, a retried job or a crash halfway safe: existing invoices are counted, never duplicated.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import re
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Result, case, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer, OfferPurchase, Promotion, PromotionRedemption
from mvne.catalog.terms import line_terms
from mvne.charging.carrier_models import CarrierCharge, CarrierRefund, Merchant
from mvne.charging.errors import (
    BillingRunInProgress,
    BillingRunNotFound,
    InvalidPeriod,
    InvoiceNotFound,
    PeriodNotEnded,
)
from mvne.charging.invoicing import Charge, InvoiceTotals, compute_invoice
from mvne.charging.models import BillingRun, Invoice, InvoiceLine, UsageAdjustment, UsageRecord
from mvne.charging.pdf import InvoiceDocument, Party, render_invoice_pdf
from mvne.charging.rating import Service, price_unit
from mvne.charging.tax import UnknownTaxCountry, vat_rate
from mvne.charging.usage import period_of
from mvne.infra.db import Database, get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue
from mvne.infra.storage import ObjectNotFound, Storage
from mvne.provisioning.models import Subscription
from mvne.tenants import settings as tenant_settings
from mvne.tenants.errors import CustomerNotFound
from mvne.tenants.models import Customer, Tenant
from mvne.tenants.service import get_tenant, next_counter, record_event

log = logging.getLogger("mvne.billing")

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
FIRST_YEAR, LAST_YEAR = 2000, 2100
BILLED_STATUSES = ("active", "suspended", "terminated")
# A billing run's customers are invoiced in chunks of this many, each chunk a job of its own.
BILLING_CHUNK_SIZE = 50
RUN_OPEN = ("pending", "running")
OVERAGE = {
    Service.DATA: ("overage_data", "MB", "overage_data_per_mb", "Data beyond allowance"),
    Service.VOICE: ("overage_voice", "min", "overage_voice_per_minute", "Calls beyond allowance"),
    Service.SMS: ("overage_sms", "SMS", "overage_sms_per_message", "SMS beyond allowance"),
    Service.MMS: ("overage_mms", "MMS", "overage_mms_per_message", "MMS beyond allowance"),
}


def period_bounds(period: str, timezone: str) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    """First and last day of the period, and its [start, end) instants in UTC, in the tenant's zone."""
    match = PERIOD.match(period)
    if match is None:
        raise InvalidPeriod(f"Period {period!r} is not YYYY-MM.", errors={"period": ["Must be YYYY-MM."]})
    year, month = int(match[1]), int(match[2])
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise InvalidPeriod(
            f"Period {period!r} is out of range.", errors={"period": [f"The year must be {FIRST_YEAR} to {LAST_YEAR}."]}
        )
    zone = zoneinfo.ZoneInfo(timezone)
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    start = dt.datetime(year, month, 1, tzinfo=zone)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return first, last, start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def last_ended_period(timezone: str, now: dt.datetime | None = None) -> tuple[str, dt.datetime]:
    """The most recent period that has ended in the zone, and the instant (UTC) it began."""
    here = (now or utcnow()).astimezone(zoneinfo.ZoneInfo(timezone))
    start = (here.replace(day=1, hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)).replace(day=1)
    return start.strftime("%Y-%m"), start.astimezone(dt.UTC)


def start_billing_run(session: Session, *, tenant_id: str, period: str) -> BillingRun:
    """Queue a billing run for a period that has ended in the tenant's time zone; one run at a time per period."""
    tenant = get_tenant(session, tenant_id)
    _, _, _, end = period_bounds(period, tenant.timezone)
    if end > utcnow():
        local_end = end.astimezone(zoneinfo.ZoneInfo(tenant.timezone))
        raise PeriodNotEnded(
            f"Period {period} is still open: it ends at {local_end.isoformat()} ({tenant.timezone}). "
            "Preview it with GET /v1/customers/{id}/upcoming-invoice."
        )
    busy = session.scalar(
        select(BillingRun.id).where(BillingRun.period == period, BillingRun.status.in_(("pending", "running")))
    )
    if busy is not None:
        raise BillingRunInProgress(f"Billing run {busy} for {period} is still in progress.")
    run = BillingRun(id=new_id("brn"), period=period, status="pending")
    session.add(run)
    session.flush()
    enqueue(
        session, "charging.execute_billing_run", tenant_id=tenant_id, billing_run_id=run.id, key=f"billing-{run.id}"
    )
    record_event(session, "billing_run.created", run.id, {"period": period})
    return run


def get_billing_run(session: Session, run_id: str) -> BillingRun:
    return get_or_raise(session, BillingRun, run_id, BillingRunNotFound, "billing run")


def execute_billing_run(db: Database, *, tenant_id: str, billing_run_id: str) -> BillingRun:
    """Start a run: fix its customers, split them in chunks and queue one job per chunk, in one transaction.

    Each chunk (`invoice_billing_chunk`) invoices its customers and records its counts; the last chunk to
    finish completes the run. A worker dying mid-run loses at most its chunk's progress, and that chunk is
    owed through the outbox until it finishes. Run again once started, this changes nothing.
    """
    with db.transaction(tenant_id=tenant_id) as session:
        run = _locked_run(session, billing_run_id)
        if run.status not in RUN_OPEN or run.started_at is not None:
            return run  # over, or started: its chunks are queued already
        tenant = get_tenant(session, tenant_id)
        _, _, start, end = period_bounds(run.period, tenant.timezone)
        customer_ids = customers_to_bill(session, period=run.period, start=start, end=end)
        chunks = [customer_ids[i : i + BILLING_CHUNK_SIZE] for i in range(0, len(customer_ids), BILLING_CHUNK_SIZE)]
        run.status = "running"
        run.started_at = utcnow()
        run.failure_reason = None
        run.customers_total = len(customer_ids)
        run.chunks_total = len(chunks)
        run.chunk_results = {}
        _progress(run)
        record_event(
            session,
            "billing_run.started",
            run.id,
            {"period": run.period, "customers": len(customer_ids), "chunks": len(chunks)},
        )
        for number, ids in enumerate(chunks):
            enqueue(
                session,
                "charging.invoice_billing_chunk",
                tenant_id=tenant_id,
                key=f"billing-{run.id}-chunk-{number}",
                billing_run_id=run.id,
                chunk=number,
                customer_ids=ids,
            )
        if not chunks:
            _complete(session, run)
        return run


def invoice_billing_chunk(
    db: Database, *, tenant_id: str, billing_run_id: str, chunk: int, customer_ids: list[str]
) -> BillingRun:
    """Invoice one chunk of a run's customers, record its counts, and complete the run after its last chunk.

    Safe to run twice, even at once: a customer has one invoice per period whatever happens, and the
    chunk's counts are computed from the invoices and kept under its number, so they never add up twice.
    """
    with db.transaction(tenant_id=tenant_id) as session:
        run = get_billing_run(session, billing_run_id)
        if str(chunk) in (run.chunk_results or {}):
            return run  # delivered again after it ran
        period = run.period

    failures = 0
    for customer_id in customer_ids:
        try:
            with db.transaction(tenant_id=tenant_id) as session:
                invoice_customer(
                    session, tenant_id=tenant_id, customer_id=customer_id, period=period, billing_run_id=billing_run_id
                )
        except IntegrityError:
            pass  # another run, or another delivery of this chunk, invoiced this customer first
        except Exception:
            log.exception("invoicing a customer failed", extra={"customer_id": customer_id})
            failures += 1

    with db.transaction(tenant_id=tenant_id) as session:
        run = _locked_run(session, billing_run_id)
        results = dict(run.chunk_results or {})
        if str(chunk) not in results:
            results[str(chunk)] = _chunk_counts(session, run, customer_ids, failures)
            run.chunk_results = results
            _progress(run)
        if len(results) >= run.chunks_total and run.status == "running":
            _complete(session, run)
        return run


def _locked_run(session: Session, run_id: str) -> BillingRun:
    """The run, locked until the transaction ends: chunks finishing at once record their counts in turn."""
    run = session.get(BillingRun, run_id, with_for_update=True)
    if run is None:
        raise BillingRunNotFound(f"No billing run {run_id}.")
    return run


def _chunk_counts(session: Session, run: BillingRun, customer_ids: list[str], failures: int) -> dict[str, int]:
    """A chunk's counts, from the invoices of its customers for the period (whichever delivery made them)."""
    created, invoiced = session.execute(
        select(
            func.coalesce(func.sum(case((Invoice.billing_run_id == run.id, 1), else_=0)), 0),
            func.count(Invoice.id),
        ).where(Invoice.period == run.period, Invoice.customer_id.in_(customer_ids))
    ).one()
    return {
        "customers": len(customer_ids),
        "created": int(created),
        "existing": int(invoiced) - int(created),
        "failures": failures,
    }


def _progress(run: BillingRun) -> None:
    """The run's counts: the sums of its finished chunks' counts, so a chunk run twice counts once."""
    results = list((run.chunk_results or {}).values())
    run.customers_done = sum(int(r["customers"]) for r in results)
    run.invoices_created = sum(int(r["created"]) for r in results)
    run.invoices_existing = sum(int(r["existing"]) for r in results)
    run.failures = sum(int(r["failures"]) for r in results)


def _complete(session: Session, run: BillingRun) -> None:
    """Complete a running run, exactly once: the UPDATE only matches while it is still running."""
    status = "completed" if run.failures == 0 else "completed_with_failures"
    session.flush()
    done = session.execute(
        update(BillingRun)
        .where(BillingRun.id == run.id, BillingRun.status == "running")
        .values(status=status, completed_at=utcnow())
    ).rowcount  # type: ignore[attr-defined]
    if not done:
        return
    session.refresh(run)
    record_event(
        session,
        "billing_run.completed",
        run.id,
        {
            "period": run.period,
            "invoices_created": run.invoices_created,
            "invoices_existing": run.invoices_existing,
            "failures": run.failures,
        },
    )


def fail_billing_run(session: Session, *, tenant_id: str, billing_run_id: str, reason: str) -> bool:
    """Mark a pending or running run failed with the reason (one of its jobs failed for good).

    Works in a platform-scoped session too (the job ledger's). True when the run was marked.
    """
    run = session.get(BillingRun, billing_run_id, with_for_update=True)
    if run is None or run.tenant_id != tenant_id or run.status not in RUN_OPEN:
        return False
    run.status = "failed"
    run.failure_reason = reason[:500]
    record_event(
        session,
        "billing_run.failed",
        run.id,
        {"period": run.period, "reason": run.failure_reason, "customers_done": run.customers_done},
        tenant_id=tenant_id,
    )
    log.warning("billing run failed", extra={"billing_run_id": run.id, "reason": run.failure_reason})
    return True


def resume_billing_run(session: Session, *, tenant_id: str, billing_run_id: str) -> bool:
    """Take a failed run back to running (or pending, if it never started): its failed job was replayed."""
    run = session.get(BillingRun, billing_run_id, with_for_update=True)
    if run is None or run.tenant_id != tenant_id or run.status != "failed":
        return False
    run.status = "running" if run.started_at is not None else "pending"
    run.failure_reason = None
    record_event(session, "billing_run.resumed", run.id, {"period": run.period}, tenant_id=tenant_id)
    return True


def _billable(start: dt.datetime, end: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        Subscription.status.in_(BILLED_STATUSES),
        Subscription.activated_at < end,
        or_(Subscription.terminated_at.is_(None), Subscription.terminated_at >= start),
    ]


def _customer_subscriptions(
    session: Session, customer_id: str, start: dt.datetime, end: dt.datetime
) -> tuple[list[Subscription], list[str]]:
    """The customer's lines billable in [start, end), and the ids of all its lines (usage may outlive a line)."""
    all_lines = list(
        session.scalars(select(Subscription).where(Subscription.customer_id == customer_id).order_by(Subscription.id))
    )
    billable = [
        s
        for s in all_lines
        if s.status in BILLED_STATUSES
        and s.activated_at is not None
        and s.activated_at < end
        and (s.terminated_at is None or s.terminated_at >= start)
    ]
    return billable, [s.id for s in all_lines]


UsageRow = tuple[str, str, str, int, Decimal]  # subscription, service, period, overage quantity, amount


def _unbilled_usage(
    session: Session, subscription_ids: list[str], period: str, *, claim_for: str | None
) -> list[UsageRow]:
    """Rated overage of these lines up to `period` that no invoice has billed yet; claimed for an invoice if given.

    Claiming is one UPDATE ... RETURNING: a record rated while this runs is either claimed here or left for
    the next invoice, never both and never neither.
    """
    if not subscription_ids:
        return []
    where = (
        UsageRecord.subscription_id.in_(subscription_ids),
        UsageRecord.invoice_id.is_(None),
        UsageRecord.period <= period,
        UsageRecord.overage_quantity > 0,
        # Paid from a prepaid balance when rated.
        UsageRecord.prepaid.is_(False),
    )
    columns = (
        UsageRecord.subscription_id,
        UsageRecord.service,
        UsageRecord.period,
        UsageRecord.overage_quantity,
        UsageRecord.amount,
    )
    rows = _unbilled(session, UsageRecord, where, columns, claim_for)
    return [(sub, service, usage_period, int(qty), Decimal(amount)) for sub, service, usage_period, qty, amount in rows]


TAX_NOTES = {"zero": " (zero-rated)", "exempt": " (VAT exempt)"}


def _customer_charges(
    session: Session,
    *,
    period: str,
    billable: list[Subscription],
    usage: list[UsageRow],
    claim_for: str | None = None,
) -> list[Charge]:
    """Each billable line's fee (the version in force at the period's start), its first invoice's one-time
    charges, its purchases and discounts, then its overage per service: this period's first, then earlier
    periods' by age. With `claim_for` (an invoice being issued), purchases and promotion cycles are claimed
    by that invoice, once.
    """
    lines = {s.id: s for s in session.scalars(select(Subscription).where(Subscription.id.in_({u[0] for u in usage})))}
    lines.update({s.id: s for s in billable})
    if not lines:
        return []
    timezone = get_tenant(session, next(iter(lines.values())).tenant_id).timezone
    _, _, start, end = period_bounds(period, timezone)
    timelines = line_terms(session, list(lines))
    offers = {o.id: o for o in session.scalars(select(Offer).where(Offer.id.in_({s.offer_id for s in lines.values()})))}
    totals: dict[tuple[str, str, str], tuple[int, Decimal]] = {}
    for sub_id, service, usage_period, qty, amount in usage:
        seen_qty, seen_amount = totals.get((sub_id, usage_period, service), (0, Decimal(0)))
        totals[(sub_id, usage_period, service)] = (seen_qty + qty, seen_amount + amount)

    discounts = _line_discounts(session, [s.id for s in billable], claim_for)
    charges: list[Charge] = []
    for sub in billable:
        timeline = timelines.get(sub.id)
        terms = timeline.at(start) if timeline else None
        if terms is None:
            continue
        name = offers[sub.offer_id].name
        charges.append(
            Charge(
                kind="recurring",
                description=f"{name}, monthly fee ({sub.msisdn}){TAX_NOTES.get(terms.tax_category, '')}",
                quantity=Decimal(1),
                unit="month",
                unit_price=terms.price,
                amount=terms.price,
                tax_category=terms.tax_category,
            )
        )
        for code, value in discounts.get(sub.id, []):
            charges.append(
                Charge(
                    kind="discount",
                    description=f"Promotion {code} on {name} ({sub.msisdn})",
                    quantity=Decimal(1),
                    unit="",
                    unit_price=None,
                    amount=-_discount_amount(value, terms.price),
                    tax_category=terms.tax_category,
                )
            )
        first = timeline.at(sub.activated_at) if timeline and sub.activated_at else None
        if first is not None and sub.activated_at is not None and start <= sub.activated_at < end:
            charges.extend(
                Charge(
                    kind="one_time",
                    description=f"{charge_name} ({sub.msisdn}){TAX_NOTES.get(category, '')}",
                    quantity=Decimal(1),
                    unit="",
                    unit_price=amount,
                    amount=amount,
                    tax_category=category,
                )
                for _code, charge_name, amount, category in first.charges
            )
    charges.extend(_purchase_charges(session, lines, [s.id for s in billable], end, claim_for))
    # This period's usage first, line by line; then what arrived late for earlier periods, oldest first.
    order = sorted(totals, key=lambda key: (key[1] != period, key[1], key[0], list(OVERAGE).index(Service(key[2]))))
    for sub_id, usage_period, service_name in order:
        qty, amount = totals[(sub_id, usage_period, service_name)]
        service = Service(service_name)
        kind, unit, _, label = OVERAGE[service]
        sub = lines[sub_id]
        late = usage_period != period
        description = f"{label}, usage of {usage_period} ({sub.msisdn})" if late else f"{label} ({sub.msisdn})"
        timeline = timelines.get(sub_id)
        _, _, usage_start, _ = period_bounds(usage_period, timezone)
        terms = timeline.at(usage_start) if timeline else None
        unit_price = terms.usage_prices.get("home", {}).get(service_name) if terms else None
        charges.append(
            Charge(
                kind=kind,
                description=description,
                quantity=(Decimal(qty) / price_unit(service)).quantize(Decimal("0.001")),
                unit=unit,
                unit_price=unit_price,
                amount=amount,
                period=usage_period if late else None,
            )
        )
    return charges


def _discount_amount(value: tuple[str, Decimal], price: Decimal) -> Decimal:
    kind, amount = value
    return price * amount / 100 if kind == "percent" else min(amount, price)


def _line_discounts(
    session: Session, subscription_ids: list[str], claim_for: str | None
) -> dict[str, list[tuple[str, tuple[str, Decimal]]]]:
    """The promotions discounting each line's fee on this invoice, and (issuing) one cycle of each counted.

    A redemption is counted once per invoice: the UPDATE skips one this invoice already counted.
    """
    if not subscription_ids:
        return {}
    rows = session.execute(
        select(
            PromotionRedemption.id, PromotionRedemption.subscription_id, Promotion.code, Promotion.kind, Promotion.value
        )
        .join(Promotion, Promotion.id == PromotionRedemption.promotion_id)
        .where(
            PromotionRedemption.subscription_id.in_(subscription_ids),
            PromotionRedemption.purchase_id.is_(None),
            or_(
                Promotion.cycles.is_(None),
                PromotionRedemption.cycles_used < Promotion.cycles,
                PromotionRedemption.last_invoice_id == claim_for if claim_for else false(),
            ),
        )
        .order_by(PromotionRedemption.id)
    ).all()
    found: dict[str, list[tuple[str, tuple[str, Decimal]]]] = {}
    for _, sub_id, code, kind, value in rows:
        found.setdefault(sub_id, []).append((code, (kind, Decimal(value))))
    if claim_for is not None and rows:
        session.execute(
            update(PromotionRedemption)
            .where(
                PromotionRedemption.id.in_([r[0] for r in rows]),
                or_(PromotionRedemption.last_invoice_id.is_(None), PromotionRedemption.last_invoice_id != claim_for),
            )
            .values(cycles_used=PromotionRedemption.cycles_used + 1, last_invoice_id=claim_for)
            .execution_options(synchronize_session=False)
        )
    return found


def _purchase_charges(
    session: Session,
    lines: dict[str, Subscription],
    subscription_ids: list[str],
    end: dt.datetime,
    claim_for: str | None,
) -> list[Charge]:
    """The lines' purchases made before the period's end that no invoice has billed, claimed if issuing."""
    if not subscription_ids:
        return []
    where = (
        OfferPurchase.subscription_id.in_(subscription_ids),
        OfferPurchase.invoice_id.is_(None),
        OfferPurchase.created_at < end,
    )
    columns = (
        OfferPurchase.id,
        OfferPurchase.subscription_id,
        OfferPurchase.name,
        OfferPurchase.price,
        OfferPurchase.discount,
        OfferPurchase.tax_category,
    )
    rows = list(_unbilled(session, OfferPurchase, where, columns, claim_for))
    charges: list[Charge] = []
    for _, sub_id, name, price, discount, category in sorted(rows):
        msisdn = lines[sub_id].msisdn
        note = TAX_NOTES.get(category, "")
        charges.append(
            Charge(
                kind="purchase",
                description=f"{name} ({msisdn}){note}",
                quantity=Decimal(1),
                unit="",
                unit_price=Decimal(price),
                amount=Decimal(price),
                tax_category=category,
            )
        )
        if Decimal(discount) > 0:
            charges.append(
                Charge(
                    kind="discount",
                    description=f"Promotion on {name} ({msisdn})",
                    quantity=Decimal(1),
                    unit="",
                    unit_price=None,
                    amount=-Decimal(discount),
                    tax_category=category,
                )
            )
    return charges


def rerating_adjustment_charges(
    session: Session, subscription_ids: list[str], period: str, *, claim_for: str | None
) -> list[Charge]:
    """Re-rating differences of these lines' invoiced usage not billed yet, one line per line and usage period.

    Claimed like usage, in one UPDATE ... RETURNING: an adjustment is billed on exactly one invoice.
    """
    if not subscription_ids:
        return []
    where = (
        UsageAdjustment.subscription_id.in_(subscription_ids),
        UsageAdjustment.invoice_id.is_(None),
        UsageAdjustment.period <= period,
    )
    columns = (UsageAdjustment.subscription_id, UsageAdjustment.period, UsageAdjustment.amount)
    rows = _unbilled(session, UsageAdjustment, where, columns, claim_for)
    totals: dict[tuple[str, str], Decimal] = {}
    for sub_id, usage_period, amount in rows:
        totals[(sub_id, usage_period)] = totals.get((sub_id, usage_period), Decimal(0)) + Decimal(amount)
    msisdns: dict[str, str | None] = dict(
        session.execute(
            select(Subscription.id, Subscription.msisdn).where(Subscription.id.in_({k[0] for k in totals}))
        ).all()
    )
    return [
        Charge(
            kind="rerating_adjustment",
            description=f"Re-rating adjustment, usage of {usage_period} ({msisdns.get(sub_id) or sub_id})",
            quantity=Decimal(1),
            unit="adjustment",
            unit_price=None,
            amount=amount,
            period=usage_period if usage_period != period else None,
        )
        for (sub_id, usage_period), amount in sorted(totals.items(), key=lambda item: (item[0][1], item[0][0]))
        if amount
    ]


def _third_party_unbilled(period: str) -> tuple[ColumnElement[bool], ...]:
    """Postpaid merchants' charges of the period or before that no invoice has billed."""
    return (
        CarrierCharge.payment == "invoice",
        CarrierCharge.status != "refused",
        CarrierCharge.invoice_id.is_(None),
        CarrierCharge.period <= period,
    )


def third_party_charges(
    session: Session, subscription_ids: list[str], period: str, *, claim_for: str | None
) -> list[Charge]:
    """Merchants' charges to these postpaid lines not billed yet (less what was refunded before billing), each a
    line of its own, then refunds of charges already invoiced, as credits; claimed like usage when issuing.

    They are collected on the merchant's behalf, its price already including whatever tax the merchant owes: the
    lines stay outside the invoice's VAT base.
    """
    if not subscription_ids:
        return []
    charged = _unbilled(
        session,
        CarrierCharge,
        (CarrierCharge.subscription_id.in_(subscription_ids), *_third_party_unbilled(period)),
        (
            CarrierCharge.id,
            CarrierCharge.subscription_id,
            CarrierCharge.merchant_id,
            CarrierCharge.description,
            CarrierCharge.amount,
            CarrierCharge.refunded_amount,
        ),
        claim_for,
    ).all()
    credits = _unbilled(
        session,
        CarrierRefund,
        (
            CarrierRefund.subscription_id.in_(subscription_ids),
            CarrierRefund.settlement == "credit",
            CarrierRefund.invoice_id.is_(None),
        ),
        (CarrierRefund.id, CarrierRefund.charge_id, CarrierRefund.amount),
        claim_for,
    ).all()
    if not charged and not credits:
        return []
    credited: dict[str, tuple[str | None, str, str]] = {
        charge_id: (sub_id, merchant_id, description)
        for charge_id, sub_id, merchant_id, description in session.execute(
            select(
                CarrierCharge.id, CarrierCharge.subscription_id, CarrierCharge.merchant_id, CarrierCharge.description
            ).where(CarrierCharge.id.in_({c[1] for c in credits}))
        )
    }
    merchant_ids = {c[2] for c in charged} | {m for _, m, _ in credited.values()}
    names = dict(session.execute(select(Merchant.id, Merchant.name).where(Merchant.id.in_(merchant_ids))).all())
    line_ids = {c[1] for c in charged} | {s for s, _, _ in credited.values()}
    msisdns = dict(
        session.execute(select(Subscription.id, Subscription.msisdn).where(Subscription.id.in_(line_ids))).all()
    )
    charges = []
    for _, sub_id, merchant_id, description, amount, refunded in sorted(charged):
        net = Decimal(amount) - Decimal(refunded)
        charges.append(
            Charge(
                kind="third_party",
                description=f"{names[merchant_id]}: {description} ({msisdns.get(sub_id) or sub_id})",
                quantity=Decimal(1),
                unit="",
                unit_price=net,
                amount=net,
                tax_category="exempt",
            )
        )
    for _, charge_id, amount in sorted(credits):
        line_id, merchant_id, description = credited[charge_id]
        sub_id = line_id or ""  # a charge that was refunded was accepted: it has its line
        charges.append(
            Charge(
                kind="third_party",
                description=f"Refund, {names[merchant_id]}: {description} ({msisdns.get(sub_id) or sub_id})",
                quantity=Decimal(1),
                unit="",
                unit_price=None,
                amount=-Decimal(amount),
                tax_category="exempt",
            )
        )
    return charges


def _payment_terms(session: Session) -> dt.timedelta:
    """The tenant's payment terms (its billing settings; 14 days until it sets them)."""
    return dt.timedelta(days=tenant_settings.payment_terms_days(session))


def tax_rate(session: Session, tenant: Tenant, on: dt.date) -> Decimal:
    """The VAT rate (a fraction) of the tenant's invoices on a date: its own rate when set, else its country's."""
    own = tenant_settings.tax_rate_fraction(session)
    return own if own is not None else vat_rate(tenant.country, on)


def standard_tax_rate(tenant: Tenant) -> Decimal | None:
    """The tenant's country's standard VAT rate today (a fraction), or None when the platform has none for it."""
    try:
        return vat_rate(tenant.country, dt.datetime.now(zoneinfo.ZoneInfo(tenant.timezone)).date())
    except UnknownTaxCountry:
        return None


def invoice_customer(
    session: Session, *, tenant_id: str, customer_id: str, period: str, billing_run_id: str | None = None
) -> Invoice | None:
    """Issue the customer's invoice for the period; None when it already exists.

    It bills the period's fees and every rated overage not billed yet up to the period's end, so usage
    rated after an earlier period was invoiced lands here, named with its own period.
    """
    if session.scalar(select(Invoice.id).where(Invoice.customer_id == customer_id, Invoice.period == period)):
        return None
    tenant = get_tenant(session, tenant_id)
    first, last, start, end = period_bounds(period, tenant.timezone)
    billable, all_lines = _customer_subscriptions(session, customer_id, start, end)
    # One counter per year whatever the series, so a change of series never repeats a number.
    series = tenant_settings.invoice_series(session)
    number = f"{series}{first.year}-{next_counter(session, tenant_id, f'invoice:{first.year}'):06d}"
    issued = utcnow()
    zero = Decimal(0)
    invoice = Invoice(
        id=new_id("inv"),
        number=number,
        customer_id=customer_id,
        billing_run_id=billing_run_id,
        period=period,
        period_start=first,
        period_end=last,
        status="issued",
        currency=tenant.currency,
        subtotal=zero,
        tax=zero,
        tax_rate=zero,
        total=zero,
        issued_at=issued,
        due_date=issued.date() + _payment_terms(session),
    )
    session.add(invoice)
    session.flush()  # the claimed usage points at it
    usage = _unbilled_usage(session, all_lines, period, claim_for=invoice.id)
    charges = _customer_charges(session, period=period, billable=billable, usage=usage, claim_for=invoice.id)
    charges += rerating_adjustment_charges(session, all_lines, period, claim_for=invoice.id)
    charges += third_party_charges(session, all_lines, period, claim_for=invoice.id)
    totals = compute_invoice(charges, currency=tenant.currency, tax_rate=tax_rate(session, tenant, last))
    invoice.subtotal, invoice.tax, invoice.tax_rate, invoice.total = (
        totals.subtotal,
        totals.tax,
        totals.tax_rate,
        totals.total,
    )
    session.add_all(
        InvoiceLine(
            id=new_id("inl"),
            invoice_id=invoice.id,
            position=position,
            kind=line.kind,
            description=line.description,
            quantity=line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            amount=line.amount,
            service_period=line.period,
        )
        for position, line in enumerate(totals.lines, start=1)
    )
    session.flush()
    enqueue(session, "charging.render_invoice_pdf", tenant_id=tenant_id, invoice_id=invoice.id, key=f"pdf-{invoice.id}")
    record_event(
        session,
        "invoice.issued",
        invoice.id,
        {
            "number": number,
            "customer": customer_id,
            "period": period,
            "total": str(totals.total),
            "currency": tenant.currency,
        },
    )
    return invoice


@dataclass(frozen=True)
class UpcomingInvoice:
    """What the customer's invoice for the open period would be if it were issued now."""

    customer_id: str
    period: str
    period_start: dt.date
    period_end: dt.date
    period_ends_at: dt.datetime
    currency: str
    totals: InvoiceTotals


def upcoming_invoice(session: Session, *, tenant_id: str, customer_id: str) -> UpcomingInvoice:
    """Preview the open period's invoice: its fees and all overage not billed yet; nothing is written."""
    tenant = get_tenant(session, tenant_id)
    get_or_raise(session, Customer, customer_id, CustomerNotFound, "customer")
    period = period_of(utcnow(), tenant.timezone)
    first, last, start, end = period_bounds(period, tenant.timezone)
    billable, all_lines = _customer_subscriptions(session, customer_id, start, end)
    usage = _unbilled_usage(session, all_lines, period, claim_for=None)
    charges = _customer_charges(session, period=period, billable=billable, usage=usage)
    charges += rerating_adjustment_charges(session, all_lines, period, claim_for=None)
    charges += third_party_charges(session, all_lines, period, claim_for=None)
    totals = compute_invoice(charges, currency=tenant.currency, tax_rate=tax_rate(session, tenant, last))
    return UpcomingInvoice(customer_id, period, first, last, end, tenant.currency, totals)


def customers_to_bill(session: Session, *, period: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    """Customers with a line billable in the period, or with overage, a re-rating difference, a merchant's charge or
    a refund to credit that no invoice has billed."""
    with_lines = select(Subscription.customer_id).where(*_billable(start, end))
    with_usage = (
        select(Subscription.customer_id)
        .join(UsageRecord, UsageRecord.subscription_id == Subscription.id)
        .where(
            UsageRecord.invoice_id.is_(None),
            UsageRecord.period <= period,
            UsageRecord.overage_quantity > 0,
            UsageRecord.prepaid.is_(False),
        )
    )
    with_adjustments = (
        select(Subscription.customer_id)
        .join(UsageAdjustment, UsageAdjustment.subscription_id == Subscription.id)
        .where(UsageAdjustment.invoice_id.is_(None), UsageAdjustment.period <= period)
    )
    with_third_party = (
        select(Subscription.customer_id)
        .join(CarrierCharge, CarrierCharge.subscription_id == Subscription.id)
        .where(*_third_party_unbilled(period), CarrierCharge.amount > CarrierCharge.refunded_amount)
    )
    with_credits = (
        select(Subscription.customer_id)
        .join(CarrierRefund, CarrierRefund.subscription_id == Subscription.id)
        .where(CarrierRefund.settlement == "credit", CarrierRefund.invoice_id.is_(None))
    )
    ids = set(session.scalars(with_lines)) | set(session.scalars(with_usage)) | set(session.scalars(with_adjustments))
    ids |= set(session.scalars(with_third_party)) | set(session.scalars(with_credits))
    return sorted(ids)


def get_invoice(session: Session, invoice_id: str) -> Invoice:
    return get_or_raise(session, Invoice, invoice_id, InvoiceNotFound, "invoice")


def invoice_lines(session: Session, invoice_id: str) -> list[InvoiceLine]:
    return list(
        session.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == invoice_id).order_by(InvoiceLine.position))
    )


def invoice_document(session: Session, invoice: Invoice) -> InvoiceDocument:
    """What the PDF shows, from the stored invoice (never recomputed)."""
    tenant: Tenant = get_tenant(session, invoice.tenant_id)
    customer = session.get(Customer, invoice.customer_id)
    assert customer is not None
    from mvne.charging.invoicing import InvoiceLine as DocLine
    from mvne.charging.pdf import BankDetails
    from mvne.tenants.identifiers import default_locale
    from mvne.tenants.legal import find_legal_profile, registration_kind

    def address_lines(address: dict[str, str]) -> tuple[str, ...]:
        lines = [
            address.get("line1", ""),
            address.get("line2", ""),
            f"{address.get('postal_code', '')} {address.get('city', '')}".strip(),
        ]
        return tuple(x for x in lines if x)

    address = customer.address or {}
    # The seller as its legal profile states it; a tenant without one is named by its brand and country.
    profile = find_legal_profile(session)
    seller = Party(name=tenant.name, address_lines=(), country=tenant.country)
    locale, bank = default_locale(tenant.country), None
    if profile is not None:
        seller = Party(
            name=profile.legal_name,
            address_lines=address_lines(profile.address),
            country=profile.address["country"],
            vat_id=profile.vat_id,
            email=profile.support_email,
            legal_form=profile.legal_form,
            registration_number=profile.registration_number,
            registration_kind=registration_kind(profile),
            rcs_city=profile.rcs_city,
            share_capital=profile.share_capital,
            phone=profile.support_phone,
        )
        locale = profile.invoice_locale
        bank = BankDetails(profile.iban, profile.bic) if profile.iban else None
    return InvoiceDocument(
        number=invoice.number,
        issued_at=invoice.issued_at,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        due_date=invoice.due_date,
        currency=invoice.currency,
        locale=locale,
        seller=seller,
        buyer=Party(
            name=customer.name,
            address_lines=address_lines(address),
            country=address.get("country", ""),
            vat_id=customer.vat_id,
            email=customer.email,
        ),
        bank=bank,
        brand_name=tenant.name,
        lines=[
            DocLine(
                kind=line.kind,
                description=line.description,
                quantity=line.quantity,
                unit=line.unit,
                unit_price=line.unit_price,
                amount=line.amount,
            )
            for line in invoice_lines(session, invoice.id)
        ],
        subtotal=invoice.subtotal,
        tax=invoice.tax,
        total=invoice.total,
        tax_rate=invoice.tax_rate,
    )


def render_invoice(db: Database, storage: Storage, *, tenant_id: str, invoice_id: str) -> tuple[str, str]:
    """Render and store the invoice PDF once; returns its number and storage key."""
    with db.transaction(tenant_id=tenant_id) as session:
        invoice = get_invoice(session, invoice_id)
        number = invoice.number
        if invoice.pdf_key and storage.exists(invoice.pdf_key):
            return number, invoice.pdf_key
        document = invoice_document(session, invoice)
    pdf = render_invoice_pdf(document)
    key = f"tenants/{tenant_id}/invoices/{invoice_id}.pdf"
    storage.put(key, pdf, "application/pdf")
    with db.transaction(tenant_id=tenant_id) as session:
        invoice = get_invoice(session, invoice_id)
        invoice.pdf_key = key
    return number, key


def invoice_pdf(db: Database, storage: Storage, *, tenant_id: str, invoice_id: str) -> tuple[str, bytes]:
    """The invoice number and its stored PDF, rendered now if the render job has not run yet."""
    number, key = render_invoice(db, storage, tenant_id=tenant_id, invoice_id=invoice_id)
    try:
        return number, storage.get(key)
    except ObjectNotFound:
        raise InvoiceNotFound(f"The PDF of invoice {invoice_id} is missing.") from None


def _unbilled(
    session: Session,
    model: type[Any],
    where: Sequence[ColumnElement[bool]],
    columns: Sequence[Any],
    claim_for: str | None,
) -> Result[*tuple[Any, ...]]:
    """The columns of rows not on an invoice yet: read, or claimed for invoice `claim_for` in one UPDATE ...
    RETURNING, so that each row is billed on exactly one invoice however many runs race for it."""
    if claim_for is None:
        return session.execute(select(*columns).where(*where))
    return session.execute(
        update(model)
        .where(*where)
        .values(invoice_id=claim_for)
        .returning(*columns)
        .execution_options(synchronize_session=False)
    )
