"""Offers of the calling tenant, their versions, and its promotions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from flask_smorest import Blueprint
from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog import promotions as promotion_service
from mvne.catalog import service
from mvne.catalog.errors import (
    InvalidAllowance,
    InvalidOfferTerms,
    InvalidPromotion,
    OfferCodeTaken,
    OfferNotFound,
    OfferNotPublishable,
    OfferNotPublished,
    OfferRetired,
    OfferVersionNotFound,
    PromotionCodeTaken,
    PromotionNotFound,
    RateCardUnknown,
    VersionDateRequired,
    VersionDatesOverlap,
    VersionEffectiveInPast,
    VersionImmutable,
)
from mvne.catalog.models import Offer, OfferVersion, Promotion
from mvne.catalog.schemas import (
    OfferCreateSchema,
    OfferSchema,
    OfferVersionCreateSchema,
    OfferVersionSchema,
    OfferVersionUpdateSchema,
    PromotionCreateSchema,
    PromotionSchema,
)
from mvne.infra.fields import as_date
from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, tenant_id
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants.service import get_tenant

offers = Blueprint("offers", __name__, url_prefix="/v1/offers", description="What a tenant sells.")
promotions = Blueprint(
    "promotions", __name__, url_prefix="/v1/promotions", description="Discount codes on fees and purchases."
)

OFFER_EXAMPLE = {
    "code": "PLAN-10GB",
    "name": "10 GB, 300 minutes",
    "price": "9.99",
    "allowances": {"data_mb": 10240, "voice_minutes": 300, "sms": 100},
    "overage": {"data_per_mb": "0.010000", "voice_per_minute": "0.050000", "sms_per_message": "0.050000"},
    "zone_allowances": [{"service": "data", "zone": "home", "amount": 10240, "roam_like_at_home": True}],
    "charges": [{"code": "activation", "name": "Activation", "amount": "10.00"}],
}
VERSION_EXAMPLE = {
    "price": "11.99",
    "allowances": [
        {"service": "data", "zone": "home", "amount": 20480, "roam_like_at_home": True, "eu_fair_use_amount": 8000},
        {"service": "voice", "zone": "home", "unlimited": True, "fair_use_amount": 3000},
        {"service": "sms", "zone": "home", "amount": 100},
    ],
    "usage_prices": {"home": {"data": "0.01", "voice": "0.05", "sms": "0.05"}},
    "effective_from": "2027-01-01",
    "existing_subscribers": "at_renewal",
}


def view_allowance(data: dict[str, Any]) -> dict[str, Any]:
    return {**service.Allowance.from_json(data).as_json(), "unlimited": data.get("amount") is None}


def present_version(version: OfferVersion) -> dict[str, Any]:
    view = {
        name: getattr(version, name)
        for name in (
            "id",
            "offer_id",
            "number",
            "status",
            "effective_from",
            "effective_from_at",
            "effective_to_at",
            "price",
            "tax_category",
            "rate_card_id",
            "validity_days",
            "includes",
            "existing_subscribers",
            "move_on",
            "created_at",
            "published_at",
        )
    }
    view["charges"] = [{**c, "amount": Decimal(str(c["amount"]))} for c in version.charges]
    view["allowances"] = [view_allowance(a) for a in version.allowances]
    view["usage_prices"] = {
        zone: {service_: Decimal(str(price)) for service_, price in prices.items()}
        for zone, prices in version.usage_prices.items()
    }
    return view


def present_offer(offer: Offer, version: OfferVersion | None) -> dict[str, Any]:
    """An offer with its current version's terms; price, allowances and overage keep the first offers' shape."""
    view = {
        name: getattr(offer, name)
        for name in (
            "id",
            "code",
            "name",
            "description",
            "kind",
            "status",
            "public",
            "currency",
            "created_at",
            "published_at",
            "retired_at",
        )
    }
    if version is None:
        return view
    home: dict[str, int | None] = {"data": 0, "voice": 0, "sms": 0, "mms": 0}
    for allowance in version.allowances:
        if allowance.get("zone", "home") == "home" and allowance.get("service") in home:
            home[allowance["service"]] = allowance.get("amount")
    prices = version.usage_prices.get("home", {})
    view["price"] = version.price
    view["allowances"] = {
        "data_mb": home["data"],
        "voice_minutes": home["voice"],
        "sms": home["sms"],
        "mms": home["mms"],
    }
    view["overage"] = {
        "data_per_mb": Decimal(str(prices.get("data", "0"))),
        "voice_per_minute": Decimal(str(prices.get("voice", "0"))),
        "sms_per_message": Decimal(str(prices.get("sms", "0"))),
        "mms_per_message": Decimal(str(prices["mms"])) if "mms" in prices else None,
    }
    view["current_version"] = present_version(version)
    return view


def _present(session: Session, offer: Offer) -> dict[str, Any]:
    return present_offer(offer, service.current_version(session, offer.id))


def _allowance(data: dict[str, Any]) -> service.Allowance:
    unlimited = data.get("unlimited", False)
    if unlimited and data.get("amount") is not None:
        raise InvalidAllowance(
            "An unlimited allowance states no amount.", errors={"allowances": ["Give amount or unlimited, not both."]}
        )
    if not unlimited and data.get("amount") is None:
        raise InvalidAllowance(
            "An allowance states its amount, or is unlimited.", errors={"allowances": ["amount is required."]}
        )
    return service.Allowance(
        service=data["service"],
        zone=data.get("zone", "home"),
        amount=None if unlimited else data["amount"],
        fair_use_amount=data.get("fair_use_amount"),
        roam_like_at_home=data.get("roam_like_at_home", False),
        eu_fair_use_amount=data.get("eu_fair_use_amount"),
        rollover_cap=data.get("rollover_cap", 0),
        priority=data.get("priority", 100),
    )


def _prices(data: dict[str, Any]) -> dict[str, dict[str, Decimal]]:
    return {zone: dict(prices) for zone, prices in data.items()}


def _charges(items: list[dict[str, Any]]) -> tuple[service.OneTimeCharge, ...]:
    return tuple(
        service.OneTimeCharge(c["code"], c["name"], c["amount"], c.get("tax_category", "standard")) for c in items
    )


def _offer_terms(body: dict[str, Any]) -> service.VersionTerms:
    """The old flat body (home allowances and overage) with the newer optional terms laid over it."""
    flat, overage = body["allowances"], body["overage"]
    zoned = [_allowance(a) for a in body.get("zone_allowances", [])]
    replaced = {a.service for a in zoned if a.zone == "home"}
    allowances = [
        service.Allowance(name, "home", flat[key])
        for name, key in (("data", "data_mb"), ("voice", "voice_minutes"), ("sms", "sms"), ("mms", "mms"))
        # An offer without MMS states none: no empty bucket on every line.
        if name not in replaced and (name != "mms" or flat.get("mms"))
    ] + zoned
    prices = _prices(body.get("usage_prices", {}))
    prices["home"] = {
        **prices.get("home", {}),
        "data": overage["data_per_mb"],
        "voice": overage["voice_per_minute"],
        "sms": overage["sms_per_message"],
    }
    if overage.get("mms_per_message") is not None:
        prices["home"]["mms"] = overage["mms_per_message"]
    return service.VersionTerms(
        price=body["price"],
        allowances=tuple(allowances),
        usage_prices=prices,
        tax_category=body.get("tax_category", "standard"),
        charges=_charges(body.get("charges", [])),
        rate_card_id=body.get("rate_card_id"),
        validity_days=body.get("validity_days"),
        includes=tuple(body.get("includes", [])),
    )


def _version_terms(body: dict[str, Any], base: service.VersionTerms | None = None) -> service.VersionTerms:
    """A version's full terms from a body; on a PATCH, the fields left out keep the draft's."""
    values: dict[str, Any] = {}
    if "price" in body:
        values["price"] = body["price"]
    if "allowances" in body:
        values["allowances"] = tuple(_allowance(a) for a in body["allowances"])
    if "usage_prices" in body:
        values["usage_prices"] = _prices(body["usage_prices"])
    if "tax_category" in body:
        values["tax_category"] = body["tax_category"]
    if "charges" in body:
        values["charges"] = _charges(body["charges"])
    for name in ("rate_card_id", "validity_days"):
        if name in body:
            values[name] = body[name]
    if "includes" in body:
        values["includes"] = tuple(body["includes"])
    if base is None:
        return service.VersionTerms(**values)
    return service.VersionTerms(**{**base.__dict__, **values})


TERMS_PROBLEMS = (InvalidAllowance, InvalidOfferTerms, RateCardUnknown)


@offers.post("")
@require("offers:write")
@problems(OfferCodeTaken, *TERMS_PROBLEMS)
@offers.arguments(OfferCreateSchema, example=OFFER_EXAMPLE)
@offers.response(201, OfferSchema)
def create_offer(body: dict[str, Any]) -> dict[str, Any]:
    """Create a draft offer in the tenant's currency, its terms as draft version 1."""
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    offer = service.create_offer(
        session,
        code=body["code"],
        name=body["name"],
        currency=tenant.currency,
        terms=_offer_terms(body),
        kind=body.get("kind", "plan"),
        public=body.get("public", False),
        description=body.get("description", ""),
    )
    return _present(session, offer)


