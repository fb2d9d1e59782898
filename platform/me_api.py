"""`/v1/me`: a subscriber, signed in through one of the tenant's apps, reads their own profile, lines, usage,
invoices and eSIM, and sets their password.

Every read is narrowed to the caller's customer: another subscriber's line or invoice, in this tenant or
another, is answered exactly as one that does not exist (404). Only subscribers' tokens are let in.
"""

from __future__ import annotations

import base64
from typing import Any

from flask import Response, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.charging import billing, usage
from mvne.charging.api import present_invoice
from mvne.charging.errors import InvoiceNotFound
from mvne.charging.models import Invoice
from mvne.charging.schemas import InvoiceSchema, MyBalancesSchema, UsageSummaryArgs, UsageSummarySchema
from mvne.esim.errors import EsimNotReady
from mvne.esim.models import Sim
from mvne.esim.qr import activation_qr_png, activation_qr_svg
from mvne.infra.db import utcnow
from mvne.infra.fields import Text
from mvne.infra.web.auth import KIND_SUBSCRIBER, current_principal, require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import ProblemError, problems
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.provisioning.models import Subscription
from mvne.tenants import subscribers
from mvne.tenants.errors import AccountLocked, WeakPassword, WrongPassword
from mvne.tenants.models import Customer, SubscriberAccount
from mvne.tenants.service import get_tenant

me = Blueprint(
    "me",
    __name__,
    url_prefix="/v1/me",
    description="The signed-in subscriber's own account, lines, usage, invoices and eSIM (tokens from the "
    "authorization code flow of the tenant's apps).",
)
SUBSCRIBERS = (KIND_SUBSCRIBER,)


class MeSchema(Schema):
    account = fields.String(metadata={"description": "The subscriber account's id."})
    customer = fields.String(metadata={"description": "The customer the account signs in for."})
    name = fields.String()
    email = fields.String()
    has_password = fields.Boolean(
        metadata={"description": "Whether a password is set (a code by e-mail always works)."}
    )
    created_at = fields.AwareDateTime()
    last_login_at = fields.AwareDateTime(allow_none=True)


class PasswordChangeSchema(Schema):
    current_password = Text(
        max_length=1024, metadata={"description": "Required when the account has a password already."}
    )
    new_password = Text(
        required=True,
        max_length=1024,
        metadata={"description": "10 to 128 characters, not guessable; a passphrase of four unrelated words works."},
    )


class LineOfferSchema(Schema):
    id = fields.String()
    code = fields.String()
    name = fields.String()


class MyLineSchema(Schema):
    id = fields.String()
    msisdn = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": ["pending", "active", "suspended", "failed", "terminated"]})
    sim_type = fields.String()
    iccid = fields.String(allow_none=True)
    offer = fields.Nested(LineOfferSchema)
    created_at = fields.AwareDateTime()
    activated_at = fields.AwareDateTime(allow_none=True)


class MyEsimSchema(Schema):
    subscription = fields.String()
    iccid = fields.String()
    state = fields.String(allow_none=True, metadata={"description": "The profile's state at the SM-DP+."})
    activation_code = fields.String(metadata={"description": "LPA:1$<SM-DP+ address>$<matching id>"})
    qr_code_png = fields.String(metadata={"description": "The activation code as a QR code: a data: URI of a PNG."})
    qr_code_svg = fields.String(metadata={"description": "The same QR code as a data: URI of an SVG."})


def my_account(session: Session) -> SubscriberAccount:
    """The caller's account (its standing, active, was checked with the token)."""
    account = subscribers.get_account(session, str(current_principal().subject))
    if account is None:  # closed between the token check and now
        raise ProblemError(401, "unauthenticated", "A valid bearer token is required.")
    return account


def my_line(session: Session, subscription_id: str) -> Subscription:
    """One of the caller's lines; anyone else's is not found, like a line that does not exist."""
    line = session.get(Subscription, subscription_id)
    if line is None or line.customer_id != my_account(session).customer_id:
        raise SubscriptionNotFound(f"No subscription {subscription_id}.")
    return line


