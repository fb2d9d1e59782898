"""Tenant jobs: webhook deliveries, offboarding."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy.orm import Session

from mvne.infra.crypto import SecretBox
from mvne.infra.jobs import QUEUE_DEFAULT, job
from mvne.infra.runtime import current_runtime
from mvne.tenants import offboarding, webhooks


@functools.lru_cache(maxsize=4)
def _box(key: str) -> SecretBox:
    return SecretBox.from_setting(key)


def _delivery_dead_lettered(session: Session, payload: dict[str, Any], error: str) -> None:
    webhooks.fail_delivery(session, tenant_id=payload["tenant_id"], delivery_id=payload["delivery_id"], reason=error)


def _delivery_replayed(session: Session, payload: dict[str, Any]) -> None:
    webhooks.reopen_delivery(session, tenant_id=payload["tenant_id"], delivery_id=payload["delivery_id"])


# Attempts are counted on the delivery row; the broker only spaces them out with its backoff.
# A delivery whose job fails for good (an error other than the endpoint's) is marked failed with it.
@job(
    "tenants.deliver_webhook",
    queue=QUEUE_DEFAULT,
    max_retries=webhooks.MAX_ATTEMPTS + 2,
    on_dead_letter=_delivery_dead_lettered,
    on_replay=_delivery_replayed,
)
def deliver_webhook(tenant_id: str, delivery_id: str) -> None:
    """POST one event to one endpoint; raise to be retried later when the endpoint failed."""
    rt = current_runtime()
    webhooks.deliver(
        rt.db,
        tenant_id=tenant_id,
        delivery_id=delivery_id,
        box=_box(rt.settings.sim_key),
        allow_private=rt.settings.webhook_allow_private,
    )


# Long: the worker renews the lease while it runs; a killed worker's job is sent again and finishes the work.
@job("tenants.offboard_tenant", queue=QUEUE_DEFAULT, time_limit_ms=6 * 60 * 60 * 1000)
def offboard_tenant(tenant_id: str) -> None:
    """Export every row and object of an offboarding tenant to storage, then erase them (resumable)."""
    rt = current_runtime()
    offboarding.offboard_tenant(rt.db, rt.storage, tenant_id)
