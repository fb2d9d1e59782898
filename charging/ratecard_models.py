"""Rate cards: per tenant and optionally per host network, in dated versions of prefix lines."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import Base, JSONValue, TenantOwned, utcnow


class RateCard(TenantOwned, Base):
    """What a tenant charges per destination; `network_agreement_id` NULL means any host network."""

    __tablename__ = "rate_cards"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    network_agreement_id: Mapped[str | None] = mapped_column(ForeignKey("network_agreements.id"))
    # retail (what subscribers pay) | wholesale (what the host network charges the tenant; needs the network)
    purpose: Mapped[str] = mapped_column(String(20), default="retail", server_default="retail")
    currency: Mapped[str] = mapped_column(String(3))
    # half_up | half_even | up | down, applied once to an event's amount at `precision` decimals
    rounding_mode: Mapped[str] = mapped_column(String(10))
    precision: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RateCardVersion(TenantOwned, Base):
    """A dated set of lines; a published version never changes (a new version replaces it)."""

    __tablename__ = "rate_card_versions"
    __table_args__ = (UniqueConstraint("rate_card_id", "number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    rate_card_id: Mapped[str] = mapped_column(ForeignKey("rate_cards.id"))
    number: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    # Local dates in `timezone` (the tenant's when the version was made) and the UTC instants of their midnights.
    effective_from: Mapped[dt.date] = mapped_column(Date)
    effective_to: Mapped[dt.date | None] = mapped_column(Date)
    effective_from_at: Mapped[dt.datetime] = mapped_column()
    effective_to_at: Mapped[dt.datetime | None] = mapped_column()
    timezone: Mapped[str] = mapped_column(String(64))
    # [{"name": "peak", "days": [1, 2, 3, 4, 5], "start": "08:00", "end": "20:00"}, ...] in local time
    time_bands: Mapped[list[Any]] = mapped_column(JSONValue, default=list)
    line_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()


class RateCardLine(TenantOwned, Base):
    """One prefix's rate for a service in a band ("" for any time); written in bulk, one multi-row insert."""

    __tablename__ = "rate_card_lines"
    __table_args__ = (UniqueConstraint("version_id", "service", "prefix", "time_band", "roaming"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("rate_card_versions.id"))
    prefix: Mapped[str] = mapped_column(String(16))
    zone: Mapped[str] = mapped_column(String(64))
    service: Mapped[str] = mapped_column(String(10))
    connect_fee: Mapped[Decimal] = mapped_column()
    price: Mapped[Decimal] = mapped_column()
    first_increment: Mapped[int] = mapped_column(Integer)
    next_increment: Mapped[int] = mapped_column(Integer)
    time_band: Mapped[str] = mapped_column(String(32), default="")
    zero_rated: Mapped[bool] = mapped_column(Boolean, default=False)
    premium: Mapped[bool] = mapped_column(Boolean, default=False)
    premium_cap: Mapped[Decimal | None] = mapped_column()
    # Where the subscriber roams when the line applies: "eu", "world"; "" for home.
    roaming: Mapped[str] = mapped_column(String(10), default="", server_default="")
