"""Offers and their versions: draft, publish, move lines to new terms, retire.

An offer is what a tenant sells; what it gives and costs is an `OfferVersion`, in force from a date in
the tenant's time zone. A published version never changes: new terms are a new version. Each line's
terms over time are rows of `subscription_terms` (read through `mvne.catalog.terms`).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import String, and_, cast, func, insert, literal, select, table, update
from sqlalchemy import column as sql_column
from sqlalchemy.orm import Session

from mvne.catalog.errors import (
    InvalidAllowance,
    InvalidOfferTerms,
    OfferCodeTaken,
    OfferNotFound,
    OfferNotPublishable,
    OfferNotPublished,
    OfferRetired,
    OfferVersionNotFound,
    RateCardUnknown,
    VersionDateRequired,
    VersionDatesOverlap,
    VersionEffectiveInPast,
    VersionImmutable,
)
from mvne.catalog.models import Offer, OfferVersion, SubscriptionTerm, pick_current_version
from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.tenants.service import get_tenant, record_event

KINDS = ("plan", "addon", "topup", "bundle")
# Kinds bought on a line (a purchase), rather than a line's plan.
PURCHASABLE_KINDS = ("addon", "topup", "bundle")
ZONES = ("home", "eu", "world")
SERVICES = ("data", "voice", "sms", "mms")
TAX_CATEGORIES = ("standard", "zero", "exempt")
POLICIES = ("keep", "on_date", "at_renewal")
# The most an allowance may state, per service (MB, minutes, messages): beyond is a typo, not an offer.
ALLOWANCE_LIMITS = {"data": 10_000_000, "voice": 1_000_000, "sms": 1_000_000, "mms": 1_000_000}
MAX_PRICE = Decimal("100000")
MAX_UNIT_PRICE = Decimal("1000")
MAX_PRIORITY = 1000
MAX_VALIDITY_DAYS = 366
MAX_CHARGES = 10
MAX_INCLUDES = 20
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Allowance:
    """An allowance as the tenant states it: MB, minutes or messages; `amount` None is unlimited."""

    service: str
    zone: str = "home"
    amount: int | None = 0
    fair_use_amount: int | None = None
    roam_like_at_home: bool = False
    eu_fair_use_amount: int | None = None
    rollover_cap: int = 0
    priority: int = 100

    def as_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "zone": self.zone,
            "amount": self.amount,
            "fair_use_amount": self.fair_use_amount,
            "roam_like_at_home": self.roam_like_at_home,
            "eu_fair_use_amount": self.eu_fair_use_amount,
            "rollover_cap": self.rollover_cap,
            "priority": self.priority,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Allowance:
        return cls(
            service=data["service"],
            zone=data.get("zone", "home"),
            amount=data.get("amount"),
            fair_use_amount=data.get("fair_use_amount"),
            roam_like_at_home=bool(data.get("roam_like_at_home", False)),
            eu_fair_use_amount=data.get("eu_fair_use_amount"),
            rollover_cap=int(data.get("rollover_cap") or 0),
            priority=int(data.get("priority", 100)),
        )


@dataclass(frozen=True)
class OneTimeCharge:
    """A charge billed once, on a line's first invoice (activation, SIM)."""

    code: str
    name: str
    amount: Decimal
    tax_category: str = "standard"

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "amount": str(self.amount), "tax_category": self.tax_category}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OneTimeCharge:
        return cls(data["code"], data["name"], Decimal(data["amount"]), data.get("tax_category", "standard"))


