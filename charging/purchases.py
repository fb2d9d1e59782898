"""Purchases of add-ons, top-ups and bundles on a line: the purchase and its balance buckets in one transaction.

The price is billed on the line's next invoice, which claims the purchase (its `invoice_id`) as it
claims rated usage, so a purchase is billed once whatever runs when.

A bundle renews at the end of each term until it is cancelled or its line ends: a periodic task finds the
terms that ended and queues a job per term; the job makes the next term (a purchase of its own, with its
buckets, at the offer's version on sale then, billed on the next invoice). A term renews once: the
renewal names the term it renews, under a unique constraint.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
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
from mvne.charging.usage import period_of, period_window
from mvne.infra.db import Database, utcnow
from mvne.infra.errors import Conflict, NotFound
from mvne.infra.ids import new_id
from mvne.infra.jobs import enqueue_many
from mvne.provisioning.service import get_subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

# A line that can still use what it buys.
PURCHASE_STATUSES = ("active", "suspended")
# Purchases that renew at the end of their term.
RENEWING_KINDS = ("bundle",)
# Terms found ended per look of the periodic task (the next look takes the rest).
RENEWALS_PER_LOOK = 500


class LineCannotPurchase(Conflict):
    code = "subscription_not_active"


class PurchaseNotFound(NotFound):
    code = "purchase_not_found"


class PurchaseNotRenewing(Conflict):
    code = "purchase_not_renewing"


def _bucket_rows(purchase: OfferPurchase, origin: str, versions: list[OfferVersion]) -> list[dict[str, Any]]:
    """One bucket per service and zone of the versions' allowances (a bundle's add-ons that share one add up)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for version in versions:
        # An add-on or top-up for its validity; a bundle for its term (a billing period).
        valid_to = (
            purchase.valid_from + dt.timedelta(days=version.validity_days)
            if version.validity_days
            else purchase.valid_to
        )
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
    purchase, versions = _new_term(session, subscription_id, offer, valid_from=now, created_at=now)
    if promotion_code is not None:
        promotion, _ = promotions.redeem(
            session, code=promotion_code, offer_id=offer_id, subscription_id=subscription_id, purchase_id=purchase.id
        )
        purchase.promotion_id = promotion.id
        purchase.discount = promotions.discount_of(promotion, purchase.price)
    rows = _store_term(session, purchase, offer, versions)
    record_event(
        session,
        "purchase.created",
        purchase.id,
        {
            "subscription": subscription_id,
            "offer": offer_id,
            "price": str(purchase.price),
            "buckets": len(rows),
            "renews": purchase.renews,
        },
    )
    return purchase


def _new_term(
    session: Session, subscription_id: str, offer: Offer, *, valid_from: dt.datetime, created_at: dt.datetime
) -> tuple[OfferPurchase, list[OfferVersion]]:
    """A purchase of `offer` from `valid_from` at the version on sale then (with the offers it includes), unsaved."""
    version = version_for_sale(session, offer.id, valid_from)
    versions = [version]
    if version.includes:
        included = list(
            session.scalars(select(Offer.id).where(Offer.id.in_(version.includes), Offer.status != "draft"))
        )
        versions += [version_for_sale(session, included_id, valid_from) for included_id in included]
    if offer.kind in RENEWING_KINDS:
        # A bundle's term is a billing period, like a plan's fee: to the end of the period `valid_from` is in.
        timezone = session.get_one(Tenant, offer.tenant_id).timezone
        valid_to = period_window(period_of(valid_from, timezone), timezone)[1]
    else:
        valid_to = valid_from + dt.timedelta(days=max(v.validity_days or 0 for v in versions) or 30)
    purchase = OfferPurchase(
        id=new_id("pur"),
        subscription_id=subscription_id,
        offer_id=offer.id,
        offer_version_id=version.id,
        name=offer.name,
        price=version.price,
        currency=offer.currency,
        tax_category=version.tax_category,
        discount=Decimal(0),
        valid_from=valid_from,
        valid_to=valid_to,
        created_at=created_at,
        renews=offer.kind in RENEWING_KINDS,
    )
    return purchase, versions


def _store_term(
    session: Session, purchase: OfferPurchase, offer: Offer, versions: list[OfferVersion]
) -> list[dict[str, Any]]:
    """Save the purchase and its buckets; the bucket rows."""
    session.add(purchase)
    session.flush()
    origin = "topup" if offer.kind == "topup" else "addon"
    rows = _bucket_rows(purchase, origin, versions)
    if rows:
        session.execute(insert(BalanceBucket), rows)
    return rows


