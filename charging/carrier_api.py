"""Carrier billing: the tenant's policy and merchants, lines barred, and the merchants' charges and refunds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

from flask_smorest import Blueprint
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from mvne.charging import carrier_billing
from mvne.charging.carrier_billing import (
    CHARGE_SCOPE,
    BalanceCurrencyMismatch,
    CarrierChargeNotFound,
    ChargeNotRefundable,
    ChargeRefused,
    ChargeRequest,
    InvalidCarrierBillingPolicy,
    InvalidRefundAmount,
    MerchantNotFound,
    MerchantReferenceTaken,
    MerchantRequired,
    RefundExceedsCharge,
)
from mvne.charging.carrier_models import CarrierCharge, Merchant
from mvne.charging.carrier_schemas import (
    CarrierBillingPolicyInputSchema,
    CarrierBillingPolicySchema,
    CarrierChargeCreateSchema,
    CarrierChargeListArgs,
    CarrierChargeSchema,
    CarrierRefundCreateSchema,
    CarrierRefundSchema,
    LineCarrierBillingInputSchema,
    LineCarrierBillingSchema,
    MerchantCreatedSchema,
    MerchantCreateSchema,
    MerchantSchema,
)
from mvne.charging.online.service import money_added
from mvne.infra.web.auth import KIND_CLIENT, authenticate, current_principal, require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.provisioning.service import get_subscription
from mvne.tenants.errors import InvalidScopes
from mvne.tenants.service import get_tenant

F = TypeVar("F", bound=Callable[..., Any])

carrier_billing_policy = Blueprint(
    "carrier_billing_policy",
    __name__,
    url_prefix="/v1/tenant/carrier-billing",
    description="Whether merchants may charge the tenant's lines: allowed, capped per line and period, or barred.",
)
line_carrier_billing = Blueprint(
    "line_carrier_billing",
    __name__,
    url_prefix="/v1/subscriptions",
    description="A line barred from carrier billing, whatever the tenant allows.",
)
merchants = Blueprint(
    "merchants",
    __name__,
    url_prefix="/v1/merchants",
    description="Third parties the tenant lets charge its lines, each through an API client of its own.",
)
carrier_charges = Blueprint(
    "carrier_charges",
    __name__,
    url_prefix="/v1/carrier-charges",
    description="Merchants' charges to lines, on the prepaid balance or the next invoice, and their refunds.",
)


def tenant_or_merchant(tenant_scope: str) -> Callable[[F], F]:
    """Protect a view that the tenant (with `tenant_scope`) or a merchant's client (carrier_billing:charge) may call.

    The token's scopes choose which check applies; the view then narrows a merchant to its own charges. The
    document names the tenant's scope; the view's description names the merchant's.
    """

    def decorate(view: F) -> F:
        as_tenant = require(tenant_scope)(view)
        as_merchant = require(CHARGE_SCOPE, kinds=(KIND_CLIENT,))(view)

        @functools.wraps(as_tenant)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            scopes = authenticate(None).scopes
            chosen = as_merchant if CHARGE_SCOPE in scopes and tenant_scope not in scopes else as_tenant
            return chosen(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _merchant_or_tenant(session: Session, tenant_scope: str) -> Merchant | None:
    """The calling merchant, or None for the tenant; a client that is neither a merchant's nor holds the tenant's
    scope is refused."""
    principal = current_principal()
    merchant = carrier_billing.merchant_of_client(session, principal.client_id)
    if merchant is None and tenant_scope not in principal.scopes:
        raise MerchantRequired(f"Only a merchant's client, or a token with {tenant_scope}, may do this.")
    return merchant


def _present(session: Session, charges: list[CarrierCharge]) -> list[dict[str, Any]]:
    refunds = carrier_billing.refunds_of(session, [c.id for c in charges])
    return [carrier_billing.present_charge(c, refunds[c.id]) for c in charges]


def _policy_view(rules: carrier_billing.Policy) -> dict[str, Any]:
    return {"mode": rules.mode, "monthly_cap": rules.monthly_cap}


@carrier_billing_policy.get("")
@require("tenant:read")
@carrier_billing_policy.response(200, CarrierBillingPolicySchema)
def get_carrier_billing_policy() -> dict[str, Any]:
    """The tenant's carrier billing policy: barred until the tenant chooses."""
    return _policy_view(carrier_billing.policy(db_session()))


@carrier_billing_policy.put("")
@require("tenant:write")
@problems(InvalidCarrierBillingPolicy)
@carrier_billing_policy.arguments(CarrierBillingPolicyInputSchema, example={"mode": "capped", "monthly_cap": "20.00"})
@carrier_billing_policy.response(200, CarrierBillingPolicySchema)
def put_carrier_billing_policy(body: dict[str, Any]) -> dict[str, Any]:
    """Allow merchants to charge the tenant's lines, cap what each line may be charged per billing period, or bar them.

    A cap is in the tenant's currency, required when the mode is `capped` (422 `invalid_carrier_billing_policy`);
    a charge that takes the line's charges of the period above it is refused (`monthly_cap_exceeded`).
    """
    session = db_session()
    rules = carrier_billing.set_policy(
        session, get_tenant(session, tenant_id()), mode=body["mode"], monthly_cap=body["monthly_cap"]
    )
    return _policy_view(rules)


