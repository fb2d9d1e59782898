"""Provisioning jobs: thin actors that load by id and call the service."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.orm import Session

from mvne.esim import sandbox
from mvne.esim.adapters import Es2PlusClient
from mvne.esim.tls import smdp_client_tls
from mvne.infra.crypto import SecretBox
from mvne.infra.jobs import QUEUE_PROVISIONING, job
from mvne.infra.runtime import current_runtime
from mvne.infra.settings import Settings
from mvne.provisioning import service
from mvne.provisioning.adapters import HostNetworkClient
from mvne.provisioning.models import Subscription
from mvne.tenants.service import record_event


@functools.lru_cache(maxsize=4)
def smdp_client(settings: Settings) -> Es2PlusClient:
    """The configured SM-DP+'s ES2+ client: our client certificate, its server checked by its CA when set."""
    return Es2PlusClient.from_settings(settings)


@functools.lru_cache(maxsize=4)
def network_client(settings: Settings) -> HostNetworkClient:
    return HostNetworkClient(settings.network_url)


@functools.lru_cache(maxsize=4)
def secret_box(settings: Settings) -> SecretBox:
    return SecretBox.from_setting(settings.sim_key)


def _activation_dead_lettered(session: Session, payload: dict[str, Any], error: str) -> None:
    """The activation job failed for good: the line and its order show it failed, and why."""
    service.fail_activation(
        session,
        tenant_id=payload["tenant_id"],
        subscription_id=payload["subscription_id"],
        code=service.ACTIVATION_JOB_FAILED,
        reason=error,
    )


def _activation_replayed(session: Session, payload: dict[str, Any]) -> None:
    """The failed activation job was replayed: a line it failed is pending again, and activation resumes."""
    sub = session.get(Subscription, payload["subscription_id"])
    if (
        sub is None
        or sub.tenant_id != payload["tenant_id"]
        or sub.status != "failed"
        or sub.failure_code != service.ACTIVATION_JOB_FAILED
    ):
        return
    sub.status = "pending"
    sub.failure_code = sub.failure_reason = None
    record_event(session, "subscription.activation_resumed", sub.id, {}, tenant_id=sub.tenant_id)


@job(
    "provisioning.activate_subscription",
    queue=QUEUE_PROVISIONING,
    on_dead_letter=_activation_dead_lettered,
    on_replay=_activation_replayed,
)
def activate_subscription(tenant_id: str, subscription_id: str) -> None:
    """Take a pending line to active (or failed) through the SM-DP+ and the host network."""
    rt = current_runtime()
    if rt.settings.smdp_sandbox:
        sandbox.load_pending_batches(rt.db, rt.settings.smdp_url, tenant_id=tenant_id, tls=smdp_client_tls(rt.settings))
    service.activate_subscription(
        rt.db,
        tenant_id=tenant_id,
        subscription_id=subscription_id,
        smdp=smdp_client(rt.settings),
        network=network_client(rt.settings),
        storage=rt.storage,
        box=secret_box(rt.settings),
    )
