"""Offers: what a tenant sells, with monthly price, allowances and overage prices."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import Base, TenantOwned, utcnow


class Offer(TenantOwned, Base):
    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("tenant_id", "code"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="draft")
    currency: Mapped[str] = mapped_column(String(3))
    price: Mapped[Decimal] = mapped_column()
    data_mb: Mapped[int] = mapped_column(Integer, default=0)
    voice_minutes: Mapped[int] = mapped_column(Integer, default=0)
    sms: Mapped[int] = mapped_column(Integer, default=0)
    overage_data_per_mb: Mapped[Decimal] = mapped_column()
    overage_voice_per_minute: Mapped[Decimal] = mapped_column()
    overage_sms_per_message: Mapped[Decimal] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column()
