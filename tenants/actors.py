"""Tenant jobs: webhook deliveries."""

from __future__ import annotations

import functools

from mvne.infra.crypto import SecretBox
from mvne.infra.jobs import QUEUE_DEFAULT, job
from mvne.infra.runtime import current_runtime
from mvne.tenants import webhooks


@functools.lru_cache(maxsize=4)
def _box(key: str) -> SecretBox:
    return SecretBox.from_setting(key)


# Attempts are counted on the delivery row; the broker only spaces them out with its backoff.
@job("tenants.deliver_webhook", queue=QUEUE_DEFAULT, max_retries=webhooks.MAX_ATTEMPTS + 2)
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
