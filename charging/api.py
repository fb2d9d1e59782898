"""Usage records, billing runs and invoices of the calling tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from flask import Response, current_app, url_for
from flask_smorest import Blueprint
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.charging import balances, billing, rejections, rerating, spend_caps, usage, vouchers
from mvne.charging.balances import InvalidTopUp, LineCannotTopUp, TopUpCurrencyMismatch
from mvne.charging.errors import (
    BillingRunInProgress,
    BillingRunNotFound,
    InvalidPeriod,
    InvoiceNotFound,
    PeriodNotEnded,
    ReratingRunInProgress,
    ReratingRunNotFound,
    UsageRecordNotFound,
    UsageRejectionNotFound,
    UsageRejectionResolved,
    UsageStillRejected,
)
from mvne.charging.models import (
    BalanceMovement,
    BillingRun,
    Invoice,
    ReratingRun,
    UsageRecord,
    UsageRejection,
    VoucherBatch,
)
from mvne.charging.online.service import cap_changed, money_added
from mvne.charging.rating import Service
from mvne.charging.schemas import (
    BalanceMovementSchema,
    BalancesSchema,
    BillingRunCreateSchema,
    BillingRunSchema,
    InvoiceListArgs,
    InvoiceSchema,
    ReratingRunCreateSchema,
    ReratingRunSchema,
    SpendCapSchema,
    SpendCapSetSchema,
    TopUpCreateSchema,
    UpcomingInvoiceSchema,
    UsageBatchResultSchema,
    UsageBatchSchema,
    UsageRecordListArgs,
    UsageRecordSchema,
    UsageRejectionFixSchema,
    UsageRejectionListArgs,
    UsageRejectionSchema,
    UsageSummaryArgs,
    UsageSummarySchema,
    VoucherBatchCreatedSchema,
    VoucherBatchCreateSchema,
    VoucherBatchSchema,
    VoucherRedeemSchema,
)
from mvne.infra.db import utcnow
from mvne.infra.fields import fast_dumper
from mvne.infra.ids import new_id
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.provisioning.service import get_subscription
from mvne.tenants import settings as tenant_settings
from mvne.tenants.errors import (
    CountryLocked,
    CurrencyLocked,
    CustomerNotFound,
    InvalidLanguage,
    InvalidTaxRate,
    TimezoneLocked,
)
from mvne.tenants.schemas import MarketInputSchema, MarketSchema
from mvne.tenants.service import get_customer, get_tenant

usage_records = Blueprint("usage", __name__, url_prefix="/v1/usage-records", description="Usage to rate.")
usage_rejections = Blueprint(
    "usage_rejections",
    __name__,
    url_prefix="/v1/usage-rejections",
    description="Usage records that could not be rated, kept to be fixed and re-rated.",
)
billing_runs = Blueprint("billing_runs", __name__, url_prefix="/v1/billing-runs", description="Billing runs.")
invoices = Blueprint("invoices", __name__, url_prefix="/v1/invoices", description="Issued invoices.")
customer_billing = Blueprint(
    "customer_billing", __name__, url_prefix="/v1/customers", description="What a customer will be billed."
)
line_usage = Blueprint(
    "line_usage", __name__, url_prefix="/v1/subscriptions", description="Rated usage of a line against its allowances."
)
voucher_batches = Blueprint(
    "voucher_batches",
    __name__,
    url_prefix="/v1/voucher-batches",
    description="Top-up vouchers: batches of codes each worth an amount once.",
)
rerating_runs = Blueprint(
    "rerating_runs",
    __name__,
    url_prefix="/v1/rerating-runs",
    description="A period's usage rated again with today's terms and rate cards; differences billed next.",
)
tenant_market = Blueprint(
    "tenant_market",
    __name__,
    url_prefix="/v1/tenant/market",
    description="Where and how the tenant sells: country, currency, timezone, languages and tax rate.",
)


def _market_view(session: Session) -> dict[str, Any]:
    tenant = get_tenant(session, tenant_id())
    return tenant_settings.market_view(session, tenant, billing.standard_tax_rate(tenant))


@tenant_market.get("")
@require("tenant:read")
@tenant_market.response(200, MarketSchema)
def get_market() -> dict[str, Any]:
    """The tenant's market, and its country's standard VAT rate for reference."""
    return _market_view(db_session())


@tenant_market.put("")
@require("tenant:write")
@problems(CountryLocked, CurrencyLocked, TimezoneLocked, InvalidLanguage, InvalidTaxRate)
@tenant_market.arguments(
    MarketInputSchema,
    example={
        "country": "FR",
        "currency": "EUR",
        "timezone": "Europe/Paris",
        "languages": ["fr-FR", "en-GB"],
        "tax_rate": "20",
    },
)
@tenant_market.response(200, MarketSchema)
def put_market(body: dict[str, Any]) -> dict[str, Any]:
    """Set currency, timezone, languages (the first is the default) and the tax rate invoices apply.

    The country is fixed at sign-up (409 `country_locked`: the number block is of that country); the
    currency once offers exist (409 `currency_locked`); the timezone once the tenant is live (409
    `timezone_locked`). Invoices issued from now on apply the tax rate.
    """
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    has_offers = session.scalar(select(Offer.id).limit(1)) is not None
    tenant_settings.set_market(session, tenant, body, currency_in_use=has_offers)
    return _market_view(session)


@usage_records.post("")
@require("usage:write")
@usage_records.arguments(
    UsageBatchSchema,
    example={
        "records": [
            {
                "record_id": "cdr-2026-01-15-000001",
                "subscription": "sub_01M8NHTM21YRHT2QG60D9HJAWD",
                "service": "data",
                "started_at": "2026-01-15T09:30:00Z",
                "volume": 52428800,
            },
            {
                "record_id": "cdr-2026-01-15-000002",
                "msisdn": "+33781234567",
                "service": "voice",
                "started_at": "2026-01-15T10:02:00Z",
                "duration": 184,
                "called_number": "+33612345678",
            },
            {
                "record_id": "cdr-2026-01-15-000003",
                "msisdn": "+33781234567",
                "service": "data",
                "started_at": "2026-01-15T11:00:00Z",
                "volume": 1048576,
                "visited_plmn": "26201",
                "rating_group": 10,
            },
        ]
    },
)
@usage_records.response(200, UsageBatchResultSchema)
def post_usage(body: dict[str, Any]) -> Response:
    """Rate a batch of usage records: each ends rated, duplicate (already accepted) or rejected with a reason code.

    Rejected records are kept (`GET /v1/usage-rejections`) to be fixed and re-rated; a record id
    already accepted is counted once, in this batch or any other.
    """
    session = db_session()
    records = []
    for index, item in enumerate(body["records"]):
        quantity = {
            Service.DATA.value: item.get("volume"),
            Service.VOICE.value: item.get("duration"),
            Service.SMS.value: 1 if item.get("count") is None else item.get("count"),
            Service.MMS.value: 1 if item.get("count") is None else item.get("count"),
        }.get(item["service"])
        if quantity is None:  # another service: whichever quantity it came with, kept on its rejection
            quantity = next((item[k] for k in ("volume", "duration", "count") if item.get(k) is not None), 0)
        records.append(
            usage.UsageInput(
                record_id=item["record_id"],
                service=item["service"],
                started_at=item["started_at"],
                quantity=int(quantity),
                subscription_id=item.get("subscription"),
                msisdn=item.get("msisdn"),
                position=index,
                visited_plmn=item.get("visited_plmn"),
                called_number=item.get("called_number"),
                rating_group=item.get("rating_group"),
            )
        )
    result = usage.ingest_usage(session, get_tenant(session, tenant_id()), records, source="api", window=_window())
    # What UsageBatchResultSchema dumps, without marshmallow's machinery for each of thousands of outcomes.
    return cast(Response, current_app.json.response(_dump_batch_result(result)))


_dump_batch_result = fast_dumper(UsageBatchResultSchema())


def _window() -> usage.UsageWindow:
    settings = runtime().settings
    return usage.UsageWindow.of(settings.usage_clock_skew_s, settings.usage_retention_days)


@usage_records.get("")
@require("usage:read")
@usage_records.arguments(UsageRecordListArgs, location="query")
@usage_records.response(200, page_schema(UsageRecordSchema, "UsageRecordPage"))
def list_usage_records(args: dict[str, Any]) -> dict[str, Any]:
    """List rated usage records, oldest first; filter by line, period or service."""
    session = db_session()
    stmt = select(UsageRecord)
    if args.get("subscription"):
        stmt = stmt.where(UsageRecord.subscription_id == args["subscription"])
    if args.get("period"):
        stmt = stmt.where(UsageRecord.period == args["period"])
    if args.get("service"):
        stmt = stmt.where(UsageRecord.service == args["service"])
    page = paginate(session, stmt, UsageRecord.id, args)
    return {"data": [rejections.explain_usage_record(session, r) for r in page["data"]], "has_more": page["has_more"]}


@usage_records.get("/<usage_record_id>")
@require("usage:read")
@problems(UsageRecordNotFound)
@usage_records.response(200, UsageRecordSchema)
def get_usage_record(usage_record_id: str) -> dict[str, Any]:
    """A rated record and how it was rated.

    The offer version and zone, the buckets it consumed and how much of each, the retail rate card line
    (card, version, prefix, band, increments, billed quantity, connect fee) with the amount before and after
    rounding, the same for the host network's wholesale card, and the margin.
    """
    session = db_session()
    return rejections.explain_usage_record(session, rejections.get_usage_record(session, usage_record_id))


@usage_rejections.get("")
@require("usage:read")
@usage_rejections.arguments(UsageRejectionListArgs, location="query")
@usage_rejections.response(200, page_schema(UsageRejectionSchema, "UsageRejectionPage"))
def list_usage_rejections(args: dict[str, Any]) -> dict[str, Any]:
    """List rejected usage records, oldest first: the open ones unless `status` says otherwise."""
    stmt = select(UsageRejection)
    if args["status"] != "all":
        stmt = stmt.where(UsageRejection.status == args["status"])
    if args.get("reason"):
        stmt = stmt.where(UsageRejection.reason_code == args["reason"])
    if args.get("source"):
        stmt = stmt.where(UsageRejection.source == args["source"])
    return paginate(db_session(), stmt, UsageRejection.id, args)


@usage_rejections.get("/<usage_rejection_id>")
@require("usage:read")
@problems(UsageRejectionNotFound)
@usage_rejections.response(200, UsageRejectionSchema)
def get_usage_rejection(usage_rejection_id: str) -> UsageRejection:
    """A rejected record: as received, its fixes, its reason, and what became of it."""
    return rejections.get_rejection(db_session(), usage_rejection_id)


@usage_rejections.patch("/<usage_rejection_id>")
@require("usage:write")
@problems(UsageRejectionNotFound, UsageRejectionResolved)
@usage_rejections.arguments(
    UsageRejectionFixSchema, example={"subscription": "sub_01M8NHTM21YRHT2QG60D9HJAWD", "quantity": 52428800}
)
@usage_rejections.response(200, UsageRejectionSchema)
def fix_usage_rejection(body: dict[str, Any], usage_rejection_id: str) -> UsageRejection:
    """Fix an open rejected record (line, service, start, quantity); re-rate it next."""
    return rejections.fix_rejection(db_session(), usage_rejection_id, body)


@usage_rejections.post("/<usage_rejection_id>/rerate")
@require("usage:write")
@problems(UsageRejectionNotFound, UsageRejectionResolved, UsageStillRejected)
@usage_rejections.response(200, UsageRecordSchema)
def rerate_usage_rejection(usage_rejection_id: str) -> dict[str, Any]:
    """Rate an open rejected record as it stands now, exactly once; 422 with the new reason if still refused.

    A record whose id was accepted meanwhile is not rated again: the rejection is resolved as a duplicate
    and the accepted record is returned.
    """
    # Its own transaction, not the request's: a record refused again keeps its new reason despite the 422.
    with runtime().db.transaction(tenant_id=tenant_id()) as session:
        tenant = get_tenant(session, tenant_id())
        rejection, outcome = rejections.rerate_rejection(session, tenant, usage_rejection_id, window=_window())
        if outcome.outcome != "rejected":
            assert outcome.usage_record is not None
            return rejections.explain_usage_record(session, rejections.get_usage_record(session, outcome.usage_record))
        code, detail = rejection.reason_code, rejection.reason_detail
    raise UsageStillRejected(f"Still rejected ({code}): {detail}", errors={"reason_code": [code]})


@usage_rejections.post("/<usage_rejection_id>/discard")
@require("usage:write")
@problems(UsageRejectionNotFound, UsageRejectionResolved)
@usage_rejections.response(200, UsageRejectionSchema)
def discard_usage_rejection(usage_rejection_id: str) -> UsageRejection:
    """Close an open rejected record without rating it; it stays listed as discarded."""
    return rejections.discard_rejection(db_session(), usage_rejection_id)


@billing_runs.post("")
@require("billing:write")
@problems(BillingRunInProgress, PeriodNotEnded, InvalidPeriod)
@billing_runs.arguments(BillingRunCreateSchema, example={"period": "2026-01"})
@billing_runs.response(202, BillingRunSchema)
def create_billing_run(body: dict[str, Any]) -> BillingRun:
    """Start invoicing every customer for a period; follow it with GET."""
    return billing.start_billing_run(db_session(), tenant_id=tenant_id(), period=body["period"])


@customer_billing.get("/<customer_id>/upcoming-invoice")
@require("invoices:read")
@problems(CustomerNotFound)
@customer_billing.response(200, UpcomingInvoiceSchema)
def get_upcoming_invoice(customer_id: str) -> dict[str, Any]:
    """Preview the customer's invoice for the open period: fees and all overage not billed yet. Nothing is issued."""
    preview = billing.upcoming_invoice(db_session(), tenant_id=tenant_id(), customer_id=customer_id)
    return {
        "customer": preview.customer_id,
        "period": preview.period,
        "period_start": preview.period_start,
        "period_end": preview.period_end,
        "period_ends_at": preview.period_ends_at,
        "currency": preview.currency,
        "lines": preview.totals.lines,
        "subtotal": preview.totals.subtotal,
        "tax": preview.totals.tax,
        "tax_rate": preview.totals.tax_rate,
        "total": preview.totals.total,
    }