def _line_view(subscription_id: str, barred: bool) -> dict[str, Any]:
    return {"subscription": subscription_id, "barred": barred}


@line_carrier_billing.get("/<subscription_id>/carrier-billing")
@require("subscriptions:read")
@problems(SubscriptionNotFound)
@line_carrier_billing.response(200, LineCarrierBillingSchema)
def get_line_carrier_billing(subscription_id: str) -> dict[str, Any]:
    """Whether the line is barred from carrier billing."""
    session = db_session()
    line = get_subscription(session, subscription_id)
    return _line_view(line.id, carrier_billing.line_barred(session, line.id))


@line_carrier_billing.put("/<subscription_id>/carrier-billing")
@require("subscriptions:write")
@problems(SubscriptionNotFound)
@line_carrier_billing.arguments(LineCarrierBillingInputSchema, example={"barred": True})
@line_carrier_billing.response(200, LineCarrierBillingSchema)
def put_line_carrier_billing(body: dict[str, Any], subscription_id: str) -> dict[str, Any]:
    """Bar the line from carrier billing (every merchant's charge is refused, `line_barred`), or lift the bar."""
    session = db_session()
    line = get_subscription(session, subscription_id)
    return _line_view(line.id, carrier_billing.set_line_barred(session, line.id, body["barred"]))


@merchants.post("")
@require("api_clients:write")
@problems(InvalidScopes)
@merchants.arguments(MerchantCreateSchema, example={"name": "Arcade Games"})
@merchants.response(201, MerchantCreatedSchema)
def create_merchant(body: dict[str, Any]) -> dict[str, Any]:
    """Add a merchant and issue its API client (scope `carrier_billing:charge`); the secret is in this answer only.

    A token of that client charges as this merchant, and only as it. The calling token must hold
    `carrier_billing:charge` itself (422 `invalid_scopes` otherwise). Rotate or revoke the client's secret
    with `/v1/api-clients/{id}`.
    """
    session = db_session()
    granted = tuple(s for s in (CHARGE_SCOPE,) if s in current_principal().scopes)
    merchant, issued = carrier_billing.create_merchant(
        session, tenant_id=tenant_id(), name=body["name"], allowed=granted
    )
    view = {c.key: getattr(merchant, c.key) for c in Merchant.__table__.columns}
    return {**view, "client_id": issued.client_id, "client_secret": issued.client_secret, "scopes": issued.scopes}


