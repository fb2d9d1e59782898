"""Every error is an RFC 9457 problem (`application/problem+json`) with a stable code, and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, Operator, TenantHandle, customer, published_offer


def events_of(api: ApiCaller) -> list[dict[str, Any]]:
    response = api.get("/v1/events", limit=100)
    assert response.status_code == 200, response.json
    return list(response.json["data"])


def ids_of(api: ApiCaller, path: str) -> list[str]:
    response = api.get(path, limit=100)
    assert response.status_code == 200, response.json
    return [item["id"] for item in response.json["data"]]


def test_an_unknown_route_is_a_not_found_problem(tenant: TenantHandle) -> None:
    assert_problem(tenant.api.get("/v1/no-such-thing"), 404, "not_found")


def test_a_wrong_method_on_a_known_route_is_a_405_problem_with_an_allow_header(tenant: TenantHandle) -> None:
    response = tenant.api.request("DELETE", "/v1/offers")

    assert_problem(response, 405, "method_not_allowed")
    allowed = {method.strip() for method in response.headers["Allow"].split(",")}
    assert {"GET", "POST"} <= allowed
    assert "DELETE" not in allowed


def test_a_malformed_json_body_is_a_400_problem_that_says_the_json_is_invalid(tenant: TenantHandle) -> None:
    response = tenant.api.client.post(
        "/v1/offers",
        data='{"code": "S20", "name": ',
        headers=tenant.api.headers({"Content-Type": "application/json"}),
    )

    body = assert_problem(response, 400, "malformed_body")
    # The design asks for "a clear reason": the client must learn that its JSON did not parse.
    reason = f"{body['detail']} {body.get('errors', '')}".lower()
    assert "json" in reason, body


def test_a_body_with_several_bad_fields_is_a_422_problem_with_an_error_per_field(tenant: TenantHandle) -> None:
    body = {
        "code": "S20",
        "name": "Simple 20",
        "price": 20.0,  # money is a decimal string, never a float
        "allowances": {"data_mb": -1, "voice_minutes": 60, "sms": 10},
        # no "overage", which is required
    }

    problem = assert_problem(tenant.api.post("/v1/offers", body), 422, "validation_failed")

    errors = problem["errors"]
    assert set(errors) == {"price", "allowances", "overage"}
    assert set(errors["allowances"]) == {"data_mb"}
    assert all(errors[field] for field in ("price", "overage"))


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/v1/offers/off_01J00000000000000000000000", "offer_not_found"),
        ("/v1/customers/cus_01J00000000000000000000000", "customer_not_found"),
        ("/v1/subscriptions/sub_01J00000000000000000000000", "subscription_not_found"),
        ("/v1/invoices/inv_01J00000000000000000000000", "invoice_not_found"),
        ("/v1/billing-runs/bru_01J00000000000000000000000", "billing_run_not_found"),
    ],
)
def test_an_unknown_id_is_a_404_problem_with_the_domains_code(tenant: TenantHandle, path: str, code: str) -> None:
    assert_problem(tenant.api.get(path), 404, code)


def test_another_tenants_objects_are_404_as_if_they_did_not_exist(
    tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    theirs_offer = published_offer(other_tenant.api)
    theirs_customer = customer(other_tenant.api)

    assert_problem(tenant.api.get(f"/v1/offers/{theirs_offer['id']}"), 404, "offer_not_found")
    assert_problem(tenant.api.get(f"/v1/customers/{theirs_customer['id']}"), 404, "customer_not_found")
    assert_problem(tenant.api.post(f"/v1/offers/{theirs_offer['id']}/publish"), 404, "offer_not_found")


def test_a_subscription_on_a_draft_offer_is_a_409_problem_and_creates_nothing(tenant: TenantHandle) -> None:
    draft = tenant.api.post("/v1/offers", OFFER)
    assert draft.status_code == 201, draft.json
    account = customer(tenant.api)
    events_before = events_of(tenant.api)

    response = tenant.api.post(
        "/v1/subscriptions", {"customer": account["id"], "offer": draft.json["id"], "sim_type": "esim"}
    )

    assert_problem(response, 409, "offer_not_published")
    assert ids_of(tenant.api, "/v1/subscriptions") == []
    assert events_of(tenant.api) == events_before


def test_a_second_offer_with_the_same_code_is_a_409_problem(tenant: TenantHandle) -> None:
    first = tenant.api.post("/v1/offers", OFFER)
    assert first.status_code == 201, first.json

    assert_problem(tenant.api.post("/v1/offers", {**OFFER, "name": "Another"}), 409, "offer_code_taken")
    assert ids_of(tenant.api, "/v1/offers") == [first.json["id"]]


def test_a_second_customer_with_the_same_email_is_a_409_problem(tenant: TenantHandle) -> None:
    first = customer(tenant.api)
    body = {
        "name": "Grace Hopper",
        "email": first["email"],
        "address": {"line1": "2 rue du Bac", "postal_code": "75007", "city": "Paris", "country": "FR"},
    }

    assert_problem(tenant.api.post("/v1/customers", body), 409, "customer_email_taken")
    assert ids_of(tenant.api, "/v1/customers") == [first["id"]]


def test_a_second_tenant_with_the_same_slug_is_a_409_problem(tenant: TenantHandle, operator: Operator) -> None:
    body = {"name": "Copycat", "slug": tenant.slug, "country": "FR", "currency": "EUR", "timezone": "Europe/Paris"}

    assert_problem(operator.api.post("/v1/tenants", body), 409, "tenant_slug_taken")


def test_a_refused_post_writes_no_object_and_no_event(tenant: TenantHandle) -> None:
    first = customer(tenant.api)
    offers_before = ids_of(tenant.api, "/v1/offers")
    events_before = events_of(tenant.api)

    invalid = tenant.api.post("/v1/offers", {**OFFER, "price": "-5.00"})
    duplicate = tenant.api.post(
        "/v1/customers",
        {
            "name": "Someone Else",
            "email": first["email"],
            "address": {"line1": "3 quai Voltaire", "postal_code": "75007", "city": "Paris", "country": "FR"},
        },
    )

    assert_problem(invalid, 422, "validation_failed")
    assert_problem(duplicate, 409, "customer_email_taken")
    assert ids_of(tenant.api, "/v1/offers") == offers_before
    assert ids_of(tenant.api, "/v1/customers") == [first["id"]]
    assert events_of(tenant.api) == events_before


def test_an_email_longer_than_254_characters_is_a_422_problem_and_writes_nothing(tenant: TenantHandle) -> None:
    # 254 characters is the longest address SMTP carries (RFC 5321) and the width of the email column:
    # a longer one must be refused as bad input, not stored (SQLite) or crash the insert (PostgreSQL).
    email = f"{'a' * 250}@example.com"
    body = {
        "name": "Long Address",
        "email": email,
        "address": {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
    }

    problem = assert_problem(tenant.api.post("/v1/customers", body), 422, "validation_failed")

    assert set(problem["errors"]) == {"email"}
    assert ids_of(tenant.api, "/v1/customers") == []