@offers.get("")
@require("offers:read")
@offers.arguments(PageArgs, location="query")
@offers.response(200, page_schema(OfferSchema, "OfferPage"))
def list_offers(args: dict[str, Any]) -> dict[str, Any]:
    """List offers, oldest first, each with its current version's terms."""
    session = db_session()
    page = paginate(session, select(Offer), Offer.id, args)
    current = service.current_versions(session, [o.id for o in page["data"]])
    return {"data": [present_offer(o, current.get(o.id)) for o in page["data"]], "has_more": page["has_more"]}


@offers.get("/<offer_id>")
@require("offers:read")
@problems(OfferNotFound)
@offers.response(200, OfferSchema)
def get_offer(offer_id: str) -> dict[str, Any]:
    """One offer, with its current version's terms."""
    session = db_session()
    return _present(session, service.get_offer(session, offer_id))


@offers.post("/<offer_id>/publish")
@require("offers:write")
@problems(OfferNotFound, OfferNotPublishable)
@offers.response(200, OfferSchema)
def publish_offer(offer_id: str) -> dict[str, Any]:
    """Make a draft offer available to new subscriptions, its first version in force from today."""
    session = db_session()
    return _present(session, service.publish_offer(session, offer_id))


@offers.post("/<offer_id>/retire")
@require("offers:write")
@problems(OfferNotFound)
@offers.response(200, OfferSchema)
def retire_offer(offer_id: str) -> dict[str, Any]:
    """Stop selling an offer; lines on it keep their terms."""
    session = db_session()
    return _present(session, service.retire_offer(session, offer_id))


