"""Purchases of add-ons, top-ups and bundles on a line: the purchase and its balance buckets in one transaction.

The price is billed on the line's next invoice, which claims the purchase (its `invoice_id`) as it
claims rated usage, so a purchase is billed once whatever runs when.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from mvne.catalog import promotions
from mvne.catalog.errors import OfferKindMismatch
from mvne.catalog.models import Offer, OfferPurchase, OfferVersion
from mvne.catalog.service import PURCHASABLE_KINDS, sellable_offer, version_for_sale
from mvne.catalog.terms import UNITS_PER_STATED
from mvne.charging.models import BalanceBucket
from mvne.infra.db import utcnow
from mvne.infra.errors import Conflict
from mvne.infra.ids import new_id
from mvne.provisioning.service import get_subscription
from mvne.tenants.service import record_event

# A line that can still use what it buys.
PURCHASE_STATUSES = ("active", "suspended")


class LineCannotPurchase(Conflict):
    code = "subscription_not_active"


def _bucket_rows(purchase: OfferPurchase, origin: str, versions: list[OfferVersion]) -> list[dict[str, Any]]:
    """One bucket per service and zone of the versions' allowances (a bundle's add-ons that share one add up)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for version in versions:
        valid_to = purchase.valid_from + dt.timedelta(days=version.validity_days or 30)
        for allowance in version.allowances:
            service, zone = allowance["service"], allowance.get("zone", "home")
            unit = UNITS_PER_STATED.get(service)
            if unit is None:
                continue
            amount = allowance.get("amount")
            if amount == 0:
                continue  # nothing to use: no bucket
            granted = None if amount is None else int(amount) * unit
            fair_use = allowance.get("fair_use_amount")
            eu_fair_use = allowance.get("eu_fair_use_amount")
            row = merged.get((service, zone))
            if row is None:
                merged[(service, zone)] = {
                    "id": new_id("bkt"),
                    "tenant_id": purchase.tenant_id,
                    "subscription_id": purchase.subscription_id,
                    "service": service,
                    "zone": zone,
                    "origin": origin,
                    "origin_key": f"purchase:{purchase.id}:{service}:{zone}",
                    "offer_version_id": version.id,
                    "purchase_id": purchase.id,
                    "period": None,
                    "granted": granted,
                    "used": 0,
                    "fair_use": None if fair_use is None else int(fair_use) * unit,
                    "roam_like_at_home": bool(allowance.get("roam_like_at_home", False)),
                    "eu_fair_use": None if eu_fair_use is None else int(eu_fair_use) * unit,
                    "eu_used": 0,
                    "priority": int(allowance.get("priority", 100)),
                    "valid_from": purchase.valid_from,
                    "valid_to": valid_to,
                    "notified_percent": 0,
                    "created_at": purchase.created_at,
                }
            else:
                row["granted"] = None if row["granted"] is None or granted is None else row["granted"] + granted
                row["valid_to"] = max(row["valid_to"], valid_to)
    return list(merged.values())


def purchase_offer(
    session: Session,
    *,
    subscription_id: str,
    offer_id: str,
    promotion_code: str | None = None,
    now: dt.datetime | None = None,
) -> OfferPurchase:
    """Buy an add-on, top-up or bundle on a line: its buckets are valid from now for the version's validity."""
    now = now or utcnow()
    line = get_subscription(session, subscription_id)
    if line.status not in PURCHASE_STATUSES:
        raise LineCannotPurchase(f"Line {subscription_id} is {line.status}; only an active line can buy.")
    offer = sellable_offer(session, offer_id)
    if offer.kind not in PURCHASABLE_KINDS:
        raise OfferKindMismatch(
            f"Offer {offer_id} is a {offer.kind}; a line buys add-ons, top-ups and bundles.",
            errors={"offer_id": [f"One of kind {', '.join(PURCHASABLE_KINDS)}."]},
        )
    version = version_for_sale(session, offer_id, now)
    versions = [version]
    if version.includes:
        included = list(
            session.scalars(select(Offer.id).where(Offer.id.in_(version.includes), Offer.status != "draft"))
        )
        versions += [version_for_sale(session, included_id, now) for included_id in included]
    validity = max(v.validity_days or 0 for v in versions) or 30
    purchase = OfferPurchase(
        id=new_id("pur"),
        subscription_id=subscription_id,
        offer_id=offer_id,
        offer_version_id=version.id,
        name=offer.name,
        price=version.price,
        currency=offer.currency,
        tax_category=version.tax_category,
        discount=Decimal(0),
        valid_from=now,
        valid_to=now + dt.timedelta(days=validity),
        created_at=now,
    )
    if promotion_code is not None:
        promotion, _ = promotions.redeem(
            session, code=promotion_code, offer_id=offer_id, subscription_id=subscription_id, purchase_id=purchase.id
        )
        purchase.promotion_id = promotion.id
        purchase.discount = promotions.discount_of(promotion, version.price)
    session.add(purchase)
    session.flush()
    origin = "topup" if offer.kind == "topup" else "addon"
    rows = _bucket_rows(purchase, origin, versions)
    if rows:
        session.execute(insert(BalanceBucket), rows)
    record_event(
        session,
        "purchase.created",
        purchase.id,
        {"subscription": subscription_id, "offer": offer_id, "price": str(purchase.price), "buckets": len(rows)},
    )
    return purchase


def line_purchases(session: Session, subscription_id: str) -> list[OfferPurchase]:
    get_subscription(session, subscription_id)
    return list(
        session.scalars(
            select(OfferPurchase).where(OfferPurchase.subscription_id == subscription_id).order_by(OfferPurchase.id)
        )
    )
