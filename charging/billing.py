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
from decimal import Decimal

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.charging.errors import BillingRunInProgress, BillingRunNotFound, InvalidPeriod, InvoiceNotFound
from mvne.charging.invoicing import Charge, compute_invoice
from mvne.charging.models import BillingRun, Invoice, InvoiceLine, UsageRecord
from mvne.charging.pdf import InvoiceDocument, Party, render_invoice_pdf
from mvne.charging.rating import Service, price_unit
from mvne.charging.tax import vat_rate
from mvne.infra.db import Database, get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue
from mvne.infra.storage import ObjectNotFound, Storage
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Customer, Tenant
from mvne.tenants.service import get_tenant, next_counter, record_event

log = logging.getLogger("mvne.billing")

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
PAYMENT_TERMS = dt.timedelta(days=14)
BILLED_STATUSES = ("active", "suspended", "terminated")
OVERAGE = {
    Service.DATA: ("overage_data", "MB", "overage_data_per_mb", "Data beyond allowance"),
    Service.VOICE: ("overage_voice", "min", "overage_voice_per_minute", "Calls beyond allowance"),
    Service.SMS: ("overage_sms", "SMS", "overage_sms_per_message", "SMS beyond allowance"),
}


def period_bounds(period: str, timezone: str) -> tuple[dt.date, dt.date, dt.datetime, dt.datetime]:
    """First and last day of the period, and its [start, end) instants in UTC, in the tenant's zone."""
    match = PERIOD.match(period)
    if match is None:
        raise InvalidPeriod(f"Period {period!r} is not YYYY-MM.", errors={"period": ["Must be YYYY-MM."]})
    year, month = int(match[1]), int(match[2])
    zone = zoneinfo.ZoneInfo(timezone)
    first = dt.date(year, month, 1)
    last = dt.date(year, month, calendar.monthrange(year, month)[1])
    start = dt.datetime(year, month, 1, tzinfo=zone)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone)
    return first, last, start.astimezone(dt.UTC), end.astimezone(dt.UTC)


def start_billing_run(session: Session, *, tenant_id: str, period: str) -> BillingRun:
    """Queue a billing run for a period that has begun; one run at a time per period."""
    tenant = get_tenant(session, tenant_id)
    _, _, start, _ = period_bounds(period, tenant.timezone)
    if start > utcnow():
        raise InvalidPeriod(f"Period {period} has not started yet.", errors={"period": ["Not started yet."]})
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
    """Invoice every customer with a billable line in the period; progress is visible as it goes."""
    with db.transaction(tenant_id=tenant_id) as session:
        run = get_billing_run(session, billing_run_id)
        if run.status == "completed":
            return run
        tenant = get_tenant(session, tenant_id)
        _, _, start, end = period_bounds(run.period, tenant.timezone)
        customer_ids = list(
            session.scalars(
                select(Subscription.customer_id)
                .distinct()
                .where(*_billable(start, end))
                .order_by(Subscription.customer_id)
            )
        )
        run.status = "running"
        run.started_at = run.started_at or utcnow()
        run.customers_total = len(customer_ids)
        run.customers_done = run.invoices_created = run.invoices_existing = run.failures = 0
        record_event(session, "billing_run.started", run.id, {"period": run.period, "customers": len(customer_ids)})
        period = run.period

    created = existing = failures = 0
    for done, customer_id in enumerate(customer_ids, start=1):
        try:
            with db.transaction(tenant_id=tenant_id) as session:
                invoice = invoice_customer(
                    session, tenant_id=tenant_id, customer_id=customer_id, period=period, billing_run_id=billing_run_id
                )
            if invoice is None:
                existing += 1
            else:
                created += 1
        except IntegrityError:
            existing += 1  # a concurrent run invoiced this customer first
        except Exception:
            log.exception("invoicing a customer failed", extra={"customer_id": customer_id})
            failures += 1
        if done % 50 == 0 or done == len(customer_ids):
            _progress(db, tenant_id, billing_run_id, done=done, created=created, existing=existing, failures=failures)

    with db.transaction(tenant_id=tenant_id) as session:
        run = get_billing_run(session, billing_run_id)
        run.customers_done = len(customer_ids)
        run.invoices_created, run.invoices_existing, run.failures = created, existing, failures
        run.status = "completed" if failures == 0 else "completed_with_failures"
        run.completed_at = utcnow()
        record_event(
            session,
            "billing_run.completed",
            run.id,
            {
                "period": run.period,
                "invoices_created": created,
                "invoices_existing": existing,
                "failures": failures,
            },
        )
        return run


def _progress(
    db: Database, tenant_id: str, run_id: str, *, done: int, created: int, existing: int, failures: int
) -> None:
    with db.transaction(tenant_id=tenant_id) as session:
        run = get_billing_run(session, run_id)
        run.customers_done, run.invoices_created = done, created
        run.invoices_existing, run.failures = existing, failures