@billing_runs.get("")
@require("billing:read")
@billing_runs.arguments(PageArgs, location="query")
@billing_runs.response(200, page_schema(BillingRunSchema, "BillingRunPage"))
def list_billing_runs(args: dict[str, Any]) -> dict[str, Any]:
    """List billing runs, oldest first."""
    return paginate(db_session(), select(BillingRun), BillingRun.id, args)


@billing_runs.get("/<billing_run_id>")
@require("billing:read")
@problems(BillingRunNotFound)
@billing_runs.response(200, BillingRunSchema)
def get_billing_run(billing_run_id: str) -> BillingRun:
    """A billing run's status, counts and progress."""
    return billing.get_billing_run(db_session(), billing_run_id)


def present_invoice(session: Session, invoice: Invoice) -> dict[str, Any]:
    view = {c.key: getattr(invoice, c.key) for c in Invoice.__table__.columns}
    view["lines"] = billing.invoice_lines(session, invoice.id)
    view["pdf_url"] = url_for("invoices.get_invoice_pdf", invoice_id=invoice.id, _external=True)
    return view


@invoices.get("")
@require("invoices:read")
@invoices.arguments(InvoiceListArgs, location="query")
@invoices.response(200, page_schema(InvoiceSchema, "InvoicePage"))
def list_invoices(args: dict[str, Any]) -> dict[str, Any]:
    """List invoices, oldest first; filter by customer or period."""
    session = db_session()
    stmt = select(Invoice)
    if args.get("customer"):
        stmt = stmt.where(Invoice.customer_id == args["customer"])
    if args.get("period"):
        stmt = stmt.where(Invoice.period == args["period"])
    page = paginate(session, stmt, Invoice.id, args)
    return {"data": [present_invoice(session, i) for i in page["data"]], "has_more": page["has_more"]}


