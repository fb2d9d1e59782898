"""Webhooks: events POSTed to a real receiver, signed, retried after failures, replayable."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from flask import Flask, request
from sqlalchemy import event as sqlalchemy_event

from mvne.infra.runtime import Runtime
from mvne.tenants.service import record_events
from mvne.tenants.webhooks import InvalidWebhookUrl, check_url, sign
from tests.support.api import TenantHandle, published_offer, wait_for
from tests.support.servers import live_server


@dataclass
class Receiver:
    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    answers: list[int] = field(default_factory=list)  # statuses to give before answering 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, event_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r["body"] for r in self.received if r["body"]["type"] == event_type]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    app = Flask("webhook-receiver")
    state = Receiver(url="")

    @app.post("/hook")
    def hook() -> tuple[str, int]:
        with state.lock:
            state.received.append(
                {"headers": dict(request.headers), "raw": request.get_data(), "body": request.get_json()}
            )
            status = state.answers.pop(0) if state.answers else 200
        return "", status

    with live_server(app) as url:
        state.url = f"{url}/hook"
        yield state


def endpoint(tenant: TenantHandle, url: str, event_types: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url}
    if event_types is not None:
        body["event_types"] = event_types
    response = tenant.api.post("/v1/webhook-endpoints", body)
    assert response.status_code == 201, response.json
    return dict(response.json)


def test_an_event_reaches_the_endpoint_signed_with_its_secret(tenant: TenantHandle, receiver: Receiver) -> None:
    created = endpoint(tenant, receiver.url)
    assert created["secret"].startswith("whsec_")
    assert "secret" not in tenant.api.get(f"/v1/webhook-endpoints/{created['id']}").json

    offer = published_offer(tenant.api)

    delivered = wait_for(lambda: receiver.bodies("offer.published"), what="offer.published webhook")
    assert delivered[0]["object_id"] == offer["id"]
    assert delivered[0]["tenant_id"] == tenant.id
    request_seen = next(r for r in receiver.received if r["body"]["type"] == "offer.published")
    header = request_seen["headers"]["Mvne-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert header == sign(created["secret"], timestamp, request_seen["raw"])
    assert request_seen["headers"]["Mvne-Event-Id"] == delivered[0]["id"]


def test_an_endpoint_gets_only_the_event_types_it_asked_for(tenant: TenantHandle, receiver: Receiver) -> None:
    endpoint(tenant, receiver.url, ["offer.published"])
    published_offer(tenant.api)
    wait_for(lambda: receiver.bodies("offer.published"), what="offer.published webhook")
    assert receiver.bodies("offer.created") == []


def test_many_events_at_once_are_queued_in_one_statement_and_each_delivered(
    runtime: Runtime, tenant: TenantHandle, receiver: Receiver
) -> None:
    endpoint(tenant, receiver.url, ["balance.threshold_reached"])
    endpoint(tenant, receiver.url, ["offer.published"])  # wants none of them
    outbox_statements: list[bool] = []

    def keep(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, many: bool) -> None:
        if statement.startswith("INSERT INTO outbox_messages"):
            outbox_statements.append(many)

    sqlalchemy_event.listen(runtime.db.engine, "before_cursor_execute", keep)
    try:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            # As a chunk of rating records the thresholds its buckets crossed.
            record_events(
                session,
                "balance.threshold_reached",
                [(f"bkt_{n}", {"bucket": f"bkt_{n}", "percent": 80}) for n in range(40)],
                tenant_id=tenant.id,
            )
    finally:
        sqlalchemy_event.remove(runtime.db.engine, "before_cursor_execute", keep)

    assert len(outbox_statements) == 1
    delivered = wait_for(
        lambda: (found := receiver.bodies("balance.threshold_reached")) and len(found) >= 40 and found,
        timeout=30,
        what="40 threshold webhooks",
    )
    assert sorted(body["object_id"] for body in delivered) == sorted(f"bkt_{n}" for n in range(40))


def test_a_failing_endpoint_is_retried_until_it_answers(tenant: TenantHandle, receiver: Receiver) -> None:
    receiver.answers = [500, 503]
    created = endpoint(tenant, receiver.url, ["offer.created"])
    tenant.api.post("/v1/offers", {**_offer(), "code": "RETRY"})

    def succeeded() -> dict[str, Any] | None:
        deliveries = tenant.api.get(f"/v1/webhook-endpoints/{created['id']}/deliveries").json["data"]
        return deliveries[0] if deliveries and deliveries[0]["status"] == "succeeded" else None

    delivery = wait_for(succeeded, timeout=30, what="a delivery after two failures")
    assert delivery["attempts"] == 3
    assert delivery["last_status_code"] == 200
    assert len(receiver.bodies("offer.created")) == 3


def test_a_delivery_can_be_replayed(tenant: TenantHandle, receiver: Receiver) -> None:
    created = endpoint(tenant, receiver.url, ["offer.created"])
    tenant.api.post("/v1/offers", {**_offer(), "code": "REPLAY"})
    wait_for(lambda: receiver.bodies("offer.created"), what="first delivery")
    delivery = tenant.api.get(f"/v1/webhook-endpoints/{created['id']}/deliveries").json["data"][0]

    replayed = tenant.api.post(f"/v1/webhook-deliveries/{delivery['id']}/replay")

    assert replayed.status_code == 202
    copies = wait_for(lambda: (b := receiver.bodies("offer.created")) and len(b) == 2 and b, what="the replay")
    assert copies[0]["id"] == copies[1]["id"]


def test_a_deleted_endpoint_receives_nothing_more(tenant: TenantHandle, receiver: Receiver) -> None:
    created = endpoint(tenant, receiver.url)
    assert tenant.api.request("DELETE", f"/v1/webhook-endpoints/{created['id']}").status_code == 204
    assert tenant.api.get(f"/v1/webhook-endpoints/{created['id']}").status_code == 404
    published_offer(tenant.api)
    # A second endpoint, made afterwards, tells when the platform has sent what it was going to send.
    endpoint(tenant, receiver.url, ["offer.published"])
    later = published_offer(tenant.api, code="AFTER")
    wait_for(lambda: receiver.bodies("offer.published"), what="the delivery to the live endpoint")
    assert [body["object_id"] for body in receiver.bodies("offer.published")] == [later["id"]]
    assert receiver.bodies("offer.created") == []


def test_a_bad_webhook_url_is_refused(tenant: TenantHandle) -> None:
    response = tenant.api.post("/v1/webhook-endpoints", {"url": "ftp://example.com/hook"})
    assert response.status_code == 422
    assert "url" in response.json["errors"]


def test_private_addresses_are_refused_where_the_platform_forbids_them(runtime: Runtime) -> None:
    with pytest.raises(InvalidWebhookUrl):
        check_url("http://127.0.0.1:9/hook", allow_private=False)
    with pytest.raises(InvalidWebhookUrl):
        check_url("http://10.1.2.3/hook", allow_private=False)
    check_url("http://127.0.0.1:9/hook", allow_private=True)


def _offer() -> dict[str, Any]:
    return json.loads(
        '{"code": "X", "name": "X", "price": "1.00", "allowances": {"data_mb": 1},'
        ' "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.10", "sms_per_message": "0.10"}}'
    )