@offers.post("/<offer_id>/versions")
@require("offers:write")
@problems(OfferNotFound, OfferRetired, *TERMS_PROBLEMS)
@offers.arguments(OfferVersionCreateSchema, example=VERSION_EXAMPLE)
@offers.response(201, OfferVersionSchema)
def create_version(body: dict[str, Any], offer_id: str) -> dict[str, Any]:
    """Draft new terms for an offer, in force from `effective_from` once published."""
    session = db_session()
    version = service.create_version(
        session,
        offer_id,
        terms=_version_terms(body),
        effective_from=as_date(body.get("effective_from")),
        existing_subscribers=body.get("existing_subscribers", "keep"),
        move_on=as_date(body.get("move_on")),
    )
    return present_version(version)


@offers.get("/<offer_id>/versions")
@require("offers:read")
@problems(OfferNotFound)
@offers.response(200, OfferVersionSchema(many=True))
def list_versions(offer_id: str) -> list[dict[str, Any]]:
    """The offer's versions, by number."""
    return [present_version(v) for v in service.list_versions(db_session(), offer_id)]


@offers.get("/<offer_id>/versions/<offer_version_id>")
@require("offers:read")
@problems(OfferVersionNotFound)
@offers.response(200, OfferVersionSchema)
def get_version(offer_id: str, offer_version_id: str) -> dict[str, Any]:
    """One version of an offer."""
    return present_version(service.get_version(db_session(), offer_id, offer_version_id))


