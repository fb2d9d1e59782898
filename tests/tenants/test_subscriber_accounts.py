"""A tenant disables a subscriber's sign-in to its apps: live tokens are refused at once; enabling lets them back."""

from __future__ import annotations

from flask import Flask

from tests.support.api import TenantHandle, customer
from tests.support.subscribers import register_app, signed_in


def test_a_disabled_subscriber_is_refused_at_once_and_signs_in_again_once_enabled(
    app: Flask, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    self_care = register_app(tenant.api)
    person = customer(tenant.api, name="Inès Moreau")
    before = tenant.api.get(f"/v1/customers/{person['id']}/subscriber-account")
    assert before.json["code"] == "subscriber_account_not_found"
    tokens = signed_in(app.test_client(), self_care["id"], person["email"])
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert client.get("/v1/me", headers=bearer).status_code == 200
    account = tenant.api.get(f"/v1/customers/{person['id']}/subscriber-account").json
    assert (account["status"], account["email"], account["has_password"]) == ("active", person["email"], False)

    disabled = tenant.api.post(f"/v1/customers/{person['id']}/subscriber-account/disable")

    assert disabled.status_code == 200, disabled.json
    assert disabled.json["status"] == "disabled"
    assert client.get("/v1/me", headers=bearer).status_code == 401
    refreshed = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": self_care["id"]},
    )
    assert refreshed.json["error"] == "invalid_grant"
    # Disabling twice changes nothing; another tenant cannot see or touch the account.
    assert tenant.api.post(f"/v1/customers/{person['id']}/subscriber-account/disable").json["status"] == "disabled"
    assert other_tenant.api.post(f"/v1/customers/{person['id']}/subscriber-account/enable").status_code == 404
    assert other_tenant.api.get(f"/v1/customers/{person['id']}/subscriber-account").status_code == 404

    enabled = tenant.api.post(f"/v1/customers/{person['id']}/subscriber-account/enable")

    assert enabled.json["status"] == "active"
    assert client.get("/v1/me", headers=bearer).status_code == 401  # the old sign-in stays ended
    again = signed_in(app.test_client(), self_care["id"], person["email"])
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {again['access_token']}"}).status_code == 200
    events = [e["type"] for e in tenant.api.get("/v1/events", limit=100).json["data"]]
    assert events.count("subscriber_account.disabled") == 1
    assert events.count("subscriber_account.enabled") == 1