@dataclass(frozen=True)
class VersionTerms:
    """What a version gives and costs. `price` is per monthly period (plan, bundle) or per purchase."""

    price: Decimal
    allowances: tuple[Allowance, ...] = ()
    # Per stated unit beyond the allowances, by zone then service; "home" is needed, other zones optional.
    usage_prices: Mapping[str, Mapping[str, Decimal]] = field(default_factory=dict)
    tax_category: str = "standard"
    charges: tuple[OneTimeCharge, ...] = ()
    rate_card_id: str | None = None
    validity_days: int | None = None
    includes: tuple[str, ...] = ()

    @classmethod
    def of(cls, version: OfferVersion) -> VersionTerms:
        return cls(
            price=version.price,
            allowances=tuple(Allowance.from_json(a) for a in version.allowances),
            usage_prices={
                zone: {service: Decimal(str(price)) for service, price in prices.items()}
                for zone, prices in version.usage_prices.items()
            },
            tax_category=version.tax_category,
            charges=tuple(OneTimeCharge.from_json(c) for c in version.charges),
            rate_card_id=version.rate_card_id,
            validity_days=version.validity_days,
            includes=tuple(version.includes),
        )


@dataclass(frozen=True)
class OfferTerms:
    """The flat terms of the first offers: a monthly price, home allowances and home overage prices."""

    price: Decimal
    data_mb: int
    voice_minutes: int
    sms: int
    overage_data_per_mb: Decimal
    overage_voice_per_minute: Decimal
    overage_sms_per_message: Decimal

    def version_terms(self) -> VersionTerms:
        return VersionTerms(
            price=self.price,
            allowances=(
                Allowance("data", "home", self.data_mb),
                Allowance("voice", "home", self.voice_minutes),
                Allowance("sms", "home", self.sms),
            ),
            usage_prices={
                "home": {
                    "data": self.overage_data_per_mb,
                    "voice": self.overage_voice_per_minute,
                    "sms": self.overage_sms_per_message,
                }
            },
        )


def _allowance_problems(allowances: Sequence[Allowance]) -> dict[str, list[str]]:
    problems: dict[str, list[str]] = {}
    seen: set[tuple[str, str]] = set()
    for index, a in enumerate(allowances):
        found: list[str] = []
        if a.service not in SERVICES:
            found.append(f"Unknown service {a.service!r}: one of {', '.join(SERVICES)}.")
        if a.zone not in ZONES:
            found.append(f"Unknown zone {a.zone!r}: one of {', '.join(ZONES)}.")
        limit = ALLOWANCE_LIMITS.get(a.service, 0)
        for name, value in (
            ("amount", a.amount),
            ("fair_use_amount", a.fair_use_amount),
            ("eu_fair_use_amount", a.eu_fair_use_amount),
            ("rollover_cap", a.rollover_cap),
        ):
            if value is not None and not 0 <= value <= limit:
                found.append(f"{name} must be 0 to {limit} for {a.service}.")
        if a.fair_use_amount is not None and a.amount is not None:
            found.append("fair_use_amount applies to an unlimited allowance only.")
        if a.roam_like_at_home and a.zone != "home":
            found.append("roam_like_at_home applies to a home allowance only.")
        if a.eu_fair_use_amount is not None and not a.roam_like_at_home:
            found.append("eu_fair_use_amount needs roam_like_at_home.")
        if not 0 <= a.priority <= MAX_PRIORITY:
            found.append(f"priority must be 0 to {MAX_PRIORITY}.")
        if (a.service, a.zone) in seen:
            found.append(f"A second {a.service} allowance for zone {a.zone}.")
        seen.add((a.service, a.zone))
        if found:
            problems[str(index)] = found
    return problems


def _price_problems(terms: VersionTerms) -> list[str]:
    found: list[str] = []
    if "home" not in terms.usage_prices:
        found.append("Home prices are needed.")
    for zone, prices in terms.usage_prices.items():
        if zone not in ZONES:
            found.append(f"Unknown zone {zone!r}.")
        for service, price in prices.items():
            if service not in SERVICES:
                found.append(f"Unknown service {service!r} in zone {zone}.")
            elif not price.is_finite() or not Decimal(0) <= price <= MAX_UNIT_PRICE:
                found.append(f"{zone} {service}: must be 0 to {MAX_UNIT_PRICE}.")
    return found


