"""SIM inventory: eSIM profiles a tenant can sell, with their secrets encrypted at rest."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import KEPT_AFTER_TENANT, Base, TenantOwned, utcnow


class SimBatch(Base):
    """A block of ICCID/IMSI serials handed to a tenant; a platform table so serials never collide."""

    __tablename__ = "sim_batches"
    # Kept after its tenant is offboarded: its serials are retired, never handed to another tenant.
    __table_args__ = {"info": {KEPT_AFTER_TENANT: True}}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(40), index=True)
    profile_type: Mapped[str] = mapped_column(String(64))
    first_serial: Mapped[int] = mapped_column(Integer, unique=True)
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    loaded_at: Mapped[dt.datetime | None] = mapped_column()


class Sim(TenantOwned, Base):
    __tablename__ = "sims"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    batch_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(10), default="esim")
    iccid: Mapped[str] = mapped_column(String(20), unique=True)
    imsi: Mapped[str] = mapped_column(String(15), unique=True)
    profile_type: Mapped[str] = mapped_column(String(64))
    ki_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    opc_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # available -> reserved -> in_use; the SM-DP+ profile state is tracked apart from it.
    status: Mapped[str] = mapped_column(String(20), default="available", index=True)
    smdp_state: Mapped[str | None] = mapped_column(String(20))
    matching_id: Mapped[str | None] = mapped_column(String(64))
    activation_code: Mapped[str | None] = mapped_column(String(255))
    qr_key: Mapped[str | None] = mapped_column(String(300))
    eid: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:  # never show secrets
        return f"<Sim {self.id} {self.iccid} {self.status}>"
