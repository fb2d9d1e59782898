"""Every state change of a tenant's objects is recorded in that tenant's event log, and only there."""

from __future__ import annotations

from typing import Any

from tests.support.api import OFFER, ApiCaller, TenantHandle, active_subscription, customer


def event_log(api: ApiCaller) -> list[dict[str, Any]]:
    response = api.get("/v1/events", limit=100)
    assert response.status_code == 200, response.json
    assert response.json["has_more"] is False
    return list(response.json["data"])


def test_selling_a_line_records_each_step_in_order_in_the_tenants_log(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    offer = tenant.api.post("/v1/offers", OFFER)
    assert offer.status_code == 201, offer.json
    published = tenant.api.post(f"/v1/offers/{offer.json['id']}/publish")
    assert published.status_code == 200, published.json
    account = customer(tenant.api)
    line = active_subscription(tenant.api, account["id"], offer.json["id"])

    ours = {offer.json["id"], account["id"], line["id"]}
    log = [(event["type"], event["object_id"]) for event in event_log(tenant.api) if event["object_id"] in ours]

    assert log == [
        ("offer.created", offer.json["id"]),
        ("offer.published", offer.json["id"]),
        ("customer.created", account["id"]),
        ("subscription.created", line["id"]),
        ("subscription.activated", line["id"]),
    ]
    assert not {event["object_id"] for event in event_log(other_tenant.api)} & ours


def test_an_event_carries_the_facts_of_the_change(tenant: TenantHandle) -> None:
    account = customer(tenant.api)

    created = [event for event in event_log(tenant.api) if event["object_id"] == account["id"]]

    assert len(created) == 1
    assert created[0]["type"] == "customer.created"
    assert created[0]["data"]["email"] == account["email"]
    assert created[0]["id"].startswith("evt_")
    assert created[0]["created_at"]


def test_a_tenant_sees_only_its_own_events(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    customer(tenant.api)
    theirs = customer(other_tenant.api)

    # The tenant itself and the API client it was given at onboarding, then its customer.
    own = {other_tenant.id, other_tenant.client_id, theirs["id"]}
    assert {event["object_id"] for event in event_log(other_tenant.api)} == own
