"""Loading profile batches into the SM-DP+ simulator through its admin API.

A production SM-DP+ receives profiles from the SIM vendor, not from us; the simulator's inventory
is filled here so that sandbox tenants can order eSIMs like live ones.
"""

from __future__ import annotations

import ssl

import httpx
from sqlalchemy import select

from mvne.esim.models import Sim, SimBatch
from mvne.infra.db import Database, utcnow


def load_batch(db: Database, smdp_url: str, *, tenant_id: str, batch_id: str, tls: bool | ssl.SSLContext = True) -> int:
    """Send the batch's profiles (ICCID, IMSI, profile type; never keys); idempotent.

    `tls` is httpx's `verify`: an SSLContext with our client certificate when the simulator asks for one.
    """
    with db.transaction(tenant_id=tenant_id) as session:
        sims = session.scalars(select(Sim).where(Sim.batch_id == batch_id).order_by(Sim.iccid)).all()
        profiles = [{"iccid": s.iccid, "imsi": s.imsi, "profile_type": s.profile_type} for s in sims]
    response = httpx.post(
        f"{smdp_url.rstrip('/')}/sim-admin/profiles", json={"profiles": profiles}, timeout=30, verify=tls
    )
    response.raise_for_status()
    with db.transaction(platform=True) as session:
        batch = session.get(SimBatch, batch_id)
        if batch is not None and batch.loaded_at is None:
            batch.loaded_at = utcnow()
    return len(profiles)


def load_pending_batches(db: Database, smdp_url: str, *, tenant_id: str, tls: bool | ssl.SSLContext = True) -> int:
    """Load the tenant's batches the SM-DP+ has not received yet (a line may be ordered before the job ran)."""
    with db.transaction(platform=True) as session:
        pending = session.scalars(
            select(SimBatch.id).where(SimBatch.tenant_id == tenant_id, SimBatch.loaded_at.is_(None))
        ).all()
    return sum(load_batch(db, smdp_url, tenant_id=tenant_id, batch_id=batch_id, tls=tls) for batch_id in pending)