def my_invoice(session: Session, invoice_id: str) -> Invoice:
    invoice = session.get(Invoice, invoice_id)
    if invoice is None or invoice.customer_id != my_account(session).customer_id:
        raise InvoiceNotFound(f"No invoice {invoice_id}.")
    return invoice


def present_line(session: Session, line: Subscription) -> dict[str, Any]:
    sim = session.get(Sim, line.sim_id) if line.sim_id else None
    offer = session.get(Offer, line.offer_id)
    return {
        "id": line.id,
        "msisdn": line.msisdn,
        "status": line.status,
        "sim_type": line.sim_type,
        "iccid": sim.iccid if sim else None,
        "offer": {"id": offer.id, "code": offer.code, "name": offer.name} if offer else None,
        "created_at": line.created_at,
        "activated_at": line.activated_at,
    }


def present_my_invoice(session: Session, invoice: Invoice) -> dict[str, Any]:
    view = present_invoice(session, invoice)
    view["pdf_url"] = url_for("me.get_my_invoice_pdf", invoice_id=invoice.id, _external=True)
    return view


@me.get("")
@require("me:read", kinds=SUBSCRIBERS)
@me.response(200, MeSchema)
def get_me() -> dict[str, Any]:
    """The signed-in subscriber: their account, name and e-mail."""
    session = db_session()
    account = my_account(session)
    customer = session.get(Customer, account.customer_id)
    return {
        "account": account.id,
        "customer": account.customer_id,
        "name": customer.name if customer else None,
        "email": account.email,
        "has_password": account.password_hash is not None,
        "created_at": account.created_at,
        "last_login_at": account.last_login_at,
    }


@me.put("/password")
@require("me:write", kinds=SUBSCRIBERS)
@problems(WeakPassword, WrongPassword, AccountLocked)
@me.arguments(
    PasswordChangeSchema,
    example={"current_password": "correct horse battery staple", "new_password": "violet quarry lantern marmalade"},
)
@me.response(204)
def put_my_password(body: dict[str, Any]) -> None:
    """Set a password for signing in (or change it: the current one is then required); 422 names what is wrong."""
    principal = current_principal()
    refused: Exception | None = None
    # In a transaction of its own: a wrong current password counts toward the lock even though this request fails.
    with runtime().db.transaction(tenant_id=principal.tenant_id) as session:
        try:
            subscribers.check_current_password(session, str(principal.subject), body.get("current_password"))
        except (WrongPassword, AccountLocked) as error:
            refused = error
    if refused is not None:
        raise refused
    session = db_session()
    subscribers.set_password(session, my_account(session), body["new_password"])


@me.get("/lines")
@require("me:read", kinds=SUBSCRIBERS)
@me.arguments(PageArgs, location="query")
@me.response(200, page_schema(MyLineSchema, "MyLinePage"))
def list_my_lines(args: dict[str, Any]) -> dict[str, Any]:
    """The subscriber's lines, oldest first: number, status and offer."""
    session = db_session()
    stmt = select(Subscription).where(Subscription.customer_id == my_account(session).customer_id)
    page = paginate(session, stmt, Subscription.id, args, prefix="sub")
    return {"data": [present_line(session, line) for line in page["data"]], "has_more": page["has_more"]}


@me.get("/lines/<subscription_id>")
@require("me:read", kinds=SUBSCRIBERS)
@problems(SubscriptionNotFound)
@me.response(200, MyLineSchema)
def get_my_line(subscription_id: str) -> dict[str, Any]:
    """One of the subscriber's lines."""
    session = db_session()
    return present_line(session, my_line(session, subscription_id))