@offers.patch("/<offer_id>/versions/<offer_version_id>")
@require("offers:write")
@problems(OfferNotFound, OfferVersionNotFound, VersionImmutable, *TERMS_PROBLEMS)
@offers.arguments(OfferVersionUpdateSchema, example={"price": "12.99"})
@offers.response(200, OfferVersionSchema)
def update_version(body: dict[str, Any], offer_id: str, offer_version_id: str) -> dict[str, Any]:
    """Change a draft version; a published version never changes (409 `version_immutable`)."""
    session = db_session()
    version = service.get_version(session, offer_id, offer_version_id)
    if version.status != "draft":
        raise VersionImmutable(f"Version {version.number} is published; publish a new version to change the terms.")
    terms_fields = {"price", "allowances", "usage_prices", "tax_category", "charges", "rate_card_id"}
    terms_fields |= {"validity_days", "includes"}
    terms = _version_terms(body, service.VersionTerms.of(version)) if terms_fields & set(body) else None
    version = service.update_version(
        session,
        offer_id,
        offer_version_id,
        terms=terms,
        effective_from=as_date(body.get("effective_from")),
        existing_subscribers=body.get("existing_subscribers"),
        move_on=as_date(body.get("move_on")),
    )
    return present_version(version)


@offers.delete("/<offer_id>/versions/<offer_version_id>")
@require("offers:write")
@problems(OfferVersionNotFound, VersionImmutable)
@offers.response(204)
def delete_version(offer_id: str, offer_version_id: str) -> None:
    """Forget a draft version."""
    service.delete_version(db_session(), offer_id, offer_version_id)


@offers.post("/<offer_id>/versions/<offer_version_id>/publish")
@require("offers:write")
@problems(
    OfferNotFound,
    OfferVersionNotFound,
    OfferNotPublished,
    OfferRetired,
    VersionDatesOverlap,
    VersionEffectiveInPast,
    VersionDateRequired,
    RateCardUnknown,
    InvalidOfferTerms,
)
@offers.response(200, OfferVersionSchema)
def publish_version(offer_id: str, offer_version_id: str) -> dict[str, Any]:
    """Publish a draft version: new sales get it from its date; lines already on the offer move as it says."""
    return present_version(service.publish_version(db_session(), offer_id, offer_version_id))


@promotions.post("")
@require("offers:write")
@problems(PromotionCodeTaken, InvalidPromotion)
@promotions.arguments(
    PromotionCreateSchema, example={"code": "WELCOME10", "kind": "percent", "value": "10", "cycles": 3}
)
@promotions.response(201, PromotionSchema)
def create_promotion(body: dict[str, Any]) -> Promotion:
    """Create a discount code, unique per tenant whatever its case."""
    return promotion_service.create_promotion(db_session(), promotion_service.PromotionTerms(**body))


@promotions.get("")
@require("offers:read")
@promotions.arguments(PageArgs, location="query")
@promotions.response(200, page_schema(PromotionSchema, "PromotionPage"))
def list_promotions(args: dict[str, Any]) -> dict[str, Any]:
    """List promotions, oldest first."""
    return paginate(db_session(), select(Promotion), Promotion.id, args)


@promotions.get("/<promotion_id>")
@require("offers:read")
@problems(PromotionNotFound)
@promotions.response(200, PromotionSchema)
def get_promotion(promotion_id: str) -> Promotion:
    """One promotion, with how many times it was redeemed."""
    return promotion_service.get_promotion(db_session(), promotion_id)


@promotions.post("/<promotion_id>/disable")
@require("offers:write")
@problems(PromotionNotFound)
@promotions.response(200, PromotionSchema)
def disable_promotion(promotion_id: str) -> Promotion:
    """Stop a promotion being redeemed; discounts already granted go on."""
    return promotion_service.disable_promotion(db_session(), promotion_id)
