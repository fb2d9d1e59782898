"""Offers and their immutable versions, the terms each line is on over time, purchases and promotions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Date, ForeignKey, Index, Integer, String, UniqueConstraint, false, select, text
from sqlalchemy.orm import Mapped, mapped_column, object_session

from mvne.infra.db import Base, JSONValue, TenantOwned, utcnow


class Offer(TenantOwned, Base):
    """What a tenant sells: its identity. What it gives and costs lives in its versions."""

    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    # plan (a line's monthly terms) | addon | topup (bought on a line) | bundle (add-ons sold together)
    kind: Mapped[str] = mapped_column(String(20), default="plan")
    # draft -> published -> retired
    status: Mapped[str] = mapped_column(String(20), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    # A white-label app may sell it (it shows in the public catalogue).
    public: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()
    retired_at: Mapped[dt.datetime | None] = mapped_column()

    # The current version's home terms in the flat shape of the first offers, for readers that do not yet
    # follow a line's own terms (`mvne.catalog.terms`); read once per loaded offer.
    def _current(self) -> OfferVersion:
        cached = self.__dict__.get("_current_version")
        if cached is None:
            session = object_session(self)
            if session is None:
                raise RuntimeError(f"offer {self.id} is detached; its terms live in its versions")
            versions = list(session.scalars(select(OfferVersion).where(OfferVersion.offer_id == self.id)))
            cached = pick_current_version(versions, utcnow())
            self.__dict__["_current_version"] = cached
        return cast(OfferVersion, cached)

    def _home_amount(self, service: str) -> int:
        for allowance in self._current().allowances:
            if allowance.get("service") == service and allowance.get("zone", "home") == "home":
                return int(allowance["amount"]) if allowance.get("amount") is not None else 0
        return 0

    def _home_price(self, service: str) -> Decimal:
        return Decimal(str(self._current().usage_prices.get("home", {}).get(service, "0")))

    @property
    def price(self) -> Decimal:
        return self._current().price

    @property
    def data_mb(self) -> int:
        return self._home_amount("data")

    @property
    def voice_minutes(self) -> int:
        return self._home_amount("voice")

    @property
    def sms(self) -> int:
        return self._home_amount("sms")

    @property
    def overage_data_per_mb(self) -> Decimal:
        return self._home_price("data")

    @property
    def overage_voice_per_minute(self) -> Decimal:
        return self._home_price("voice")

    @property
    def overage_sms_per_message(self) -> Decimal:
        return self._home_price("sms")


class OfferVersion(TenantOwned, Base):
    """One set of an offer's terms, in force from a local date; a published version never changes.

    Allowances are kept in stated units (MB, minutes, messages) as the tenant wrote them; prices as strings
    of decimals in JSON so nothing passes through a float.
    """

    __tablename__ = "offer_versions"
    __table_args__ = (
        UniqueConstraint("offer_id", "number"),
        Index("ix_offer_versions_in_force", "offer_id", "status", "effective_from_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"))
    number: Mapped[int] = mapped_column(Integer)
    # draft -> published
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # The local date (tenant's time zone) it comes into force, and that date's midnight in UTC.
    effective_from: Mapped[dt.date | None] = mapped_column(Date)
    effective_from_at: Mapped[dt.datetime | None] = mapped_column()
    # Set when a later version is published: when this one stops applying to new sales.
    effective_to_at: Mapped[dt.datetime | None] = mapped_column()
    price: Mapped[Decimal] = mapped_column()
    tax_category: Mapped[str] = mapped_column(String(20), default="standard")
    # One-time charges on the line's first invoice: [{"code", "name", "amount", "tax_category"}]
    charges: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    # [{"service", "zone", "amount" (None: unlimited), "fair_use_amount", "roam_like_at_home",
    #   "eu_fair_use_amount", "rollover_cap", "priority"}], amounts in stated units
    allowances: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    # {"home": {"data": "0.01", "voice": "0.05", "sms": "0.05"}, "eu": {...}, "world": {...}}
    usage_prices: Mapped[dict[str, Any]] = mapped_column(JSONValue, default=dict)
    rate_card_id: Mapped[str | None] = mapped_column(String(40))
    validity_days: Mapped[int | None] = mapped_column(Integer)
    # A bundle's add-on offers.
    includes: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    # keep | on_date | at_renewal: what happens to lines already on the offer when this version is published.
    existing_subscribers: Mapped[str] = mapped_column(String(20), default="keep")
    move_on: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()


def pick_current_version(versions: list[OfferVersion], at: dt.datetime) -> OfferVersion:
    """The published version in force at `at`, else the first published to come, else the latest draft."""
    published = sorted(
        (v for v in versions if v.status == "published" and v.effective_from_at is not None),
        key=lambda v: v.effective_from_at or at,
    )
    in_force = [v for v in published if v.effective_from_at is not None and v.effective_from_at <= at]
    if in_force:
        return in_force[-1]
    if published:
        return published[0]
    return max(versions, key=lambda v: v.number)


class SubscriptionTerm(TenantOwned, Base):
    """The offer version a line is on from `valid_from` until `valid_to` (None: still)."""

    __tablename__ = "subscription_terms"
    __table_args__ = (
        Index("ix_subscription_terms_line", "subscription_id", "valid_from"),
        Index("ix_subscription_terms_version", "offer_version_id", "valid_to"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"))
    offer_version_id: Mapped[str] = mapped_column(ForeignKey("offer_versions.id"))
    valid_from: Mapped[dt.datetime] = mapped_column()
    valid_to: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Promotion(TenantOwned, Base):
    """A discount code: a percent or an amount off, for some invoices (`cycles`) or forever."""

    __tablename__ = "promotions"
    # Codes are unique per tenant whatever their case.
    __table_args__ = (UniqueConstraint("tenant_id", "code_key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    code_key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    # percent | amount
    kind: Mapped[str] = mapped_column(String(10))
    value: Mapped[Decimal] = mapped_column()
    cycles: Mapped[int | None] = mapped_column(Integer)
    max_redemptions: Mapped[int | None] = mapped_column(Integer)
    redemptions: Mapped[int] = mapped_column(Integer, default=0)
    valid_from: Mapped[dt.datetime | None] = mapped_column()
    valid_until: Mapped[dt.datetime | None] = mapped_column()
    # Empty: any offer.
    offer_ids: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    # active | disabled
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column()


class PromotionRedemption(TenantOwned, Base):
    """A promotion applied to a line (its recurring fee) or to one purchase; `cycles_used` counts its invoices."""

    __tablename__ = "promotion_redemptions"
    __table_args__ = (Index("ix_promotion_redemptions_line", "subscription_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    promotion_id: Mapped[str] = mapped_column(ForeignKey("promotions.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    purchase_id: Mapped[str | None] = mapped_column(String(40))
    cycles_used: Mapped[int] = mapped_column(Integer, default=0)
    # The last invoice that counted it, so an invoice counts it once.
    last_invoice_id: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OfferPurchase(TenantOwned, Base):
    """An add-on, top-up or bundle bought on a line; billed on the next invoice (`invoice_id` claims it).

    A bundle renews at the end of its term: the renewal is a purchase of its own, naming the one it renews;
    `renews` is true on the latest term only, until the bundle is cancelled or its line ends.
    """

    __tablename__ = "offer_purchases"
    __table_args__ = (
        Index("ix_offer_purchases_unbilled", "subscription_id", "invoice_id"),
        UniqueConstraint("renewed_from_id"),
        Index("ix_offer_purchases_renewing", "valid_to", postgresql_where=text("renews"), sqlite_where=text("renews")),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"))
    offer_version_id: Mapped[str] = mapped_column(ForeignKey("offer_versions.id"))
    name: Mapped[str] = mapped_column(String(200))
    price: Mapped[Decimal] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    tax_category: Mapped[str] = mapped_column(String(20), default="standard")
    promotion_id: Mapped[str | None] = mapped_column(String(40))
    discount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    valid_from: Mapped[dt.datetime] = mapped_column()
    valid_to: Mapped[dt.datetime] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    invoice_id: Mapped[str | None] = mapped_column(String(40))
    renews: Mapped[bool] = mapped_column(default=False, server_default=false())
    renewed_from_id: Mapped[str | None] = mapped_column(String(40))
    # Why a bundle stopped renewing: "cancelled", or "line_ended" (its line was terminated).
    renewal_stopped: Mapped[str | None] = mapped_column(String(20))
    renewal_stopped_at: Mapped[dt.datetime | None] = mapped_column()
