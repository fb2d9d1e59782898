"""Promotions: discount codes redeemed on a new line (its recurring fee) or on a purchase.

A code's last slot goes to one redemption only: the count moves in one conditional UPDATE, which a
second redemption racing for the same slot finds no longer matching.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mvne.catalog.errors import (
    InvalidPromotion,
    PromotionCodeTaken,
    PromotionExhausted,
    PromotionExpired,
    PromotionNotApplicable,
    PromotionNotFound,
    PromotionUnknown,
)
from mvne.catalog.models import Offer, Promotion, PromotionRedemption
from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.tenants.service import record_event

KINDS = ("percent", "amount")
MAX_AMOUNT = Decimal("100000")
MAX_CYCLES = 120
MAX_REDEMPTIONS = 10_000_000


@dataclass(frozen=True)
class PromotionTerms:
    code: str
    kind: str
    value: Decimal
    name: str = ""
    cycles: int | None = None
    max_redemptions: int | None = None
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    offer_ids: Sequence[str] = field(default_factory=list)


def _check(session: Session, terms: PromotionTerms) -> None:
    errors: dict[str, list[str]] = {}
    if terms.kind not in KINDS:
        errors["kind"] = [f"One of {', '.join(KINDS)}."]
    elif terms.kind == "percent" and not Decimal(0) < terms.value <= 100:
        errors["value"] = ["A percent is more than 0 and at most 100."]
    elif terms.kind == "amount" and not Decimal(0) < terms.value <= MAX_AMOUNT:
        errors["value"] = [f"An amount is more than 0 and at most {MAX_AMOUNT}."]
    if terms.cycles is not None and not 1 <= terms.cycles <= MAX_CYCLES:
        errors["cycles"] = [f"1 to {MAX_CYCLES} invoices, or null for ever."]
    if terms.max_redemptions is not None and not 1 <= terms.max_redemptions <= MAX_REDEMPTIONS:
        errors["max_redemptions"] = [f"1 to {MAX_REDEMPTIONS}, or null for no limit."]
    if terms.valid_from and terms.valid_until and terms.valid_until <= terms.valid_from:
        errors["valid_until"] = ["Must be after valid_from."]
    if terms.offer_ids:
        known = set(session.scalars(select(Offer.id).where(Offer.id.in_(list(terms.offer_ids)))))
        unknown = [o for o in terms.offer_ids if o not in known]
        if unknown:
            errors["offer_ids"] = [f"Not offers of the tenant: {', '.join(unknown[:5])}."]
    if errors:
        raise InvalidPromotion("The promotion cannot be created.", errors=errors)


def create_promotion(session: Session, terms: PromotionTerms) -> Promotion:
    """A promotion; its code is unique per tenant whatever its case."""
    _check(session, terms)
    key = terms.code.lower()
    if session.scalar(select(Promotion.id).where(Promotion.code_key == key)) is not None:
        raise PromotionCodeTaken(f"A promotion with code {terms.code!r} already exists.")
    promotion = Promotion(
        id=new_id("prm"),
        code=terms.code,
        code_key=key,
        name=terms.name,
        kind=terms.kind,
        value=terms.value,
        cycles=terms.cycles,
        max_redemptions=terms.max_redemptions,
        redemptions=0,
        valid_from=terms.valid_from,
        valid_until=terms.valid_until,
        offer_ids=list(terms.offer_ids),
        status="active",
    )
    try:
        with session.begin_nested():
            session.add(promotion)
            session.flush()
    except IntegrityError:
        raise PromotionCodeTaken(f"A promotion with code {terms.code!r} already exists.") from None
    record_event(session, "promotion.created", promotion.id, {"code": promotion.code})
    return promotion


def get_promotion(session: Session, promotion_id: str) -> Promotion:
    return get_or_raise(session, Promotion, promotion_id, PromotionNotFound, "promotion")


def disable_promotion(session: Session, promotion_id: str) -> Promotion:
    """No more redemptions; those made keep their discount."""
    promotion = get_promotion(session, promotion_id)
    if promotion.status != "disabled":
        promotion.status = "disabled"
        promotion.disabled_at = utcnow()
        record_event(session, "promotion.disabled", promotion.id, {"code": promotion.code})
    return promotion


def redeem(
    session: Session,
    *,
    code: str,
    offer_id: str,
    subscription_id: str,
    purchase_id: str | None = None,
    at: dt.datetime | None = None,
) -> tuple[Promotion, PromotionRedemption]:
    """Redeem a code for a line's fee or a purchase: 422 when unknown, expired, exhausted or not for this offer."""
    at = at or utcnow()
    promotion = session.scalar(select(Promotion).where(Promotion.code_key == code.lower()))
    if promotion is None:
        raise PromotionUnknown(f"No promotion {code!r}.", errors={"promotion_code": ["Unknown code."]})
    if (
        promotion.status != "active"
        or (promotion.valid_from is not None and at < promotion.valid_from)
        or (promotion.valid_until is not None and at >= promotion.valid_until)
    ):
        raise PromotionExpired(f"Promotion {code!r} is not valid now.", errors={"promotion_code": ["Not valid now."]})
    if promotion.offer_ids and offer_id not in promotion.offer_ids:
        raise PromotionNotApplicable(
            f"Promotion {code!r} does not apply to offer {offer_id}.",
            errors={"promotion_code": ["Not for this offer."]},
        )
    taken = session.execute(
        update(Promotion)
        .where(
            Promotion.id == promotion.id,
            or_(Promotion.max_redemptions.is_(None), Promotion.redemptions < Promotion.max_redemptions),
        )
        .values(redemptions=Promotion.redemptions + 1)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not taken:
        raise PromotionExhausted(
            f"Promotion {code!r} has been redeemed as often as it may be.",
            errors={"promotion_code": ["No redemption left."]},
        )
    session.refresh(promotion)
    redemption = PromotionRedemption(
        id=new_id("prd"),
        promotion_id=promotion.id,
        subscription_id=subscription_id,
        purchase_id=purchase_id,
        cycles_used=1 if purchase_id else 0,
    )
    session.add(redemption)
    session.flush()
    record_event(
        session,
        "promotion.redeemed",
        redemption.id,
        {"promotion": promotion.id, "subscription": subscription_id, "purchase": purchase_id},
    )
    return promotion, redemption


def discount_of(promotion: Promotion, amount: Decimal) -> Decimal:
    """What the promotion takes off an amount (never more than the amount), unrounded."""
    if promotion.kind == "percent":
        return amount * promotion.value / 100
    return min(promotion.value, amount)