@invoices.get("/<invoice_id>")
@require("invoices:read")
@problems(InvoiceNotFound)
@invoices.response(200, InvoiceSchema)
def get_invoice(invoice_id: str) -> dict[str, Any]:
    """One invoice with its lines and totals."""
    session = db_session()
    return present_invoice(session, billing.get_invoice(session, invoice_id))


@invoices.get("/<invoice_id>/pdf")
@require("invoices:read")
@problems(InvoiceNotFound)
@invoices.response(200, {"type": "string", "format": "binary"}, content_type="application/pdf")
def get_invoice_pdf(invoice_id: str) -> Response:
    """The invoice as a PDF document."""
    # Not the request's session: rendering uses short transactions of its own.
    number, pdf = billing.invoice_pdf(runtime().db, runtime().storage, tenant_id=tenant_id(), invoice_id=invoice_id)
    return Response(
        pdf, mimetype="application/pdf", headers={"Content-Disposition": f'inline; filename="{number}.pdf"'}
    )


@line_usage.get("/<subscription_id>/usage")
@require("subscriptions:read")
@problems(SubscriptionNotFound)
@line_usage.arguments(UsageSummaryArgs, location="query")
@line_usage.response(200, UsageSummarySchema)
def get_line_usage(args: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    """Usage of a line in a period, per service, with what is left of the allowances and the overage so far."""
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    tenant = get_tenant(session, tenant_id())
    period = args.get("period") or usage.period_of(utcnow(), tenant.timezone)
    return {
        "subscription": subscription.id,
        "period": period,
        "services": usage.usage_summary(session, subscription, period),
    }


@line_usage.get("/<subscription_id>/balances")
@require("usage:read")
@problems(SubscriptionNotFound)
@line_usage.response(200, BalancesSchema)
def get_line_balances(subscription_id: str) -> dict[str, Any]:
    """A line's buckets valid now (plan, rollover, add-ons, top-ups), in the order usage consumes them.

    Each shows service, zone, origin, granted, used, remaining and percent used; an unlimited bucket shows its
    fair use, a roam-like-at-home one its EU fair use and EU use. The current period's plan buckets are made
    if no usage made them yet.
    """
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    return usage.balances(session, get_tenant(session, tenant_id()), subscription)


@line_usage.post("/<subscription_id>/top-ups")
@require("usage:write")
@problems(SubscriptionNotFound, LineCannotTopUp, InvalidTopUp, TopUpCurrencyMismatch)
@line_usage.arguments(TopUpCreateSchema, example={"amount": "10.00"})
@line_usage.response(201, BalanceMovementSchema)
def create_top_up(body: dict[str, Any], subscription_id: str) -> BalanceMovement:
    """Add money to a line's prepaid balance, in its offer's currency; the first top-up makes the line prepaid.

    A prepaid line's use beyond its buckets is paid from the balance as it is rated, never invoiced; online
    charging grants it no more than the balance covers. Send an `Idempotency-Key`: a top-up retried is made once.
    """
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    currency = session.scalar(select(Offer.currency).where(Offer.id == subscription.offer_id)) or "EUR"
    movement = balances.top_up(
        session,
        subscription.id,
        body["amount"],
        currency=currency,
        reference=f"top_up:{new_id('top')}",
        description=body["description"],
    )
    # The engine's account of the line, if it holds one, learns of the money once it is committed.
    _tell_online_charging(session, money_added, runtime(), subscription.id, body["amount"])
    return movement


def _tell_online_charging(session: Session, news: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Pass a change to the online charging accounts held in Redis once the request's transaction has committed
    (never before: an account must not grant money or room that a rollback takes back)."""
    event.listen(session, "after_commit", lambda _: news(*args, **kwargs), once=True)


def _spend_cap_of_line(session: Session, subscription_id: str) -> dict[str, Any]:
    subscription = get_subscription(session, subscription_id)
    cap, _ = spend_caps.spend_caps_of(session, subscription.id, subscription.customer_id)
    return spend_caps.cap_view(session, get_tenant(session, tenant_id()), cap, [subscription.id])


@line_usage.put("/<subscription_id>/spend-cap")
@require("usage:write")
@problems(SubscriptionNotFound, spend_caps.InvalidSpendCap)
@line_usage.arguments(SpendCapSetSchema, example={"amount": "30.00", "action": "stop"})
@line_usage.response(200, SpendCapSchema)
def set_line_spend_cap(body: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    """Cap what a line may spend beyond its buckets each billing period: online charging grants nothing past it.

    `stop` ends the service at the cap (Final-Unit-Action TERMINATE), `throttle` restricts it (RESTRICT_ACCESS).
    The answer shows what the line spent this period and what is left.
    """
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    spend_caps.set_spend_cap(session, amount=body["amount"], action=body["action"], subscription_id=subscription.id)
    cap = (body["amount"], body["action"])
    _tell_online_charging(session, cap_changed, runtime(), line_id=subscription.id, customer_id=None, cap=cap)
    return _spend_cap_of_line(session, subscription.id)


@line_usage.get("/<subscription_id>/spend-cap")
@require("usage:read")
@problems(SubscriptionNotFound)
@line_usage.response(200, SpendCapSchema)
def get_line_spend_cap(subscription_id: str) -> dict[str, Any]:
    """A line's spend cap (null amount: none), what it spent this period beyond its buckets, and what is left."""
    return _spend_cap_of_line(db_session(), subscription_id)


@line_usage.delete("/<subscription_id>/spend-cap")
@require("usage:write")
@problems(SubscriptionNotFound)
@line_usage.response(204)
def remove_line_spend_cap(subscription_id: str) -> None:
    """Remove a line's spend cap."""
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    if spend_caps.remove_spend_cap(session, subscription_id=subscription.id):
        _tell_online_charging(session, cap_changed, runtime(), line_id=subscription.id, customer_id=None, cap=None)


def _spend_cap_of_customer(session: Session, customer_id: str) -> dict[str, Any]:
    customer = get_customer(session, customer_id)
    _, cap = spend_caps.spend_caps_of(session, "", customer.id)
    lines = spend_caps.customer_lines(session, customer.id)
    return spend_caps.cap_view(session, get_tenant(session, tenant_id()), cap, lines)


@customer_billing.put("/<customer_id>/spend-cap")
@require("usage:write")
@problems(CustomerNotFound, spend_caps.InvalidSpendCap)
@customer_billing.arguments(SpendCapSetSchema, example={"amount": "50.00", "action": "throttle"})
@customer_billing.response(200, SpendCapSchema)
def set_customer_spend_cap(body: dict[str, Any], customer_id: str) -> dict[str, Any]:
    """Cap what all of a customer's lines together may spend beyond their buckets each billing period."""
    session = db_session()
    customer = get_customer(session, customer_id)
    spend_caps.set_spend_cap(session, amount=body["amount"], action=body["action"], customer_id=customer.id)
    cap = (body["amount"], body["action"])
    _tell_online_charging(session, cap_changed, runtime(), line_id=None, customer_id=customer.id, cap=cap)
    return _spend_cap_of_customer(session, customer.id)


@customer_billing.get("/<customer_id>/spend-cap")
@require("usage:read")
@problems(CustomerNotFound)
@customer_billing.response(200, SpendCapSchema)
def get_customer_spend_cap(customer_id: str) -> dict[str, Any]:
    """A customer's spend cap over all its lines, what they spent this period, and what is left."""
    return _spend_cap_of_customer(db_session(), customer_id)


@customer_billing.delete("/<customer_id>/spend-cap")
@require("usage:write")
@problems(CustomerNotFound)
@customer_billing.response(204)
def remove_customer_spend_cap(customer_id: str) -> None:
    """Remove a customer's spend cap."""
    session = db_session()
    customer = get_customer(session, customer_id)
    if spend_caps.remove_spend_cap(session, customer_id=customer.id):
        _tell_online_charging(session, cap_changed, runtime(), line_id=None, customer_id=customer.id, cap=None)


def _voucher_key() -> bytes:
    return runtime().settings.secret_key.encode()


def _batch_view(session: Session, batch: VoucherBatch, codes: list[str] | None = None) -> dict[str, Any]:
    counts = vouchers.batch_counts(session, batch.id)
    view: dict[str, Any] = {
        "id": batch.id,
        "name": batch.name,
        "amount": batch.amount,
        "currency": batch.currency,
        "count": batch.count,
        "expires_at": batch.expires_at,
        "status": batch.status,
        "created_at": batch.created_at,
        **counts,
    }
    if codes is not None:
        view["codes"] = codes
    return view


@voucher_batches.post("")
@require("billing:write")
@problems(vouchers.InvalidVoucherBatch)
@voucher_batches.arguments(VoucherBatchCreateSchema, example={"name": "Shop cards", "amount": "10.00", "count": 100})
@voucher_batches.response(201, VoucherBatchCreatedSchema)
def create_voucher_batch(body: dict[str, Any]) -> dict[str, Any]:
    """Make a batch of top-up vouchers in the tenant's currency; their codes are in this answer, and nowhere else.

    Send an `Idempotency-Key`: a retried request gets the same batch and codes back, not a second batch.
    """
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    made = vouchers.make_batch(
        session,
        _voucher_key(),
        name=body["name"],
        amount=body["amount"],
        currency=tenant.currency,
        count=body["count"],
        expires_at=body["expires_at"],
    )
    return _batch_view(session, made.batch, made.codes)


@voucher_batches.get("")
@require("billing:read")
@voucher_batches.arguments(PageArgs, location="query")
@voucher_batches.response(200, page_schema(VoucherBatchSchema, "VoucherBatchPage"))
def list_voucher_batches(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's voucher batches, oldest first (without their counts; read one batch for them)."""
    return paginate(db_session(), select(VoucherBatch), VoucherBatch.id, args)


@voucher_batches.get("/<batch_id>")
@require("billing:read")
@problems(vouchers.VoucherBatchNotFound)
@voucher_batches.response(200, VoucherBatchSchema)
def get_voucher_batch(batch_id: str) -> dict[str, Any]:
    """A voucher batch, with how many of its vouchers are unused and redeemed."""
    session = db_session()
    return _batch_view(session, vouchers.get_batch(session, batch_id))


@voucher_batches.post("/<batch_id>/cancel")
@require("billing:write")
@problems(vouchers.VoucherBatchNotFound)
@voucher_batches.response(200, VoucherBatchSchema)
def cancel_voucher_batch(batch_id: str) -> dict[str, Any]:
    """Cancel a batch (lost or stolen cards): its unused vouchers can no longer be redeemed."""
    session = db_session()
    return _batch_view(session, vouchers.cancel_batch(session, batch_id))


@line_usage.post("/<subscription_id>/voucher-redemptions")
@require("usage:write")
@problems(
    SubscriptionNotFound,
    LineCannotTopUp,
    TopUpCurrencyMismatch,
    vouchers.VoucherNotFound,
    vouchers.VoucherUsed,
    vouchers.VoucherExpired,
    vouchers.VoucherCancelled,
)
@line_usage.arguments(VoucherRedeemSchema, example={"code": "1234-5678-9012-3456"})
@line_usage.response(201, BalanceMovementSchema)
def redeem_voucher(body: dict[str, Any], subscription_id: str) -> BalanceMovement:
    """Top up a line's prepaid balance with a voucher code (spaces and dashes ignored); each voucher works once."""
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    movement = vouchers.redeem(session, _voucher_key(), subscription.id, body["code"])
    amount = movement.amount
    _tell_online_charging(session, money_added, runtime(), subscription.id, amount)
    return movement


@line_usage.get("/<subscription_id>/balance-movements")
@require("usage:read")
@problems(SubscriptionNotFound)
@line_usage.arguments(PageArgs, location="query")
@line_usage.response(200, page_schema(BalanceMovementSchema, "BalanceMovementPage"))
def list_balance_movements(args: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    """A line's prepaid balance movements (top-ups, usage paid), oldest first, each with the balance after it."""
    session = db_session()
    subscription = get_subscription(session, subscription_id)
    query = select(BalanceMovement).where(BalanceMovement.subscription_id == subscription.id)
    return paginate(session, query, BalanceMovement.id, args)


@rerating_runs.post("")
@require("usage:write")
@problems(SubscriptionNotFound, InvalidPeriod, ReratingRunInProgress)
@rerating_runs.arguments(ReratingRunCreateSchema, example={"period": "2026-01"})
@rerating_runs.response(202, ReratingRunSchema)
def create_rerating_run(body: dict[str, Any]) -> ReratingRun:
    """Re-rate a period's usage (of one line, or every line) with today's terms and rate cards; follow it with GET.

    Records not invoiced yet are updated in place; an invoiced record gets an adjustment (the difference,
    retail and wholesale) that the customer's next invoice bills as "Re-rating adjustment, usage of <period>".
    A difference of zero writes nothing: re-rating again without a change adds nothing.
    """
    session = db_session()
    return rerating.start_rerating_run(
        session, get_tenant(session, tenant_id()), period=body["period"], subscription_id=body["subscription"]
    )


@rerating_runs.get("")
@require("usage:read")
@rerating_runs.arguments(PageArgs, location="query")
@rerating_runs.response(200, page_schema(ReratingRunSchema, "ReratingRunPage"))
def list_rerating_runs(args: dict[str, Any]) -> dict[str, Any]:
    """List re-rating runs, oldest first."""
    return paginate(db_session(), select(ReratingRun), ReratingRun.id, args)


@rerating_runs.get("/<rerating_run_id>")
@require("usage:read")
@problems(ReratingRunNotFound)
@rerating_runs.response(200, ReratingRunSchema)
def get_rerating_run(rerating_run_id: str) -> ReratingRun:
    """A re-rating run: status, records done of the total, records changed, adjustments written."""
    return rerating.get_rerating_run(db_session(), rerating_run_id)
