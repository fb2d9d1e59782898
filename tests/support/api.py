"""Calling the API in tests: tokens, tenants, and the usual objects, through the public endpoints."""

from __future__ import annotations

import datetime as dt
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask.testing import FlaskClient
from sqlalchemy import update

from mvne.infra.runtime import Runtime
from mvne.platform.auth import OPERATOR_SCOPES, TENANT_SCOPES
from mvne.tenants.service import issue_api_client

T = TypeVar("T")


class ApiCaller:
    """A test client that sends a bearer token and JSON, and returns parsed responses."""

    def __init__(self, client: FlaskClient, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def with_token(self, token: str | None) -> ApiCaller:
        return ApiCaller(self.client, token)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        headers.update(extra or {})
        return headers

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, headers=self.headers(), query_string=params)

    def post(self, path: str, body: Any = None, *, key: str | None = None) -> Any:
        extra = {"Idempotency-Key": key} if key else None
        return self.client.post(path, json=body, headers=self.headers(extra))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.open(path, method=method, json=body, headers=self.headers())


def token_for(client: FlaskClient, client_id: str, secret: str) -> str:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    assert response.status_code == 200, response.json
    return str(response.json["access_token"])


@dataclass(frozen=True)
class Operator:
    client_id: str
    secret: str
    api: ApiCaller


@dataclass(frozen=True)
class TenantHandle:
    id: str
    slug: str
    client_id: str
    secret: str
    api: ApiCaller


def make_operator(client: FlaskClient, runtime: Runtime) -> Operator:
    with runtime.db.transaction(platform=True) as session:
        issued = issue_api_client(
            session, tenant_id=None, name="test operator", scopes=list(OPERATOR_SCOPES), allowed=OPERATOR_SCOPES
        )
    return Operator(
        issued.client_id,
        issued.client_secret,
        ApiCaller(client, token_for(client, issued.client_id, issued.client_secret)),
    )


def make_tenant(
    client: FlaskClient,
    operator: Operator,
    *,
    country: str = "FR",
    currency: str = "EUR",
    timezone: str = "Europe/Paris",
    scopes: tuple[str, ...] = TENANT_SCOPES,
    status: str | None = None,
) -> TenantHandle:
    """A tenant made by the operator, live unless `status="onboarding"` (a sandbox), with a client of `scopes`."""
    slug = f"t-{secrets.token_hex(4)}"
    body = {"name": f"Brand {slug}", "slug": slug, "country": country, "currency": currency, "timezone": timezone}
    if status is not None:
        body["status"] = status
    response = operator.api.post("/v1/tenants", body)
    assert response.status_code == 201, response.json
    tenant_id = response.json["id"]
    response = operator.api.post(f"/v1/tenants/{tenant_id}/api-clients", {"name": "back end", "scopes": list(scopes)})
    assert response.status_code == 201, response.json
    creds = response.json
    api = ApiCaller(client, token_for(client, creds["client_id"], creds["client_secret"]))
    return TenantHandle(tenant_id, slug, creds["client_id"], creds["client_secret"], api)


OFFER = {
    "code": "S20",
    "name": "Simple 20",
    "price": "20.00",
    "allowances": {"data_mb": 1000, "voice_minutes": 60, "sms": 10},
    "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
}


def published_offer(api: ApiCaller, **changes: Any) -> dict[str, Any]:
    body = {**OFFER, **changes}
    created = api.post("/v1/offers", body)
    assert created.status_code == 201, created.json
    published = api.post(f"/v1/offers/{created.json['id']}/publish")
    assert published.status_code == 200, published.json
    return dict(published.json)


def customer(api: ApiCaller, name: str = "Ada Lovelace") -> dict[str, Any]:
    response = api.post(
        "/v1/customers",
        {
            "name": name,
            "email": f"{secrets.token_hex(4)}@example.com",
            "address": {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
        },
    )
    assert response.status_code == 201, response.json
    return dict(response.json)


def wait_for(check: Callable[[], T | None], *, timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def backdate_line(runtime: Runtime, subscription_id: str, activated_at: dt.datetime) -> None:
    """Make a line active since `activated_at`: billing runs bill ended periods, so a line must have lived in one.

    Done in the database, as a line migrated from another platform would carry its own activation date.
    """
    from mvne.provisioning.models import Subscription

    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(Subscription).where(Subscription.id == subscription_id).values(activated_at=activated_at)
        )


def last_period(zone: str = "Europe/Paris") -> tuple[str, dt.datetime]:
    """The most recent period that has ended in `zone`, and the instant it began."""
    from mvne.charging.billing import last_ended_period

    return last_ended_period(zone)


def active_subscription(api: ApiCaller, customer_id: str, offer_id: str) -> dict[str, Any]:
    response = api.post("/v1/subscriptions", {"customer": customer_id, "offer": offer_id, "sim_type": "esim"})
    assert response.status_code == 202, response.json
    sub_id = response.json["id"]

    def active() -> dict[str, Any] | None:
        current = api.get(f"/v1/subscriptions/{sub_id}").json
        assert current["status"] in ("pending", "active"), current
        return current if current["status"] == "active" else None

    # The embedded worker is shared by the whole run: late in a long run its queue can hold other tests' jobs.
    return wait_for(active, timeout=90.0, what=f"subscription {sub_id} to activate")