def _charge_problems(terms: VersionTerms) -> list[str]:
    codes = [c.code for c in terms.charges]
    found = [
        f"{c.code}: amount must be 0 to {MAX_PRICE} and tax_category one of {', '.join(TAX_CATEGORIES)}."
        for c in terms.charges
        if not (c.amount.is_finite() and Decimal(0) <= c.amount <= MAX_PRICE and c.tax_category in TAX_CATEGORIES)
    ]
    if len(set(codes)) != len(codes):
        found.append("Charge codes must be unique.")
    if len(codes) > MAX_CHARGES:
        found.append(f"At most {MAX_CHARGES} charges.")
    return found


def _kind_problems(kind: str, terms: VersionTerms) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if kind in ("addon", "topup"):
        if terms.validity_days is None or not 1 <= terms.validity_days <= MAX_VALIDITY_DAYS:
            errors["validity_days"] = [f"An {kind} lasts 1 to {MAX_VALIDITY_DAYS} days."]
    elif terms.validity_days is not None:
        errors["validity_days"] = [f"A {kind} renews every period; validity_days is for add-ons and top-ups."]
    if terms.includes and kind != "bundle":
        errors["includes"] = ["Only a bundle includes other offers."]
    if len(terms.includes) > MAX_INCLUDES:
        errors["includes"] = [f"At most {MAX_INCLUDES} offers."]
    return errors


def validate_terms(kind: str, terms: VersionTerms) -> None:
    """Refuse terms no one could mean: unknown zones or services, negative or absurd amounts."""
    allowance_problems = _allowance_problems(terms.allowances)
    if allowance_problems:
        raise InvalidAllowance("Some allowances cannot be offered.", errors={"allowances": allowance_problems})
    errors: dict[str, Any] = _kind_problems(kind, terms)
    if not terms.price.is_finite() or not Decimal(0) <= terms.price <= MAX_PRICE:
        errors["price"] = [f"Must be 0 to {MAX_PRICE}."]
    if terms.tax_category not in TAX_CATEGORIES:
        errors["tax_category"] = [f"One of {', '.join(TAX_CATEGORIES)}."]
    for name, found in (("usage_prices", _price_problems(terms)), ("charges", _charge_problems(terms))):
        if found:
            errors[name] = found
    if errors:
        raise InvalidOfferTerms("Some terms cannot be offered.", errors=errors)


def _check_references(session: Session, terms: VersionTerms) -> None:
    """The rate card and included add-ons must be the tenant's own."""
    if terms.rate_card_id is not None:
        # Rate cards belong to charging, above this layer: read by table name, scoped to the tenant explicitly.
        cards = table("rate_cards", sql_column("id"), sql_column("tenant_id"))
        found = session.scalar(
            select(cards.c.id).where(
                cards.c.id == terms.rate_card_id, cards.c.tenant_id == session.info.get("tenant_id")
            )
        )
        if found is None:
            raise RateCardUnknown(
                f"No rate card {terms.rate_card_id}.", errors={"rate_card_id": ["Not a rate card of the tenant."]}
            )
    if terms.includes:
        addons = set(
            session.scalars(
                select(Offer.id).where(Offer.id.in_(list(terms.includes)), Offer.kind.in_(("addon", "topup")))
            )
        )
        missing = [i for i in terms.includes if i not in addons]
        if missing:
            raise InvalidOfferTerms(
                "A bundle includes add-on or top-up offers of the tenant.",
                errors={"includes": [f"Not an add-on of the tenant: {', '.join(missing[:5])}."]},
            )


def _version_values(terms: VersionTerms) -> dict[str, Any]:
    return {
        "price": terms.price,
        "tax_category": terms.tax_category,
        "charges": [c.as_json() for c in terms.charges],
        "allowances": [a.as_json() for a in terms.allowances],
        "usage_prices": {
            zone: {service: str(price) for service, price in prices.items()}
            for zone, prices in terms.usage_prices.items()
        },
        "rate_card_id": terms.rate_card_id,
        "validity_days": terms.validity_days,
        "includes": list(terms.includes),
    }


