"""Purchases on a line, and the public catalogue a white-label app shows (prices with tax)."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from mvne.catalog.api import view_allowance
from mvne.catalog.errors import (
    OfferKindMismatch,
    OfferNotFound,
    OfferNotPublished,
    OfferRetired,
    PromotionExhausted,
    PromotionExpired,
    PromotionNotApplicable,
    PromotionUnknown,
)
from mvne.catalog.models import OfferPurchase
from mvne.catalog.schemas import PublicCatalogArgs, PublicCatalogSchema
from mvne.catalog.service import public_offers
from mvne.charging import purchases as purchase_service
from mvne.charging.billing import tax_rate
from mvne.charging.money import round_money
from mvne.infra.db import utcnow
from mvne.infra.fields import DecimalString, Text
from mvne.infra.web.auth import public, require
from mvne.infra.web.context import db_session, runtime
from mvne.infra.web.problems import problems
from mvne.provisioning.errors import SubscriptionNotFound
from mvne.tenants.errors import TenantNotFound
from mvne.tenants.models import PUBLIC, ApiClient, Tenant

line_purchases = Blueprint(
    "line_purchases",
    __name__,
    url_prefix="/v1/subscriptions",
    description="Add-ons, top-ups and bundles bought on a line.",
)
public_catalog = Blueprint(
    "public_catalog",
    __name__,
    url_prefix="/v1/catalog",
    description="The offers a tenant's apps may sell, for anyone to read.",
)
# Tenants whose catalogue is shown: live ones and sandboxes (their apps are being built).
SHOWN_STATUSES = ("active", "onboarding")
MAX_AGE = 60


class PurchaseCreateSchema(Schema):
    offer_id = Text(required=True, min_length=1, max_length=64, metadata={"example": "off_01J..."})
    promotion_code = Text(min_length=1, max_length=64)


class PurchaseSchema(Schema):
    id = fields.String()
    subscription_id = fields.String()
    offer_id = fields.String()
    offer_version_id = fields.String()
    name = fields.String()
    price = DecimalString()
    discount = DecimalString()
    currency = fields.String()
    tax_category = fields.String()
    promotion_id = fields.String(allow_none=True)
    valid_from = fields.AwareDateTime()
    valid_to = fields.AwareDateTime()
    created_at = fields.AwareDateTime()
    invoice_id = fields.String(
        allow_none=True, metadata={"description": "The invoice that billed it; null until then."}
    )
    renews = fields.Boolean(
        metadata={"description": "True on a bundle's current term: at `valid_to` a new term is bought and billed."}
    )
    renewed_from_id = fields.String(
        allow_none=True, metadata={"description": "The term this one renews; null on a first purchase."}
    )
    renewal_stopped = fields.String(
        allow_none=True,
        metadata={"description": "Why the bundle stopped renewing: cancelled, or line_ended; null otherwise."},
    )
    renewal_stopped_at = fields.AwareDateTime(allow_none=True)


@line_purchases.post("/<subscription_id>/purchases")
@require("subscriptions:write")
@problems(
    SubscriptionNotFound,
    OfferNotFound,
    OfferNotPublished,
    OfferRetired,
    OfferKindMismatch,
    purchase_service.LineCannotPurchase,
    PromotionUnknown,
    PromotionExpired,
    PromotionExhausted,
    PromotionNotApplicable,
)
@line_purchases.arguments(PurchaseCreateSchema, example={"offer_id": "off_01J..."})
@line_purchases.response(201, PurchaseSchema)
def create_purchase(body: dict[str, Any], subscription_id: str) -> OfferPurchase:
    """Buy an add-on, top-up or bundle on a line: its allowances are usable at once, its price billed next."""
    return purchase_service.purchase_offer(
        db_session(),
        subscription_id=subscription_id,
        offer_id=body["offer_id"],
        promotion_code=body.get("promotion_code"),
    )


@line_purchases.get("/<subscription_id>/purchases")
@require("subscriptions:read")
@problems(SubscriptionNotFound)
@line_purchases.response(200, PurchaseSchema(many=True))
def list_purchases(subscription_id: str) -> list[OfferPurchase]:
    """What was bought on a line, oldest first."""
    return purchase_service.line_purchases(db_session(), subscription_id)


@line_purchases.get("/<subscription_id>/purchases/<purchase_id>")
@require("subscriptions:read")
@problems(SubscriptionNotFound, purchase_service.PurchaseNotFound)
@line_purchases.response(200, PurchaseSchema)
def get_purchase(subscription_id: str, purchase_id: str) -> OfferPurchase:
    """One purchase of a line."""
    return purchase_service.get_purchase(db_session(), subscription_id, purchase_id)


@line_purchases.post("/<subscription_id>/purchases/<purchase_id>/cancel")
@require("subscriptions:write")
@problems(SubscriptionNotFound, purchase_service.PurchaseNotFound, purchase_service.PurchaseNotRenewing)
@line_purchases.response(200, PurchaseSchema)
def cancel_purchase(subscription_id: str, purchase_id: str) -> OfferPurchase:
    """Stop a bundle renewing: the current term runs to its end and is not followed by another. Cancelling a
    cancelled bundle again answers the same."""
    return purchase_service.cancel_renewal(db_session(), subscription_id=subscription_id, purchase_id=purchase_id)


def _catalog_tenant(args: dict[str, Any]) -> str:
    """The tenant named by `tenant` or by one of its apps (`app`), if it sells; else 404 `tenant_not_found`."""
    missing = TenantNotFound("No tenant with a catalogue here.")
    with runtime().db.transaction(platform=True) as session:
        tenant_id = args.get("tenant")
        if args.get("app"):
            client = session.get(ApiClient, args["app"])
            if client is None or client.kind != PUBLIC or client.revoked_at is not None or client.tenant_id is None:
                raise missing
            tenant_id = client.tenant_id
        tenant = session.get(Tenant, tenant_id) if tenant_id else None
        if tenant is None or tenant.status not in SHOWN_STATUSES:
            raise missing
        return tenant.id


@public_catalog.get("")
@public
@problems(TenantNotFound)
@public_catalog.arguments(PublicCatalogArgs, location="query")
@public_catalog.response(200, PublicCatalogSchema, headers={"ETag": {"schema": {"type": "string"}}})
@public_catalog.alt_response(304, description="Not modified since the ETag given in If-None-Match.")
def get_catalog(args: dict[str, Any]) -> Any:
    """The offers a tenant's apps may sell, with prices excluding and including tax; no token needed.

    Name the tenant (`tenant`) or one of its apps (`app`, its client id). Cached for a minute; send the
    ETag back in If-None-Match to get 304 when nothing changed.
    """
    tenant_id = _catalog_tenant(args)
    with runtime().db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        rate = tax_rate(session, tenant, utcnow().date())
        offers = []
        for offer, version in public_offers(session, tenant_id):
            rated = rate if version.tax_category == "standard" else Decimal(0)
            offers.append(
                {
                    "id": offer.id,
                    "code": offer.code,
                    "name": offer.name,
                    "description": offer.description,
                    "kind": offer.kind,
                    "currency": offer.currency,
                    "version": version.number,
                    "price_excluding_tax": version.price,
                    "tax_rate": rated,
                    "price_including_tax": round_money(version.price * (1 + rated), offer.currency),
                    "allowances": [view_allowance(a) for a in version.allowances],
                    "usage_prices": {
                        zone: {name: Decimal(str(price)) for name, price in prices.items()}
                        for zone, prices in version.usage_prices.items()
                    },
                    "charges": [{**c, "amount": Decimal(str(c["amount"]))} for c in version.charges],
                    "validity_days": version.validity_days,
                    "includes": list(version.includes),
                }
            )
        body = PublicCatalogSchema().dump(
            {"tenant": tenant.id, "name": tenant.name, "currency": tenant.currency, "offers": offers}
        )
    etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"public, max-age={MAX_AGE}", "ETag": etag}
    if etag in [tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")]:
        return Response(status=304, headers=headers)
    return Response(json.dumps(body), status=200, headers=headers, mimetype="application/json")
