"""Lines (subscriptions), their numbers, and the number blocks tenants draw from."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import KEPT_AFTER_TENANT, Base, TenantOwned, utcnow


class NumberBlock(Base):
    """A range of MSISDNs held by one tenant; a platform table so ranges never overlap."""

    __tablename__ = "number_blocks"
    # Kept after its tenant is offboarded: the range is retired, never handed to another tenant.
    __table_args__ = (UniqueConstraint("country", "block"), {"info": {KEPT_AFTER_TENANT: True}})

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    country: Mapped[str] = mapped_column(String(2))
    block: Mapped[int] = mapped_column(Integer)
    prefix: Mapped[str] = mapped_column(String(16))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PhoneNumber(TenantOwned, Base):
    __tablename__ = "phone_numbers"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    msisdn: Mapped[str] = mapped_column(String(16), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="assigned")
    subscription_id: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Subscription(TenantOwned, Base):
    """A mobile line of a customer on an offer."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    offer_id: Mapped[str] = mapped_column(ForeignKey("offers.id"), index=True)
    sim_type: Mapped[str] = mapped_column(String(10))
    # pending -> active | failed; active -> suspended -> active; * -> terminated
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    msisdn: Mapped[str | None] = mapped_column(String(16), unique=True)
    sim_id: Mapped[str | None] = mapped_column(ForeignKey("sims.id"))
    network_provisioned_at: Mapped[dt.datetime | None] = mapped_column()
    failure_code: Mapped[str | None] = mapped_column(String(64))
    failure_reason: Mapped[str | None] = mapped_column(String(500))
    # A sandbox tenant's scripted outcome (mvne.provisioning.sandbox): always_succeeds, provisioning_fails, ...
    test_scenario: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[dt.datetime | None] = mapped_column()
    terminated_at: Mapped[dt.datetime | None] = mapped_column()


class NetworkAgreement(Base):
    """An agreement with a host network (MNO) whose radio network tenants' lines use; a platform table.

    Operators record them; a tenant chooses one of its country's as its host network. `simulated` is the
    platform's own network simulator (every sandbox line runs on it), `live` a real MNO's network.
    """

    __tablename__ = "network_agreements"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    host_mno: Mapped[str] = mapped_column(String(200))
    mcc: Mapped[str] = mapped_column(String(3))
    mnc: Mapped[str] = mapped_column(String(3))
    country: Mapped[str] = mapped_column(String(2), index=True)
    # simulated | live
    kind: Mapped[str] = mapped_column(String(20))
    # active (tenants may choose it) | retired (kept for those who chose it, offered to no one new)
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