def create_offer(
    session: Session,
    *,
    code: str,
    name: str,
    currency: str,
    terms: OfferTerms | VersionTerms,
    kind: str = "plan",
    public: bool = False,
    description: str = "",
) -> Offer:
    """A draft offer in the tenant's currency, with its terms as draft version 1; codes are unique per tenant."""
    if kind not in KINDS:
        raise InvalidOfferTerms(f"Unknown kind {kind!r}.", errors={"kind": [f"One of {', '.join(KINDS)}."]})
    version_terms = terms.version_terms() if isinstance(terms, OfferTerms) else terms
    validate_terms(kind, version_terms)
    if session.scalar(select(Offer.id).where(Offer.code == code)) is not None:
        raise OfferCodeTaken(f"An offer with code {code!r} already exists.")
    _check_references(session, version_terms)
    offer = Offer(
        id=new_id("off"),
        code=code,
        name=name,
        description=description,
        kind=kind,
        public=public,
        currency=currency,
        status="draft",
    )
    session.add(offer)
    session.flush()
    version = OfferVersion(
        id=new_id("ofv"),
        offer_id=offer.id,
        number=1,
        status="draft",
        existing_subscribers="keep",
        **_version_values(version_terms),
    )
    session.add(version)
    session.flush()
    record_event(session, "offer.created", offer.id, {"code": code, "kind": kind})
    record_event(session, "offer.version_created", version.id, {"offer": offer.id, "number": 1})
    return offer


def get_offer(session: Session, offer_id: str) -> Offer:
    return get_or_raise(session, Offer, offer_id, OfferNotFound, "offer")


def get_offer_by_code(session: Session, code: str) -> Offer | None:
    return session.scalar(select(Offer).where(Offer.code == code))


def _zone(session: Session, offer: Offer) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(get_tenant(session, offer.tenant_id).timezone)