def get_purchase(session: Session, subscription_id: str, purchase_id: str) -> OfferPurchase:
    get_subscription(session, subscription_id)
    purchase = session.get(OfferPurchase, purchase_id)
    if purchase is None or purchase.subscription_id != subscription_id:
        raise PurchaseNotFound(f"No purchase {purchase_id} on line {subscription_id}.")
    return purchase


def cancel_renewal(
    session: Session, *, subscription_id: str, purchase_id: str, now: dt.datetime | None = None
) -> OfferPurchase:
    """Stop a bundle renewing: its current term runs to its end, and no term follows. Cancelling twice is a no-op."""
    purchase = get_purchase(session, subscription_id, purchase_id)
    session.refresh(purchase, with_for_update=True)
    if purchase.renewal_stopped == "cancelled":
        return purchase
    if not purchase.renews:
        raise PurchaseNotRenewing(f"Purchase {purchase_id} does not renew: {_why_not_renewing(session, purchase)}.")
    _stop_renewing(session, purchase, "cancelled", now or utcnow())
    return purchase


def _why_not_renewing(session: Session, purchase: OfferPurchase) -> str:
    if purchase.renewal_stopped:
        return f"its renewal stopped ({purchase.renewal_stopped})"
    successor = session.scalar(select(OfferPurchase.id).where(OfferPurchase.renewed_from_id == purchase.id))
    if successor:
        return f"it was renewed by {successor}: cancel that term"
    return "it is not a bundle"


def _stop_renewing(session: Session, purchase: OfferPurchase, reason: str, now: dt.datetime) -> None:
    purchase.renews = False
    purchase.renewal_stopped = reason
    purchase.renewal_stopped_at = now
    record_event(
        session,
        "purchase.renewal_stopped",
        purchase.id,
        {"subscription": purchase.subscription_id, "offer": purchase.offer_id, "reason": reason},
    )


def queue_due_renewals(db: Database, now: dt.datetime | None = None) -> int:
    """Queue a renewal job for each bundle term that has ended (at most `RENEWALS_PER_LOOK`); how many were due.

    Asking twice for the same term is a no-op (the job's key), so a look that overlaps the last costs nothing.
    """
    now = now or utcnow()
    with db.transaction(platform=True) as session:
        due = session.execute(
            select(OfferPurchase.id, OfferPurchase.tenant_id)
            .where(OfferPurchase.renews, OfferPurchase.valid_to <= now)
            .order_by(OfferPurchase.valid_to)
            .limit(RENEWALS_PER_LOOK)
        ).all()
        by_tenant: dict[str, list[tuple[str | None, dict[str, Any]]]] = defaultdict(list)
        for purchase_id, tenant_id in due:
            by_tenant[tenant_id].append((f"renew-{purchase_id}", {"purchase_id": purchase_id}))
        for tenant_id, jobs in by_tenant.items():
            enqueue_many(session, "charging.renew_purchase", jobs, tenant_id=tenant_id)
    return len(due)


def renew_purchase(session: Session, purchase_id: str, now: dt.datetime | None = None) -> OfferPurchase | None:
    """Make the next term of an ended bundle term (in the session's tenant); None when there is nothing to renew.

    The term is locked first: a second delivery finds it renewed (`renews` false) and does nothing. A line no
    longer active or suspended ends the renewals.
    """
    now = now or utcnow()
    purchase = session.get(OfferPurchase, purchase_id, with_for_update=True)
    if purchase is None or not purchase.renews or purchase.valid_to > now:
        return None
    line = get_subscription(session, purchase.subscription_id)
    if line.status not in PURCHASE_STATUSES:
        _stop_renewing(session, purchase, "line_ended", now)
        return None
    offer = session.get_one(Offer, purchase.offer_id)
    # The next term starts where this one ended, at the version on sale then: a price change reaches the
    # bundle at its renewal. A retired offer still renews for those who have it.
    renewal, versions = _new_term(
        session, purchase.subscription_id, offer, valid_from=purchase.valid_to, created_at=now
    )
    renewal.renewed_from_id = purchase.id
    purchase.renews = False
    rows = _store_term(session, renewal, offer, versions)
    record_event(
        session,
        "purchase.renewed",
        renewal.id,
        {
            "subscription": renewal.subscription_id,
            "offer": renewal.offer_id,
            "renewed_from": purchase.id,
            "price": str(renewal.price),
            "valid_from": renewal.valid_from.isoformat(),
            "valid_to": renewal.valid_to.isoformat(),
            "buckets": len(rows),
        },
    )
    return renewal


def line_purchases(session: Session, subscription_id: str) -> list[OfferPurchase]:
    get_subscription(session, subscription_id)
    return list(
        session.scalars(
            select(OfferPurchase).where(OfferPurchase.subscription_id == subscription_id).order_by(OfferPurchase.id)
        )
    )