def _billable(start: dt.datetime, end: dt.datetime) -> list[ColumnElement[bool]]:
    return [
        Subscription.status.in_(BILLED_STATUSES),
        Subscription.activated_at < end,
        or_(Subscription.terminated_at.is_(None), Subscription.terminated_at >= start),
    ]


def invoice_customer(
    session: Session, *, tenant_id: str, customer_id: str, period: str, billing_run_id: str | None = None
) -> Invoice | None:
    """Issue the customer's invoice for the period; None when it already exists."""
    if session.scalar(select(Invoice.id).where(Invoice.customer_id == customer_id, Invoice.period == period)):
        return None
    tenant = get_tenant(session, tenant_id)
    first, last, start, end = period_bounds(period, tenant.timezone)
    subscriptions = list(
        session.scalars(
            select(Subscription)
            .where(Subscription.customer_id == customer_id, *_billable(start, end))
            .order_by(Subscription.id)
        )
    )
    offers = {o.id: o for o in session.scalars(select(Offer).where(Offer.id.in_({s.offer_id for s in subscriptions})))}
    usage = {
        (sub_id, service): (Decimal(str(qty or 0)), amount)
        for sub_id, service, qty, amount in session.execute(
            select(
                UsageRecord.subscription_id,
                UsageRecord.service,
                func.sum(UsageRecord.overage_quantity),
                func.count(UsageRecord.id),
            )
            .where(UsageRecord.period == period, UsageRecord.subscription_id.in_([s.id for s in subscriptions]))
            .group_by(UsageRecord.subscription_id, UsageRecord.service)
        )
    }
    amounts = _overage_amounts(session, period, [s.id for s in subscriptions])
    charges: list[Charge] = []
    for sub in subscriptions:
        offer = offers[sub.offer_id]
        charges.append(
            Charge(
                kind="recurring",
                description=f"{offer.name}, monthly fee ({sub.msisdn})",
                quantity=Decimal(1),
                unit="month",
                unit_price=offer.price,
                amount=offer.price,
            )
        )
        for service, (kind, unit, price_attr, label) in OVERAGE.items():
            overage_qty, _ = usage.get((sub.id, service.value), (Decimal(0), 0))
            amount = amounts.get((sub.id, service.value), Decimal(0))
            if overage_qty == 0 and amount == 0:
                continue
            quantity = (overage_qty / price_unit(service)).quantize(Decimal("0.001"))
            charges.append(
                Charge(
                    kind=kind,
                    description=f"{label} ({sub.msisdn})",
                    quantity=quantity,
                    unit=unit,
                    unit_price=getattr(offer, price_attr),
                    amount=amount,
                )
            )
    totals = compute_invoice(charges, currency=tenant.currency, tax_rate=vat_rate(tenant.country, last))
    number = f"INV-{first.year}-{next_counter(session, tenant_id, f'invoice:{first.year}'):06d}"
    issued = utcnow()
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
        subtotal=totals.subtotal,
        tax=totals.tax,
        tax_rate=totals.tax_rate,
        total=totals.total,
        issued_at=issued,
        due_date=issued.date() + PAYMENT_TERMS,
    )
    session.add(invoice)
    session.flush()
    for position, line in enumerate(totals.lines, start=1):
        session.add(
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
            )
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


def _overage_amounts(session: Session, period: str, subscription_ids: list[str]) -> dict[tuple[str, str], Decimal]:
    # Summed in Python: money is exact Decimal on every backend (SQLite keeps it as text).
    sums: dict[tuple[str, str], Decimal] = {}
    rows = session.execute(
        select(UsageRecord.subscription_id, UsageRecord.service, UsageRecord.amount).where(
            UsageRecord.period == period,
            UsageRecord.subscription_id.in_(subscription_ids),
            UsageRecord.overage_quantity > 0,
        )
    )
    for sub_id, service, amount in rows:
        sums[(sub_id, service)] = sums.get((sub_id, service), Decimal(0)) + amount
    return sums


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

    address = customer.address or {}
    buyer_lines = [
        address.get("line1", ""),
        address.get("line2", ""),
        f"{address.get('postal_code', '')} {address.get('city', '')}".strip(),
    ]
    return InvoiceDocument(
        number=invoice.number,
        issued_at=invoice.issued_at,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        due_date=invoice.due_date,
        currency=invoice.currency,
        locale="fr_FR" if tenant.country == "FR" else "en_GB",
        seller=Party(name=tenant.name, address_lines=(), country=tenant.country),
        buyer=Party(
            name=customer.name,
            address_lines=tuple(x for x in buyer_lines if x),
            country=address.get("country", ""),
            email=customer.email,
        ),
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