def local_midnight(day: dt.date, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The UTC instant a local day begins in the zone."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(dt.UTC)


def _today(zone: zoneinfo.ZoneInfo, now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(zone).date()


def publish_offer(session: Session, offer_id: str) -> Offer:
    """Make a draft offer sellable, with its first draft version in force from today; again changes nothing."""
    offer = get_offer(session, offer_id)
    if offer.status == "published":
        return offer
    if offer.status != "draft":
        raise OfferNotPublishable(f"Offer {offer_id} is {offer.status}; only a draft can be published.")
    first = session.scalar(
        select(OfferVersion)
        .where(OfferVersion.offer_id == offer.id, OfferVersion.status == "draft")
        .order_by(OfferVersion.number)
        .limit(1)
    )
    if first is None:
        raise OfferNotPublishable(f"Offer {offer_id} has no draft version to publish.")
    zone = _zone(session, offer)
    today = _today(zone)
    if first.effective_from is None or first.effective_from < today:
        first.effective_from = today
    first.effective_from_at = local_midnight(first.effective_from, zone)
    first.status = "published"
    first.published_at = utcnow()
    offer.status = "published"
    offer.published_at = utcnow()
    record_event(session, "offer.published", offer.id, {"code": offer.code})
    record_event(
        session,
        "offer.version_published",
        first.id,
        {"offer": offer.id, "number": first.number, "effective_from": first.effective_from.isoformat()},
    )
    return offer


def retire_offer(session: Session, offer_id: str) -> Offer:
    """Stop selling an offer; lines on it keep their terms. Retiring again changes nothing."""
    offer = get_offer(session, offer_id)
    if offer.status == "retired":
        return offer
    offer.status = "retired"
    offer.retired_at = utcnow()
    record_event(session, "offer.retired", offer.id, {"code": offer.code})
    return offer


def sellable_offer(session: Session, offer_id: str) -> Offer:
    """The offer, if it can be sold now."""
    offer = get_offer(session, offer_id)
    if offer.status == "retired":
        raise OfferRetired(f"Offer {offer_id} is retired; it is no longer sold.")
    if offer.status != "published":
        raise OfferNotPublished(f"Offer {offer_id} is {offer.status}; publish it before selling it.")
    return offer


def list_versions(session: Session, offer_id: str) -> list[OfferVersion]:
    get_offer(session, offer_id)
    return list(
        session.scalars(select(OfferVersion).where(OfferVersion.offer_id == offer_id).order_by(OfferVersion.number))
    )


def get_version(session: Session, offer_id: str, version_id: str) -> OfferVersion:
    version = session.get(OfferVersion, version_id)
    if version is None or version.offer_id != offer_id:
        raise OfferVersionNotFound(f"No version {version_id} of offer {offer_id}.")
    return version


def _published_in_force(session: Session, offer_id: str, at: dt.datetime) -> OfferVersion | None:
    """The published version of the offer in force at `at` (the latest to have taken effect), if any."""
    return session.scalar(
        select(OfferVersion)
        .where(
            OfferVersion.offer_id == offer_id,
            OfferVersion.status == "published",
            OfferVersion.effective_from_at <= at,
        )
        .order_by(OfferVersion.effective_from_at.desc())
        .limit(1)
    )


def current_version(session: Session, offer_id: str, at: dt.datetime | None = None) -> OfferVersion | None:
    """The published version in force at `at` (now), else the first published, else the latest draft."""
    found = _published_in_force(session, offer_id, at or utcnow())
    if found is not None:
        return found
    return session.scalar(
        select(OfferVersion)
        .where(OfferVersion.offer_id == offer_id)
        .order_by((OfferVersion.status == "published").desc(), OfferVersion.number.desc())
        .limit(1)
    )


def current_versions(session: Session, offer_ids: Sequence[str]) -> dict[str, OfferVersion]:
    """The current version (as `current_version`) of each offer, in one query."""
    by_offer: dict[str, list[OfferVersion]] = {}
    for version in session.scalars(select(OfferVersion).where(OfferVersion.offer_id.in_(list(offer_ids)))):
        by_offer.setdefault(version.offer_id, []).append(version)
    return {offer_id: pick_current_version(versions, utcnow()) for offer_id, versions in by_offer.items()}


def _check_draft_dates(existing_subscribers: str, effective_from: dt.date | None, move_on: dt.date | None) -> None:
    if existing_subscribers not in POLICIES:
        raise InvalidOfferTerms("Unknown policy.", errors={"existing_subscribers": [f"One of {', '.join(POLICIES)}."]})
    if move_on is not None and existing_subscribers != "on_date":
        raise InvalidOfferTerms(
            "move_on is for on_date.", errors={"move_on": ['Only with existing_subscribers "on_date".']}
        )
    if move_on is not None and effective_from is not None and move_on < effective_from:
        raise InvalidOfferTerms(
            "Lines cannot move before the version is in force.",
            errors={"move_on": ["Must be on or after effective_from."]},
        )


def create_version(
    session: Session,
    offer_id: str,
    *,
    terms: VersionTerms,
    effective_from: dt.date | None,
    existing_subscribers: str = "keep",
    move_on: dt.date | None = None,
) -> OfferVersion:
    """A draft version of the offer's terms, numbered after the last."""
    offer = get_offer(session, offer_id)
    if offer.status == "retired":
        raise OfferRetired(f"Offer {offer_id} is retired.")
    validate_terms(offer.kind, terms)
    _check_draft_dates(existing_subscribers, effective_from, move_on)
    _check_references(session, terms)
    number = (session.scalar(select(func.max(OfferVersion.number)).where(OfferVersion.offer_id == offer_id)) or 0) + 1
    version = OfferVersion(
        id=new_id("ofv"),
        offer_id=offer_id,
        number=number,
        status="draft",
        effective_from=effective_from,
        existing_subscribers=existing_subscribers,
        move_on=move_on,
        **_version_values(terms),
    )
    session.add(version)
    session.flush()
    record_event(session, "offer.version_created", version.id, {"offer": offer_id, "number": number})
    return version


def _draft(session: Session, offer_id: str, version_id: str) -> OfferVersion:
    version = get_version(session, offer_id, version_id)
    if version.status != "draft":
        raise VersionImmutable(f"Version {version.number} is published; publish a new version to change the terms.")
    return version


def update_version(
    session: Session,
    offer_id: str,
    version_id: str,
    *,
    terms: VersionTerms | None = None,
    effective_from: dt.date | None = None,
    existing_subscribers: str | None = None,
    move_on: dt.date | None = None,
) -> OfferVersion:
    """Change a draft version; a published one never changes."""
    version = _draft(session, offer_id, version_id)
    offer = get_offer(session, offer_id)
    if terms is not None:
        validate_terms(offer.kind, terms)
        _check_references(session, terms)
        for name, value in _version_values(terms).items():
            setattr(version, name, value)
    policy = existing_subscribers or version.existing_subscribers
    when = effective_from or version.effective_from
    moved = move_on or (version.move_on if policy == "on_date" else None)
    _check_draft_dates(policy, when, moved)
    version.existing_subscribers, version.effective_from, version.move_on = policy, when, moved
    return version


def delete_version(session: Session, offer_id: str, version_id: str) -> None:
    """Forget a draft version; the only version of a draft offer stays."""
    version = _draft(session, offer_id, version_id)
    others = session.scalar(
        select(func.count(OfferVersion.id)).where(OfferVersion.offer_id == offer_id, OfferVersion.id != version_id)
    )
    if not others:
        raise VersionImmutable("An offer keeps at least one version.")
    session.delete(version)
    session.flush()


def move_instant(version: OfferVersion, zone: zoneinfo.ZoneInfo) -> dt.datetime | None:
    """When lines already on the offer move to this version (None: they keep theirs)."""
    assert version.effective_from is not None
    if version.existing_subscribers == "on_date":
        return local_midnight(version.move_on or version.effective_from, zone)
    if version.existing_subscribers == "at_renewal":
        day = version.effective_from
        if day.day != 1:  # the next period's start; a version in force from a 1st moves lines that day
            day = dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)
        return local_midnight(day, zone)
    return None


def publish_version(session: Session, offer_id: str, version_id: str) -> OfferVersion:
    """Publish a draft version: in force for new sales from its date, and moving lines as its policy says."""
    # The offer's row is locked: two versions published at once are checked against each other in turn.
    offer = session.get(Offer, offer_id, with_for_update=True)
    if offer is None:
        raise OfferNotFound(f"No offer {offer_id}.")
    version = get_version(session, offer_id, version_id)
    if version.status == "published":
        return version
    if offer.status == "retired":
        raise OfferRetired(f"Offer {offer_id} is retired.")
    if offer.status != "published":
        raise OfferNotPublished(f"Offer {offer_id} is a draft; publish the offer first (POST .../publish).")
    if version.effective_from is None:
        raise VersionDateRequired(
            "A version needs the date it comes into force.", errors={"effective_from": ["Required to publish."]}
        )
    zone = _zone(session, offer)
    if version.effective_from < _today(zone):
        raise VersionEffectiveInPast(
            f"effective_from {version.effective_from} is in the past in {zone.key}.",
            errors={"effective_from": ["Must be today or later."]},
        )
    previous = session.scalar(
        select(OfferVersion)
        .where(OfferVersion.offer_id == offer_id, OfferVersion.status == "published")
        .order_by(OfferVersion.effective_from_at.desc())
        .limit(1)
    )
    if (
        previous is not None
        and previous.effective_from is not None
        and version.effective_from <= previous.effective_from
    ):
        raise VersionDatesOverlap(
            f"Version {previous.number} is in force from {previous.effective_from}; "
            "a later version must start after it."
        )
    _check_references(session, VersionTerms.of(version))
    version.status = "published"
    version.effective_from_at = local_midnight(version.effective_from, zone)
    version.published_at = utcnow()
    if previous is not None:
        previous.effective_to_at = version.effective_from_at
    session.flush()
    moved_at = move_instant(version, zone)
    if moved_at is not None:
        _move_lines(session, offer_id, version.id, moved_at)
    record_event(
        session,
        "offer.version_published",
        version.id,
        {
            "offer": offer_id,
            "number": version.number,
            "effective_from": version.effective_from.isoformat(),
            "existing_subscribers": version.existing_subscribers,
        },
    )
    return version


def _move_lines(session: Session, offer_id: str, version_id: str, at: dt.datetime) -> None:
    """Close each line's open terms on this offer at `at` and open the new version's: two statements."""
    open_terms = and_(
        SubscriptionTerm.offer_id == offer_id,
        SubscriptionTerm.valid_to.is_(None),
        SubscriptionTerm.offer_version_id != version_id,
        SubscriptionTerm.valid_from < at,
    )
    base = new_id("stm") + "-"
    number = func.row_number().over(order_by=SubscriptionTerm.id)
    rows = select(
        literal(base) + cast(number, String),
        SubscriptionTerm.tenant_id,
        SubscriptionTerm.subscription_id,
        SubscriptionTerm.offer_id,
        literal(version_id),
        literal(at, SubscriptionTerm.valid_from.type),
        literal(utcnow(), SubscriptionTerm.created_at.type),
    ).where(open_terms)
    session.execute(
        insert(SubscriptionTerm).from_select(
            ["id", "tenant_id", "subscription_id", "offer_id", "offer_version_id", "valid_from", "created_at"], rows
        )
    )
    session.execute(
        update(SubscriptionTerm)
        .where(
            SubscriptionTerm.offer_id == offer_id,
            SubscriptionTerm.valid_to.is_(None),
            SubscriptionTerm.offer_version_id != version_id,
            SubscriptionTerm.valid_from < at,
        )
        .values(valid_to=at)
        .execution_options(synchronize_session=False)
    )


def version_for_sale(session: Session, offer_id: str, at: dt.datetime) -> OfferVersion:
    """The published version new sales get at `at`: the last in force, else the first to come."""
    found = _published_in_force(session, offer_id, at) or session.scalar(
        select(OfferVersion)
        .where(OfferVersion.offer_id == offer_id, OfferVersion.status == "published")
        .order_by(OfferVersion.effective_from_at)
        .limit(1)
    )
    if found is None:
        raise OfferNotPublished(f"Offer {offer_id} has no published version.")
    return found


def start_terms(session: Session, *, subscription_id: str, offer_id: str, at: dt.datetime | None = None) -> None:
    """A new line's terms: the version on sale now, then any published move to come (a later version's policy)."""
    at = at or utcnow()
    offer = get_offer(session, offer_id)
    current = version_for_sale(session, offer_id, at)
    zone = _zone(session, offer)
    later = session.scalars(
        select(OfferVersion)
        .where(
            OfferVersion.offer_id == offer_id,
            OfferVersion.status == "published",
            OfferVersion.effective_from_at > current.effective_from_at,
        )
        .order_by(OfferVersion.effective_from_at)
    )
    periods: list[tuple[str, dt.datetime]] = [(current.id, at)]
    for version in later:
        moved_at = move_instant(version, zone)
        if moved_at is not None and moved_at > periods[-1][1]:
            periods.append((version.id, moved_at))
    for index, (version_id, valid_from) in enumerate(periods):
        valid_to = periods[index + 1][1] if index + 1 < len(periods) else None
        session.add(
            SubscriptionTerm(
                id=new_id("stm"),
                subscription_id=subscription_id,
                offer_id=offer_id,
                offer_version_id=version_id,
                valid_from=valid_from,
                valid_to=valid_to,
            )
        )
    session.flush()


def public_offers(session: Session, tenant_id: str) -> list[tuple[Offer, OfferVersion]]:
    """The tenant's offers an app may sell (published, public), each with its version in force now."""
    offers = list(
        session.scalars(
            select(Offer)
            .where(Offer.tenant_id == tenant_id, Offer.status == "published", Offer.public.is_(True))
            .order_by(Offer.id)
        )
    )
    current = current_versions(session, [o.id for o in offers])
    return [(o, current[o.id]) for o in offers if o.id in current and current[o.id].status == "published"]
