"""eSIM jobs, and the periodic check that keeps sandbox profile pools from running dry."""

from __future__ import annotations

import datetime as dt
import logging

from mvne.esim import sandbox, service
from mvne.esim.tls import smdp_client_tls
from mvne.infra.crypto import SecretBox
from mvne.infra.jobs import QUEUE_PROVISIONING, enqueue, job
from mvne.infra.runtime import Runtime, current_runtime, periodic

log = logging.getLogger("mvne.esim")

POOL_CHECK_EVERY_S = 60


@job("esim.load_profile_pool", queue=QUEUE_PROVISIONING)
def load_profile_pool(tenant_id: str, batch_id: str) -> None:
    """Hand a new profile batch to the sandbox SM-DP+ (a real SM-DP+ gets it from the SIM vendor)."""
    rt = current_runtime()
    if rt.settings.smdp_sandbox:
        sandbox.load_batch(
            rt.db, rt.settings.smdp_url, tenant_id=tenant_id, batch_id=batch_id, tls=smdp_client_tls(rt.settings)
        )


@job("esim.replenish_pool", queue=QUEUE_PROVISIONING)
def replenish_pool(tenant_id: str) -> None:
    """Top up a sandbox tenant's pool running low; a live pool is grown by operators, so only warn."""
    rt = current_runtime()
    if not rt.settings.smdp_sandbox:
        with rt.db.transaction(platform=True) as session:
            available = service.pool_summary(session, tenant_id).available
        log.warning(
            "eSIM pool running low: grow it (mvne operator grow-pool)",
            extra={"tenant_id": tenant_id, "available": available},
        )
        return
    with rt.db.transaction(platform=True) as session:
        service.replenish_pool(session, tenant_id=tenant_id, box=SecretBox.from_setting(rt.settings.sim_key))


@periodic("esim.check_pools", every_s=POOL_CHECK_EVERY_S)
def check_pools(rt: Runtime) -> None:
    """Ask for a top-up of every sandbox pool below its low-water mark (reservations ask too)."""
    if not rt.settings.smdp_sandbox:
        return
    # One job per tenant and period: a top-up that failed is asked for again in the next one.
    period = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M")
    with rt.db.transaction(platform=True) as session:
        for tenant_id in service.tenants_below(session):
            enqueue(session, "esim.replenish_pool", tenant_id=tenant_id, key=f"replenish-{tenant_id}-at-{period}")
