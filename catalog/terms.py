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
from typing import Any

from sqlalchemy import String, column, select, table
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer, OfferVersion, SubscriptionTerm
from mvne.infra.db import one_of

ZONES = ("home", "eu", "world")
SERVICES = ("data", "voice", "sms", "mms")
# Metered units per unit an offer states: bytes per MB (decimal), seconds per minute, one per message.
UNITS_PER_STATED = {"data": 1_000_000, "voice": 60, "sms": 1, "mms": 1}
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
    # The version's one-time charges (code, name, amount, tax category), billed on a line's first invoice.
    charges: tuple[tuple[str, str, Decimal, str], ...] = ()


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


def _allowance_term(data: Mapping[str, Any]) -> AllowanceTerm:
    """A stored allowance (stated units) in metered units."""
    unit = UNITS_PER_STATED[data["service"]]

    def metered(value: Any) -> int | None:
        return None if value is None else int(value) * unit

    return AllowanceTerm(
        service=data["service"],
        zone=data.get("zone", "home"),
        quantity=metered(data.get("amount")),
        fair_use=metered(data.get("fair_use_amount")),
        roam_like_at_home=bool(data.get("roam_like_at_home", False)),
        eu_fair_use=metered(data.get("eu_fair_use_amount")),
        rollover_cap=metered(data.get("rollover_cap")) or 0,
        priority=int(data.get("priority", 100)),
    )


@dataclass(frozen=True)
class _VersionParts:
    """What a version's terms hold whatever the line: built once per version, shared by its lines."""

    allowances: tuple[AllowanceTerm, ...]
    usage_prices: Mapping[str, Mapping[str, Decimal]]
    charges: tuple[tuple[str, str, Decimal, str], ...]


def _version_parts(version: OfferVersion) -> _VersionParts:
    return _VersionParts(
        allowances=tuple(_allowance_term(a) for a in version.allowances if a.get("service") in UNITS_PER_STATED),
        usage_prices={
            zone: {service: Decimal(str(price)) for service, price in prices.items()}
            for zone, prices in version.usage_prices.items()
        },
        charges=tuple(
            (c["code"], c["name"], Decimal(str(c["amount"])), c.get("tax_category", "standard"))
            for c in version.charges
        ),
    )


def version_terms(
    subscription_id: str,
    version: OfferVersion,
    currency: str,
    valid_from: dt.datetime,
    valid_to: dt.datetime | None,
    *,
    parts: dict[str, _VersionParts] | None = None,
) -> LineTerms:
    """One version's terms as they apply to one line over [valid_from, valid_to).

    `parts` caches what the version holds by version id, for callers building the terms of many lines.
    """
    built = parts.get(version.id) if parts is not None else None
    if built is None:
        built = _version_parts(version)
        if parts is not None:
            parts[version.id] = built
    return LineTerms(
        subscription_id=subscription_id,
        offer_id=version.offer_id,
        offer_version_id=version.id,
        version_number=version.number,
        currency=currency,
        price=version.price,
        tax_category=version.tax_category,
        allowances=built.allowances,
        usage_prices=built.usage_prices,
        rate_card_id=version.rate_card_id,
        valid_from=valid_from,
        valid_to=valid_to,
        charges=built.charges,
    )


def line_terms(session: Session, subscription_ids: Collection[str]) -> dict[str, TermsTimeline]:
    """Each line's terms over time, for the session's tenant, in one query (two for lines without terms rows)."""
    wanted = list(subscription_ids)
    rows = session.execute(
        select(
            SubscriptionTerm.subscription_id,
            SubscriptionTerm.valid_from,
            SubscriptionTerm.valid_to,
            OfferVersion,
            Offer.currency,
        )
        .join(OfferVersion, OfferVersion.id == SubscriptionTerm.offer_version_id)
        .join(Offer, Offer.id == SubscriptionTerm.offer_id)
        .where(one_of(session, SubscriptionTerm.subscription_id, wanted))
    )
    found: dict[str, list[LineTerms]] = {}
    parts: dict[str, _VersionParts] = {}
    for sub_id, valid_from, valid_to, version, currency in rows:
        found.setdefault(sub_id, []).append(version_terms(sub_id, version, currency, valid_from, valid_to, parts=parts))
    missing = [sub_id for sub_id in wanted if sub_id not in found]
    if missing:
        found.update(_offer_timelines(session, missing))
    return {sub_id: TermsTimeline(terms) for sub_id, terms in found.items()}


def _offer_timelines(session: Session, subscription_ids: list[str]) -> dict[str, list[LineTerms]]:
    """Lines written without terms rows (imported in bulk): the offer's published versions, each in force from
    its date until the next, as new sales get them."""
    # Lines belong to provisioning, above this layer: read by table name, scoped to the tenant explicitly.
    lines = table("subscriptions", column("id", String), column("offer_id", String), column("tenant_id", String))
    stmt = select(lines.c.id, lines.c.offer_id).where(one_of(session, lines.c.id, subscription_ids))
    tenant_id = session.info.get("tenant_id")
    if tenant_id is not None:
        stmt = stmt.where(lines.c.tenant_id == tenant_id)
    offer_of: dict[str, str] = {row.id: row.offer_id for row in session.execute(stmt)}
    by_offer: dict[str, list[tuple[OfferVersion, str]]] = {}
    for version, currency in session.execute(
        select(OfferVersion, Offer.currency)
        .join(Offer, Offer.id == OfferVersion.offer_id)
        .where(one_of(session, OfferVersion.offer_id, set(offer_of.values())), OfferVersion.status == "published")
    ):
        by_offer.setdefault(version.offer_id, []).append((version, currency))
    parts: dict[str, _VersionParts] = {}
    found: dict[str, list[LineTerms]] = {}
    for sub_id, offer_id in offer_of.items():
        items = sorted(by_offer.get(offer_id, []), key=lambda item: item[0].effective_from_at or EPOCH)
        if not items:
            continue
        starts = [item[0].effective_from_at or EPOCH for item in items]
        found[sub_id] = [
            version_terms(
                sub_id, version, currency, starts[n], starts[n + 1] if n + 1 < len(starts) else None, parts=parts
            )
            for n, (version, currency) in enumerate(items)
        ]
    return found