@merchants.get("")
@require("api_clients:read")
@merchants.arguments(PageArgs, location="query")
@merchants.response(200, page_schema(MerchantSchema, "MerchantPage"))
def list_merchants(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's merchants, oldest first, suspended ones included."""
    return paginate(db_session(), select(Merchant), Merchant.id, args, prefix="mer")


@merchants.get("/<merchant_id>")
@require("api_clients:read")
@problems(MerchantNotFound)
@merchants.response(200, MerchantSchema)
def get_merchant(merchant_id: str) -> Merchant:
    """One of the tenant's merchants."""
    return carrier_billing.get_merchant(db_session(), merchant_id)


@merchants.post("/<merchant_id>/suspend")
@require("api_clients:write")
@problems(MerchantNotFound)
@merchants.response(200, MerchantSchema)
def suspend_merchant(merchant_id: str) -> Merchant:
    """Suspend a merchant: its charges are refused (`merchant_suspended`); what it charged stays as it is."""
    return carrier_billing.set_merchant_status(db_session(), merchant_id, "suspended")


@merchants.post("/<merchant_id>/reactivate")
@require("api_clients:write")
@problems(MerchantNotFound)
@merchants.response(200, MerchantSchema)
def reactivate_merchant(merchant_id: str) -> Merchant:
    """Let a suspended merchant charge again."""
    return carrier_billing.set_merchant_status(db_session(), merchant_id, "active")


@carrier_charges.post("")
@require(CHARGE_SCOPE, kinds=(KIND_CLIENT,))
@problems(
    MerchantRequired,
    MerchantReferenceTaken,
    BalanceCurrencyMismatch,
    *carrier_billing.REFUSALS,
)
@carrier_charges.arguments(
    CarrierChargeCreateSchema,
    example={
        "subscription": "sub_01M8NHTM21YRHT2QG60D9HJAWD",
        "amount": "4.99",
        "description": "1,000 gems",
        "merchant_reference": "order-7731",
    },
)
@carrier_charges.response(201, CarrierChargeSchema)
def create_carrier_charge(body: dict[str, Any]) -> dict[str, Any]:
    """Charge a line as the calling merchant: a prepaid line pays from its balance at once, a postpaid one on its
    next invoice.

    A refusal is answered with its code (carrier_billing_barred, line_barred, monthly_cap_exceeded,
    insufficient_balance, line_not_active, subscription_not_found, merchant_suspended, invalid_amount) and kept
    as a refused charge the tenant lists. Send an `Idempotency-Key`: a charge retried is made once.
    """
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    merchant = carrier_billing.merchant_of_client(session, current_principal().client_id)
    if merchant is None:
        raise MerchantRequired("This client is not a merchant's: only a merchant's client charges.")
    request = ChargeRequest(
        amount=body["amount"],
        description=body["description"],
        subscription_id=body["subscription"],
        msisdn=body["msisdn"],
        merchant_reference=body["merchant_reference"],
    )
    owner, merchant_id = tenant.id, merchant.id
    try:
        found = carrier_billing.charge(session, tenant, merchant, request)
    except ChargeRefused as refused:
        # The request's transaction is rolled back with the refusal; the refused charge is kept in one of its own.
        session.rollback()
        with runtime().db.transaction(tenant_id=owner) as own:
            carrier_billing.record_refusal(
                own, tenant_id=owner, merchant_id=merchant_id, request=request, refused=refused
            )
        raise
    if found.payment == "balance":
        _tell_engine(session, found.subscription_id, -found.amount)
    return carrier_billing.present_charge(found, [])


def _tell_engine(session: Session, line_id: str | None, amount: Decimal) -> None:
    """The online engine's account of the line, if it holds one, learns of the money once it is committed.

    A charge is money taken away: told as a negative amount, so the engine grants no more than is left.
    """
    if line_id is not None:
        event.listen(session, "after_commit", lambda _: money_added(runtime(), line_id, amount), once=True)


@carrier_charges.get("")
@tenant_or_merchant("billing:read")
@problems(MerchantRequired)
@carrier_charges.arguments(CarrierChargeListArgs, location="query")
@carrier_charges.response(200, page_schema(CarrierChargeSchema, "CarrierChargePage"))
def list_carrier_charges(args: dict[str, Any]) -> dict[str, Any]:
    """Charges, oldest first, refused ones included (`status=refused` for those alone); filter by line.

    A merchant's client (scope `carrier_billing:charge`) lists its own charges only.
    """
    session = db_session()
    merchant = _merchant_or_tenant(session, "billing:read")
    stmt = carrier_billing.charges_query(
        merchant_id=merchant.id if merchant is not None else None,
        status=args.get("status"),
        subscription_id=args.get("subscription"),
    )
    page = paginate(session, stmt, CarrierCharge.id, args, prefix="cch")
    return {"data": _present(session, page["data"]), "has_more": page["has_more"]}


@carrier_charges.get("/<carrier_charge_id>")
@tenant_or_merchant("billing:read")
@problems(CarrierChargeNotFound, MerchantRequired)
@carrier_charges.response(200, CarrierChargeSchema)
def get_carrier_charge(carrier_charge_id: str) -> dict[str, Any]:
    """One charge with its refunds. A merchant's client (scope `carrier_billing:charge`) sees its own only."""
    session = db_session()
    merchant = _merchant_or_tenant(session, "billing:read")
    found = carrier_billing.get_charge(
        session, carrier_charge_id, merchant_id=merchant.id if merchant is not None else None
    )
    return _present(session, [found])[0]


@carrier_charges.post("/<carrier_charge_id>/refunds")
@tenant_or_merchant("billing:write")
@problems(CarrierChargeNotFound, MerchantRequired, ChargeNotRefundable, RefundExceedsCharge, InvalidRefundAmount)
@carrier_charges.arguments(CarrierRefundCreateSchema, example={"amount": "1.00"})
@carrier_charges.response(201, CarrierRefundSchema)
def create_carrier_refund(body: dict[str, Any], carrier_charge_id: str) -> Any:
    """Refund part or all of a charge, never more than charged less refunded (409 `refund_exceeds_charge`).

    A prepaid charge's refund goes back to the balance; a postpaid charge not invoiced yet bills less; one
    already invoiced is credited on the next invoice. The tenant (scope `billing:write`) refunds any charge,
    a merchant's client (scope `carrier_billing:charge`) its own.
    """
    session = db_session()
    merchant = _merchant_or_tenant(session, "billing:write")
    refund = carrier_billing.refund_charge(
        session,
        carrier_charge_id,
        body["amount"],
        requested_by="merchant" if merchant is not None else "tenant",
        merchant_id=merchant.id if merchant is not None else None,
    )
    if refund.settlement == "balance":
        _tell_engine(session, refund.subscription_id, refund.amount)
    return refund
