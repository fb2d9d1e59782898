"""Offers of the calling tenant."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select

from mvne.catalog import service
from mvne.catalog.errors import OfferCodeTaken, OfferNotFound, OfferNotPublishable
from mvne.catalog.models import Offer
from mvne.catalog.schemas import OfferCreateSchema, OfferSchema
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants.service import get_tenant

offers = Blueprint("offers", __name__, url_prefix="/v1/offers", description="What a tenant sells.")


@offers.post("")
@require("offers:write")
@problems(OfferCodeTaken)
@offers.arguments(
    OfferCreateSchema,
    example={
        "code": "PLAN-10GB",
        "name": "10 GB, 300 minutes",
        "price": "9.99",
        "allowances": {"data_mb": 10240, "voice_minutes": 300, "sms": 100},
        "overage": {"data_per_mb": "0.010000", "voice_per_minute": "0.050000", "sms_per_message": "0.050000"},
    },
)
@offers.response(201, OfferSchema)
def create_offer(body: dict[str, Any]) -> Offer:
    """Create a draft offer in the tenant's currency."""
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    allowances, overage = body["allowances"], body["overage"]
    terms = service.OfferTerms(
        price=body["price"],
        data_mb=allowances["data_mb"],
        voice_minutes=allowances["voice_minutes"],
        sms=allowances["sms"],
        overage_data_per_mb=overage["data_per_mb"],
        overage_voice_per_minute=overage["voice_per_minute"],
        overage_sms_per_message=overage["sms_per_message"],
    )
    return service.create_offer(session, code=body["code"], name=body["name"], currency=tenant.currency, terms=terms)


@offers.get("")
@require("offers:read")
@offers.arguments(PageArgs, location="query")
@offers.response(200, page_schema(OfferSchema, "OfferPage"))
def list_offers(args: dict[str, Any]) -> dict[str, Any]:
    """List offers, oldest first."""
    return paginate(db_session(), select(Offer), Offer.id, args)


@offers.get("/<offer_id>")
@require("offers:read")
@problems(OfferNotFound)
@offers.response(200, OfferSchema)
def get_offer(offer_id: str) -> Offer:
    """One offer."""
    return service.get_offer(db_session(), offer_id)


@offers.post("/<offer_id>/publish")
@require("offers:write")
@problems(OfferNotFound, OfferNotPublishable)
@offers.response(200, OfferSchema)
def publish_offer(offer_id: str) -> Offer:
    """Make a draft offer available to new subscriptions."""
    return service.publish_offer(db_session(), offer_id)
