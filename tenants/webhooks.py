"""Webhooks: every event of a tenant POSTed to its endpoints, signed, retried with backoff, replayable.

Deliveries are rows written in the transaction of the event, with their job in the outbox, so an event
committed is an event delivered (or visibly failed). The signature is HMAC-SHA256 over
`<timestamp>.<body>` with the endpoint's secret, sent as `Mvne-Signature: t=<timestamp>,v1=<hex>`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.infra.crypto import SecretBox
from mvne.infra.db import Database, get_or_raise, utcnow
from mvne.infra.errors import InvalidInput, NotFound
from mvne.infra.ids import new_id, new_ids
from mvne.infra.jobs import enqueue, enqueue_many
from mvne.tenants.models import Event, WebhookDelivery, WebhookEndpoint

MAX_ATTEMPTS = 8
TIMEOUT_S = 10.0
SIGNATURE_HEADER = "Mvne-Signature"


class WebhookEndpointNotFound(NotFound):
    code = "webhook_endpoint_not_found"


class WebhookDeliveryNotFound(NotFound):
    code = "webhook_delivery_not_found"


class InvalidWebhookUrl(InvalidInput):
    code = "invalid_webhook_url"


class DeliveryFailed(Exception):
    """An attempt failed and another is due: the job raises it so the broker retries with backoff."""


@dataclass(frozen=True)
class CreatedEndpoint:
    endpoint: WebhookEndpoint
    secret: str


def check_url(url: str, *, allow_private: bool) -> None:
    """Refuse URLs that are not http(s), and (unless allowed) ones resolving to private addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidWebhookUrl("A webhook URL must be http(s) with a host.", errors={"url": ["Must be http(s)."]})
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except socket.gaierror:
        raise InvalidWebhookUrl(f"Host {parts.hostname} does not resolve.", errors={"url": ["Unknown host."]}) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InvalidWebhookUrl(
                "Webhook URLs must reach the public internet.", errors={"url": ["Private address."]}
            )


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def create_endpoint(
    session: Session, *, tenant_id: str, url: str, event_types: list[str], box: SecretBox, allow_private: bool
) -> CreatedEndpoint:
    """Register an endpoint; its signing secret is returned once."""
    check_url(url, allow_private=allow_private)
    endpoint_id = new_id("whe")
    secret = f"whsec_{secrets.token_urlsafe(32)}"
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=tenant_id,
        url=url,
        event_types=sorted(set(event_types)) or ["*"],
        secret_encrypted=box.encrypt(secret.encode(), endpoint_id.encode()),
        status="enabled",
    )
    session.add(endpoint)
    session.flush()
    return CreatedEndpoint(endpoint, secret)


def get_endpoint(session: Session, endpoint_id: str) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.status == "deleted":
        raise WebhookEndpointNotFound(f"No webhook endpoint {endpoint_id}.")
    return endpoint


def delete_endpoint(session: Session, endpoint_id: str) -> None:
    """Stop sending to an endpoint; its past deliveries stay readable."""
    get_endpoint(session, endpoint_id).status = "deleted"


def fan_out(session: Session, tenant_id: str, events: list[Event]) -> None:
    """Queue each event for each of the tenant's endpoints that wants it (in the events' transaction)."""
    endpoints = session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.status == "enabled")
    ).all()
    wanted = [(event, endpoint) for event in events for endpoint in endpoints if endpoint.wants(event.type)]
    if not wanted:
        return
    deliveries = [
        WebhookDelivery(
            id=delivery_id,
            tenant_id=tenant_id,
            endpoint_id=endpoint.id,
            event_id=event.id,
            event_type=event.type,
            status="pending",
        )
        for delivery_id, (event, endpoint) in zip(new_ids("whd", len(wanted)), wanted, strict=True)
    ]
    session.add_all(deliveries)
    # A chunk of rating may cross hundreds of thresholds: their jobs go in one statement.
    enqueue_many(
        session, "tenants.deliver_webhook", [(None, {"delivery_id": d.id}) for d in deliveries], tenant_id=tenant_id
    )


def get_delivery(session: Session, delivery_id: str) -> WebhookDelivery:
    return get_or_raise(session, WebhookDelivery, delivery_id, WebhookDeliveryNotFound, "webhook delivery")


def replay_delivery(session: Session, tenant_id: str, delivery_id: str) -> WebhookDelivery:
    """Send a delivery again, whatever became of it, with a fresh set of attempts."""
    delivery = get_delivery(session, delivery_id)
    get_endpoint(session, delivery.endpoint_id)
    delivery.status = "pending"
    delivery.attempts = 0
    enqueue(session, "tenants.deliver_webhook", tenant_id=tenant_id, delivery_id=delivery.id)
    return delivery


def fail_delivery(session: Session, *, tenant_id: str, delivery_id: str, reason: str) -> bool:
    """Mark a pending delivery failed with the reason (its job failed for good); True when it was marked.

    Works in a platform-scoped session (the job ledger's).
    """
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.tenant_id != tenant_id or delivery.status != "pending":
        return False
    delivery.status = "failed"
    delivery.last_error = reason[:500]
    return True


def reopen_delivery(session: Session, *, tenant_id: str, delivery_id: str) -> bool:
    """A failed delivery whose job is replayed is pending again, with a fresh set of attempts."""
    delivery = session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.tenant_id != tenant_id or delivery.status != "failed":
        return False
    delivery.status = "pending"
    delivery.attempts = 0
    return True


def event_payload(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "tenant_id": event.tenant_id,
        "object_id": event.object_id,
        "data": event.data,
    }


def deliver(db: Database, *, tenant_id: str, delivery_id: str, box: SecretBox, allow_private: bool) -> str:
    """Make one attempt; returns the delivery's status, or raises DeliveryFailed when a retry is due."""
    with db.transaction(tenant_id=tenant_id) as session:
        delivery = get_delivery(session, delivery_id)
        if delivery.status != "pending":
            return delivery.status
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        event = session.get(Event, delivery.event_id)
        assert endpoint is not None
        assert event is not None
        if endpoint.status != "enabled":
            delivery.status = "cancelled"
            return delivery.status
        url = endpoint.url
        secret = box.decrypt(endpoint.secret_encrypted, endpoint.id.encode()).decode()
        body = json.dumps(event_payload(event), separators=(",", ":"), default=str).encode()
        event_type, event_id = event.type, event.id

    # The HTTP call is made outside any transaction: a slow endpoint holds no lock.
    status_code: int | None = None
    error: str | None = None
    try:
        check_url(url, allow_private=allow_private)  # DNS may have changed since the endpoint was made
        timestamp = int(time.time())
        response = httpx.post(
            url,
            content=body,
            timeout=TIMEOUT_S,
            follow_redirects=False,
            headers={
                "Content-Type": "application/json",
                "User-Agent": "mvne-webhooks/1",
                "Mvne-Event-Id": event_id,
                "Mvne-Event-Type": event_type,
                "Mvne-Delivery-Id": delivery_id,
                SIGNATURE_HEADER: sign(secret, timestamp, body),
            },
        )
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except (httpx.HTTPError, InvalidWebhookUrl) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]

    with db.transaction(tenant_id=tenant_id) as session:
        delivery = get_delivery(session, delivery_id)
        delivery.attempts += 1
        delivery.last_attempt_at = utcnow()
        delivery.last_status_code = status_code
        delivery.last_error = error
        if error is None:
            delivery.status = "succeeded"
            delivery.delivered_at = utcnow()
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = "failed"
        status = delivery.status
    if status == "pending":
        raise DeliveryFailed(f"delivery {delivery_id} attempt failed: {error}")
    return status
