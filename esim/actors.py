"""eSIM jobs."""

from __future__ import annotations

from mvne.esim import sandbox
from mvne.infra.jobs import QUEUE_PROVISIONING, job
from mvne.infra.runtime import current_runtime


@job("esim.load_profile_pool", queue=QUEUE_PROVISIONING)
def load_profile_pool(tenant_id: str, batch_id: str) -> None:
    """Hand a new profile batch to the sandbox SM-DP+ (a real SM-DP+ gets it from the SIM vendor)."""
    rt = current_runtime()
    if rt.settings.smdp_sandbox:
        sandbox.load_batch(rt.db, rt.settings.smdp_url, tenant_id=tenant_id, batch_id=batch_id)
