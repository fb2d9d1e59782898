"""Offers: draft, publish, list. A published offer is what subscriptions can be sold on."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog.errors import OfferCodeTaken, OfferNotFound, OfferNotPublishable, OfferNotPublished
from mvne.catalog.models import Offer
from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.tenants.service import record_event


@dataclass(frozen=True)
class OfferTerms:
    """What an offer gives for its monthly price, and what it charges beyond."""

    price: Decimal
    data_mb: int
    voice_minutes: int
    sms: int
    overage_data_per_mb: Decimal
    overage_voice_per_minute: Decimal
    overage_sms_per_message: Decimal


def create_offer(session: Session, *, code: str, name: str, currency: str, terms: OfferTerms) -> Offer:
    """A draft offer in the tenant's currency; codes are unique per tenant."""
    if session.scalar(select(Offer.id).where(Offer.code == code)) is not None:
        raise OfferCodeTaken(f"An offer with code {code!r} already exists.")
    offer = Offer(
        id=new_id("off"),
        code=code,
        name=name,
        currency=currency,
        status="draft",
        price=terms.price,
        data_mb=terms.data_mb,
        voice_minutes=terms.voice_minutes,
        sms=terms.sms,
        overage_data_per_mb=terms.overage_data_per_mb,
        overage_voice_per_minute=terms.overage_voice_per_minute,
        overage_sms_per_message=terms.overage_sms_per_message,
    )
    session.add(offer)
    session.flush()
    record_event(session, "offer.created", offer.id, {"code": code})
    return offer


def get_offer(session: Session, offer_id: str) -> Offer:
    return get_or_raise(session, Offer, offer_id, OfferNotFound, "offer")


def get_offer_by_code(session: Session, code: str) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.code == code))


def publish_offer(session: Session, offer_id: str) -> Offer:
    """Make a draft offer sellable; publishing a published offer changes nothing."""
    offer = get_offer(session, offer_id)
    if offer.status == "published":
        return offer
    if offer.status != "draft":
        raise OfferNotPublishable(f"Offer {offer_id} is {offer.status}; only a draft can be published.")
    offer.status = "published"
    offer.published_at = utcnow()
    record_event(session, "offer.published", offer.id, {"code": offer.code})
    return offer


def sellable_offer(session: Session, offer_id: str) -> Offer:
    """The offer, if a subscription can be taken on it now."""
    offer = get_offer(session, offer_id)
    if offer.status != "published":
        raise OfferNotPublished(f"Offer {offer_id} is {offer.status}; publish it before selling it.")
    return offer
