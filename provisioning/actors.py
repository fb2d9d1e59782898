"""Provisioning jobs: thin actors that load by id and call the service."""

from __future__ import annotations

import functools

from mvne.esim import sandbox
from mvne.esim.adapters import Es2PlusClient
from mvne.infra.crypto import SecretBox
from mvne.infra.jobs import QUEUE_PROVISIONING, job
from mvne.infra.runtime import current_runtime
from mvne.infra.settings import Settings
from mvne.provisioning import service
from mvne.provisioning.adapters import HostNetworkClient


@functools.lru_cache(maxsize=4)
def smdp_client(settings: Settings) -> Es2PlusClient:
    return Es2PlusClient(settings.smdp_url, settings.smdp_requester_id)


@functools.lru_cache(maxsize=4)
def network_client(settings: Settings) -> HostNetworkClient:
    return HostNetworkClient(settings.network_url)


@functools.lru_cache(maxsize=4)
def secret_box(settings: Settings) -> SecretBox:
    return SecretBox.from_setting(settings.sim_key)


@job("provisioning.activate_subscription", queue=QUEUE_PROVISIONING)
def activate_subscription(tenant_id: str, subscription_id: str) -> None:
    """Take a pending line to active (or failed) through the SM-DP+ and the host network."""
    rt = current_runtime()
    if rt.settings.smdp_sandbox:
        sandbox.load_pending_batches(rt.db, rt.settings.smdp_url, tenant_id=tenant_id)
    service.activate_subscription(
        rt.db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        smdp=smdp_client(rt.settings),
        network=network_client(rt.settings),
        storage=rt.storage,
        box=secret_box(rt.settings),
    )
