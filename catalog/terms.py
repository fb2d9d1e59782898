"""What a line is entitled to and charged, over time: the terms of the offer version in force.

This is the one place rating and billing learn a line's terms. `line_terms` answers, for a set of
lines in one query, the timeline of each line's terms (a line moves to a new offer version on a
date), so a batch of records is rated against the terms in force at each record's own time.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.provisioning.models import Subscription

ZONES = ("home", "eu", "world")
SERVICES = ("data", "voice", "sms")
# Metered units per unit an offer states: bytes per MB (decimal), seconds per minute, one per message.
UNITS_PER_STATED = {"data": 1_000_000, "voice": 60, "sms": 1}
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class AllowanceTerm:
    """One allowance of an offer version, in metered units (bytes, seconds, messages).

    `quantity` None is unlimited; `fair_use` is then the quantity after which the line is throttled.
    A home allowance with `roam_like_at_home` also covers usage in the EU zone, up to `eu_fair_use`
    (None: no limit). `rollover_cap` is how much unused may carry into the next period (0: none).
    Buckets are consumed by `priority` (lower first), then earliest expiry.
    """

    service: str
    zone: str
    quantity: int | None
    fair_use: int | None = None
    roam_like_at_home: bool = False
    eu_fair_use: int | None = None
    rollover_cap: int = 0
    priority: int = 100


@dataclass(frozen=True)
class LineTerms:
    """The terms of one offer version as they apply to one line from `valid_from` to `valid_to`."""

    subscription_id: str
    offer_id: str
    offer_version_id: str
    version_number: int
    currency: str
    # The recurring price per period, tax excluded, and its tax category.
    price: Decimal
    tax_category: str
    allowances: tuple[AllowanceTerm, ...]
    # Prices beyond the allowances, per stated unit (MB, minute, message), by zone then service.
    # "home" is always there; a zone without prices is priced as home.
    usage_prices: Mapping[str, Mapping[str, Decimal]]
    # The retail rate card that prices home usage beyond the allowances; None prices it by `usage_prices`.
    rate_card_id: str | None
    valid_from: dt.datetime
    valid_to: dt.datetime | None = None


@dataclass
class TermsTimeline:
    """A line's terms in date order; `at` picks those in force at an instant."""

    terms: list[LineTerms]
    _starts: list[dt.datetime] = field(init=False)

    def __post_init__(self) -> None:
        self.terms.sort(key=lambda t: t.valid_from)
        self._starts = [t.valid_from for t in self.terms]

    def at(self, instant: dt.datetime) -> LineTerms | None:
        position = bisect.bisect_right(self._starts, instant) - 1
        if position < 0:
            # Before the first terms (usage just ahead of a line's start): the first terms apply.
            return self.terms[0] if self.terms else None
        found = self.terms[position]
        if found.valid_to is not None and instant >= found.valid_to:
            return None
        return found


def _offer_terms(subscription_id: str, offer: Offer) -> LineTerms:
    allowances = tuple(
        AllowanceTerm(service=service, zone="home", quantity=amount * UNITS_PER_STATED[service])
        for service, amount in (("data", offer.data_mb), ("voice", offer.voice_minutes), ("sms", offer.sms))
    )
    home = {
        "data": offer.overage_data_per_mb,
        "voice": offer.overage_voice_per_minute,
        "sms": offer.overage_sms_per_message,
    }
    return LineTerms(
        subscription_id=subscription_id,
        offer_id=offer.id,
        offer_version_id=offer.id,
        version_number=1,
        currency=offer.currency,
        price=offer.price,
        tax_category="standard",
        allowances=allowances,
        usage_prices={"home": home},
        rate_card_id=None,
        valid_from=EPOCH,
    )


def line_terms(session: Session, subscription_ids: Collection[str]) -> dict[str, TermsTimeline]:
    """Each line's terms over time, for the session's tenant; lines not found are absent."""
    rows = session.execute(
        select(Subscription.id, Offer)
        .join(Offer, Offer.id == Subscription.offer_id)
        .where(Subscription.id.in_(list(subscription_ids)))
    )
    return {sub_id: TermsTimeline([_offer_terms(sub_id, offer)]) for sub_id, offer in rows}
