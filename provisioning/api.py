"""Subscriptions (lines) of the calling tenant."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog.errors import (
    OfferNotFound,
    OfferNotPublished,
    OfferRetired,
    PromotionExhausted,
    PromotionExpired,
    PromotionNotApplicable,
    PromotionUnknown,
)
from mvne.esim.models import Sim
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, tenant_id
from mvne.infra.web.files import file_url
from mvne.infra.web.pagination import page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.provisioning import service
from mvne.provisioning.errors import SandboxOnly, SubscriptionNotFound, UnsupportedSimType
from mvne.provisioning.models import Subscription
from mvne.provisioning.schemas import SubscriptionCreateSchema, SubscriptionListArgs, SubscriptionSchema
from mvne.tenants.errors import CustomerNotFound

subscriptions = Blueprint(
    "subscriptions",
    __name__,
    url_prefix="/v1/subscriptions",
    description="Mobile lines: order, follow activation, read eSIM details.",
)


def present(session: Session, sub: Subscription) -> dict[str, Any]:
    """A subscription with its eSIM details, as the API shows it."""
    sim = session.get(Sim, sub.sim_id) if sub.sim_id else None
    view = {
        c: getattr(sub, c)
        for c in (
            "id",
            "customer_id",
            "offer_id",
            "sim_type",
            "status",
            "msisdn",
            "failure_code",
            "failure_reason",
            "test_scenario",
            "created_at",
            "activated_at",
        )
    }
    view["iccid"] = sim.iccid if sim else None
    view["esim"] = (
        None
        if sim is None
        else {
            "iccid": sim.iccid,
            "state": sim.smdp_state,
            "activation_code": sim.activation_code,
            "matching_id": sim.matching_id,
            "qr_code_url": file_url(sim.qr_key) if sim.qr_key else None,
        }
    )
    return view


@subscriptions.post("")
@require("subscriptions:write")
@problems(
    CustomerNotFound,
    OfferNotFound,
    OfferNotPublished,
    OfferRetired,
    UnsupportedSimType,
    SandboxOnly,
    PromotionUnknown,
    PromotionExpired,
    PromotionExhausted,
    PromotionNotApplicable,
)
@subscriptions.arguments(
    SubscriptionCreateSchema,
    example={
        "customer": "cus_01M8NHTM21YRHT2QG60D9HJAWB",
        "offer": "off_01M8NHTM21YRHT2QG60D9HJAWC",
        "sim_type": "esim",
    },
)
@subscriptions.response(202, SubscriptionSchema)
def create_subscription(body: dict[str, Any]) -> dict[str, Any]:
    """Order a line; it starts `pending` and becomes `active` once the eSIM and network are ready.

    A sandbox tenant may add a `test_scenario` to script the outcome (GET /v1/sandbox/test-numbers).
    """
    session = db_session()
    sub = service.request_subscription(
        session,
        tenant_id=tenant_id(),
        customer_id=body["customer"],
        offer_id=body["offer"],
        sim_type=body["sim_type"],
        test_scenario=body.get("test_scenario"),
        promotion_code=body.get("promotion_code"),
    )
    return present(session, sub)


@subscriptions.get("")
@require("subscriptions:read")
@subscriptions.arguments(SubscriptionListArgs, location="query")
@subscriptions.response(200, page_schema(SubscriptionSchema, "SubscriptionPage"))
def list_subscriptions(args: dict[str, Any]) -> dict[str, Any]:
    """List lines, oldest first; filter by customer or status."""
    session = db_session()
    stmt = select(Subscription)
    if args.get("customer"):
        stmt = stmt.where(Subscription.customer_id == args["customer"])
    if args.get("status"):
        stmt = stmt.where(Subscription.status == args["status"])
    page = paginate(session, stmt, Subscription.id, args)
    return {"data": [present(session, s) for s in page["data"]], "has_more": page["has_more"]}


@subscriptions.get("/<subscription_id>")
@require("subscriptions:read")
@problems(SubscriptionNotFound)
@subscriptions.response(200, SubscriptionSchema)
def get_subscription(subscription_id: str) -> dict[str, Any]:
    """One line, with its number and eSIM activation code."""
    session = db_session()
    return present(session, service.get_subscription(session, subscription_id))
