"""`Idempotency-Key` on POST: a retry gets the first response, another request under the key gets 422."""

from __future__ import annotations

import secrets
from typing import Any

from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, Operator, TenantHandle


def new_customer_body() -> dict[str, Any]:
    return {
        "name": "Ada Lovelace",
        "email": f"{secrets.token_hex(4)}@example.com",
        "address": {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
    }


def customer_ids(api: ApiCaller) -> list[str]:
    response = api.get("/v1/customers", limit=100)
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["data"]]


def event_types(api: ApiCaller) -> list[str]:
    response = api.get("/v1/events", limit=100)
    assert response.status_code == 200, response.json
    return [item["type"] for item in response.json["data"]]


def test_a_retried_post_returns_the_first_response_and_creates_one_object(tenant: TenantHandle) -> None:
    body = new_customer_body()

    first = tenant.api.post("/v1/customers", body, key="create-ada")
    again = tenant.api.post("/v1/customers", body, key="create-ada")

    assert first.status_code == 201, first.json
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == first.status_code
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert customer_ids(tenant.api) == [first.json["id"]]
    assert event_types(tenant.api).count("customer.created") == 1


def test_a_retried_action_without_a_body_is_replayed_too(tenant: TenantHandle) -> None:
    draft = tenant.api.post("/v1/offers", OFFER)
    assert draft.status_code == 201, draft.json

    first = tenant.api.post(f"/v1/offers/{draft.json['id']}/publish", key="publish-once")
    again = tenant.api.post(f"/v1/offers/{draft.json['id']}/publish", key="publish-once")

    assert first.status_code == 200, first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    assert event_types(tenant.api).count("offer.published") == 1


def test_the_same_key_with_another_body_is_refused_with_422(tenant: TenantHandle) -> None:
    first = tenant.api.post("/v1/customers", new_customer_body(), key="reused")
    assert first.status_code == 201, first.json

    response = tenant.api.post("/v1/customers", new_customer_body(), key="reused")

    assert_problem(response, 422, "idempotency_key_reused")
    assert customer_ids(tenant.api) == [first.json["id"]]


def test_the_same_key_on_another_route_is_refused_with_422(tenant: TenantHandle) -> None:
    first = tenant.api.post("/v1/customers", new_customer_body(), key="one-key")
    assert first.status_code == 201, first.json

    response = tenant.api.post("/v1/offers", OFFER, key="one-key")

    assert_problem(response, 422, "idempotency_key_reused")
    assert tenant.api.get("/v1/offers").json["data"] == []


def test_two_clients_using_the_same_key_do_not_share_it(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    body = new_customer_body()

    ours = tenant.api.post("/v1/customers", body, key="shared-key")
    theirs = other_tenant.api.post("/v1/customers", body, key="shared-key")

    assert ours.status_code == 201, ours.json
    assert theirs.status_code == 201, theirs.json
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json["id"] != ours.json["id"]
    assert customer_ids(tenant.api) == [ours.json["id"]]
    assert customer_ids(other_tenant.api) == [theirs.json["id"]]


def test_an_operator_retrying_a_tenant_creation_gets_the_same_tenant(operator: Operator) -> None:
    slug = f"t-{secrets.token_hex(4)}"
    body = {"name": "Retry Mobile", "slug": slug, "country": "FR", "currency": "EUR", "timezone": "Europe/Paris"}

    first = operator.api.post("/v1/tenants", body, key=f"onboard-{slug}")
    again = operator.api.post("/v1/tenants", body, key=f"onboard-{slug}")

    assert first.status_code == 201, first.json
    assert again.status_code == 201, again.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json["id"] == first.json["id"]


def test_a_key_of_255_characters_is_accepted_and_one_of_256_is_a_400(tenant: TenantHandle) -> None:
    longest = tenant.api.post("/v1/customers", new_customer_body(), key="k" * 255)
    too_long = tenant.api.post("/v1/customers", new_customer_body(), key="k" * 256)

    assert longest.status_code == 201, longest.json
    assert_problem(too_long, 400, "invalid_idempotency_key")
    assert customer_ids(tenant.api) == [longest.json["id"]]


def test_a_failed_post_is_not_remembered_so_its_key_can_carry_the_corrected_request(tenant: TenantHandle) -> None:
    bad = {**new_customer_body(), "email": "not-an-email"}

    first = tenant.api.post("/v1/customers", bad, key="fix-me")
    retried = tenant.api.post("/v1/customers", bad, key="fix-me")
    corrected = tenant.api.post("/v1/customers", {**bad, "email": "fixed@example.com"}, key="fix-me")
    replayed = tenant.api.post("/v1/customers", {**bad, "email": "fixed@example.com"}, key="fix-me")

    assert_problem(first, 422, "validation_failed")
    assert_problem(retried, 422, "validation_failed")
    assert "Idempotent-Replayed" not in retried.headers
    assert corrected.status_code == 201, corrected.json
    assert "Idempotent-Replayed" not in corrected.headers
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json == corrected.json
    assert customer_ids(tenant.api) == [corrected.json["id"]]


def test_a_conflicting_post_is_not_remembered_either(tenant: TenantHandle) -> None:
    existing = tenant.api.post("/v1/customers", new_customer_body())
    assert existing.status_code == 201, existing.json
    clash = {**new_customer_body(), "email": existing.json["email"]}

    first = tenant.api.post("/v1/customers", clash, key="clash")
    corrected = tenant.api.post("/v1/customers", {**clash, "email": "other@example.com"}, key="clash")

    assert_problem(first, 409, "customer_email_taken")
    assert corrected.status_code == 201, corrected.json
    assert customer_ids(tenant.api) == [existing.json["id"], corrected.json["id"]]