@me.get("/lines/<subscription_id>/usage")
@require("me:read", kinds=SUBSCRIBERS)
@problems(SubscriptionNotFound)
@me.arguments(UsageSummaryArgs, location="query")
@me.response(200, UsageSummarySchema)
def get_my_line_usage(args: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    """A line's usage in a period (the current one by default), per service, against its allowances."""
    session = db_session()
    line = my_line(session, subscription_id)
    period = args.get("period") or usage.period_of(utcnow(), get_tenant(session, tenant_id()).timezone)
    return {"subscription": line.id, "period": period, "services": usage.usage_summary(session, line, period)}


@me.get("/balances")
@require("me:read", kinds=SUBSCRIBERS)
@me.response(200, MyBalancesSchema)
def get_my_balances() -> dict[str, Any]:
    """What is left on each of the subscriber's lines now: every bucket valid now, in the order usage consumes them."""
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    lines = session.scalars(
        select(Subscription)
        .where(
            Subscription.customer_id == my_account(session).customer_id,
            Subscription.activated_at.is_not(None),
            Subscription.terminated_at.is_(None),
        )
        .order_by(Subscription.id)
    )
    return {"lines": [usage.balances(session, tenant, line) for line in lines]}


@me.get("/lines/<subscription_id>/esim")
@require("me:read", kinds=SUBSCRIBERS)
@problems(SubscriptionNotFound, EsimNotReady)
@me.response(200, MyEsimSchema)
def get_my_esim(subscription_id: str) -> dict[str, Any]:
    """A line's eSIM activation code, and the same as a QR code to scan from another device; 409 until released."""
    session = db_session()
    line = my_line(session, subscription_id)
    sim = session.get(Sim, line.sim_id) if line.sim_id else None
    if sim is None or not sim.activation_code:
        raise EsimNotReady(f"The eSIM of line {line.id} is not ready yet; try again once the line is active.")
    png = base64.b64encode(activation_qr_png(sim.activation_code)).decode()
    svg = base64.b64encode(activation_qr_svg(sim.activation_code)).decode()
    return {
        "subscription": line.id,
        "iccid": sim.iccid,
        "state": sim.smdp_state,
        "activation_code": sim.activation_code,
        "qr_code_png": f"data:image/png;base64,{png}",
        "qr_code_svg": f"data:image/svg+xml;base64,{svg}",
    }


@me.get("/invoices")
@require("me:read", kinds=SUBSCRIBERS)
@me.arguments(PageArgs, location="query")
@me.response(200, page_schema(InvoiceSchema, "MyInvoicePage"))
def list_my_invoices(args: dict[str, Any]) -> dict[str, Any]:
    """The subscriber's invoices, oldest first."""
    session = db_session()
    stmt = select(Invoice).where(Invoice.customer_id == my_account(session).customer_id)
    page = paginate(session, stmt, Invoice.id, args, prefix="inv")
    return {"data": [present_my_invoice(session, i) for i in page["data"]], "has_more": page["has_more"]}


@me.get("/invoices/<invoice_id>")
@require("me:read", kinds=SUBSCRIBERS)
@problems(InvoiceNotFound)
@me.response(200, InvoiceSchema)
def get_my_invoice(invoice_id: str) -> dict[str, Any]:
    """One of the subscriber's invoices, with its lines and totals."""
    session = db_session()
    return present_my_invoice(session, my_invoice(session, invoice_id))


@me.get("/invoices/<invoice_id>/pdf")
@require("me:read", kinds=SUBSCRIBERS)
@problems(InvoiceNotFound)
@me.response(200, {"type": "string", "format": "binary"}, content_type="application/pdf")
def get_my_invoice_pdf(invoice_id: str) -> Response:
    """One of the subscriber's invoices as a PDF document."""
    # Not the request's session: rendering uses short transactions of its own, and so does this check.
    with runtime().db.transaction(tenant_id=tenant_id()) as session:
        my_invoice(session, invoice_id)
    number, pdf = billing.invoice_pdf(runtime().db, runtime().storage, tenant_id=tenant_id(), invoice_id=invoice_id)
    return Response(
        pdf, mimetype="application/pdf", headers={"Content-Disposition": f'inline; filename="{number}.pdf"'}
    )
