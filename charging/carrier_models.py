"""Carrier billing: merchants that charge a tenant's lines, the tenant's policy, lines barred, charges and refunds."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import Base, TenantOwned, utcnow

# A merchant's reference is unique among its charges that went through; a refused one may be tried again.
_REFERENCE_HELD = "merchant_reference IS NOT NULL AND status <> 'refused'"
_CREDIT_UNBILLED = "invoice_id IS NULL AND settlement = 'credit'"


class CarrierBillingPolicy(TenantOwned, Base):
    """Whether the tenant's lines may pay merchants on their bill or balance: allowed, capped or barred.

    One per tenant, made the first time the tenant sets it; until then carrier billing is barred.
    """

    __tablename__ = "carrier_billing_policies"
    tenant_id_index = False  # the unique constraint leads with the tenant
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # allowed | capped | barred
    mode: Mapped[str] = mapped_column(String(10))
    # The most each line may be charged by merchants in a billing period (mode capped only).
    monthly_cap: Mapped[Decimal | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class LineCarrierBilling(TenantOwned, Base):
    """A line's own say on carrier billing: barred or not, whatever the tenant allows. No row: not barred."""

    __tablename__ = "line_carrier_billing"
    tenant_id_index = False  # looked up by line
    __table_args__ = (UniqueConstraint("subscription_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    barred: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Merchant(TenantOwned, Base):
    """A third party the tenant lets charge its lines, through an API client of its own."""

    __tablename__ = "merchants"
    __table_args__ = (UniqueConstraint("api_client_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # active | suspended (its charges are refused, merchant_suspended)
    status: Mapped[str] = mapped_column(String(20), default="active")
    # The client whose tokens charge as this merchant; revoked through /v1/api-clients like any other.
    api_client_id: Mapped[str] = mapped_column(ForeignKey("api_clients.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    suspended_at: Mapped[dt.datetime | None] = mapped_column()


class CarrierCharge(TenantOwned, Base):
    """A merchant's charge to a line: taken from its prepaid balance at once, or billed on its next invoice.

    A refused charge is kept too, with its code, so the tenant sees what merchants tried.
    """

    __tablename__ = "carrier_charges"
    __table_args__ = (
        Index("ix_carrier_charges_line", "subscription_id", "period"),
        Index("ix_carrier_charges_merchant", "merchant_id", "id"),
        Index(
            "uq_carrier_charges_merchant_reference",
            "merchant_id",
            "merchant_reference",
            unique=True,
            postgresql_where=text(_REFERENCE_HELD),
            sqlite_where=text(_REFERENCE_HELD),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    # NULL when the line named was not found.
    subscription_id: Mapped[str | None] = mapped_column(ForeignKey("subscriptions.id"))
    # The line as the merchant named it: a subscription id or an MSISDN.
    line_reference: Mapped[str] = mapped_column(String(64))
    msisdn: Mapped[str | None] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column()
    currency: Mapped[str] = mapped_column(String(3))
    refunded_amount: Mapped[Decimal] = mapped_column(default=Decimal(0))
    description: Mapped[str] = mapped_column(String(200))
    merchant_reference: Mapped[str | None] = mapped_column(String(100))
    # accepted | refunded (all of it) | refused
    status: Mapped[str] = mapped_column(String(20))
    refusal_code: Mapped[str | None] = mapped_column(String(40))
    refusal_detail: Mapped[str | None] = mapped_column(String(300))
    # balance (a prepaid line: taken at once) | invoice (a postpaid line: billed next); NULL when refused
    payment: Mapped[str | None] = mapped_column(String(10))
    # The billing period (YYYY-MM, the tenant's zone) whose cap the charge counts against.
    period: Mapped[str] = mapped_column(String(7))
    # The invoice that billed it (payment invoice); NULL until billed.
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CarrierRefund(TenantOwned, Base):
    """Money given back on a charge, by the merchant or the tenant.

    `settlement` says how: `balance` (back to the prepaid balance), `reduced` (the charge was not invoiced
    yet: it bills less), `credit` (it was: the next invoice credits it, and `invoice_id` names that invoice).
    """

    __tablename__ = "carrier_refunds"
    __table_args__ = (
        Index("ix_carrier_refunds_charge", "charge_id"),
        Index(
            "ix_carrier_refunds_unbilled",
            "subscription_id",
            postgresql_where=text(_CREDIT_UNBILLED),
            sqlite_where=text(_CREDIT_UNBILLED),
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    charge_id: Mapped[str] = mapped_column(ForeignKey("carrier_charges.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    amount: Mapped[Decimal] = mapped_column()
    settlement: Mapped[str] = mapped_column(String(10))
    # merchant | tenant
    requested_by: Mapped[str] = mapped_column(String(10))
    invoice_id: Mapped[str | None] = mapped_column(ForeignKey("invoices.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
