"""A tenant's apps: public OAuth clients with exact redirect URIs, listed, changed and revoked like API clients."""

from __future__ import annotations

import pytest

from tests.platform.problems import assert_problem
from tests.support.api import TenantHandle


@pytest.mark.parametrize(
    "uri",
    [
        "com.nimbus.app:/callback",
        "https://my.nimbus.example/oauth/callback?from=app",
        "http://127.0.0.1:51004/callback",
        "http://[::1]:8080/cb",
        "http://localhost/cb",
    ],
)
def test_an_app_registers_https_loopback_and_private_use_redirect_uris(tenant: TenantHandle, uri: str) -> None:
    response = tenant.api.post("/v1/apps", {"name": "Nimbus", "redirect_uris": [uri]})

    assert response.status_code == 201, response.json
    assert response.json["redirect_uris"] == [uri]
    assert response.json["client_id"] == response.json["id"]
    assert response.json["token_endpoint_auth_method"] == "none"
    assert response.json["grant_types"] == ["authorization_code", "refresh_token"]
    assert response.json["scopes"] == ["me:read", "me:write"]
    assert "client_secret" not in response.json


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://nimbus.example/callback", "loopback"),
        ("https://nimbus.example/callback#frag", "fragment"),
        ("javascript:alert(1)", "private-use scheme"),
        ("myapp:/callback", "private-use scheme"),
        ("https://user:pass@nimbus.example/cb", "credentials"),
        ("https:///no-host", "host"),
        ("https://nimbus.example/a b", "spaces"),
    ],
)
def test_a_bad_redirect_uri_is_refused_naming_it_and_nothing_is_created(
    tenant: TenantHandle, uri: str, why: str
) -> None:
    good = "com.nimbus.app:/callback"
    response = tenant.api.post("/v1/apps", {"name": "Nimbus", "redirect_uris": [good, uri]})

    assert_problem(response, 422, "invalid_redirect_uri")
    assert uri in response.json["detail"]
    assert good not in response.json["detail"]
    assert any(uri in message and why in message for message in response.json["errors"]["redirect_uris"])
    assert tenant.api.get("/v1/apps").json["data"] == []


def test_a_tenant_lists_changes_and_revokes_its_apps(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    created = tenant.api.post("/v1/apps", {"name": "Nimbus", "redirect_uris": ["com.nimbus.app:/callback"]}).json
    app_id = created["id"]

    listed = tenant.api.get("/v1/apps").json["data"]
    changed = tenant.api.request("PATCH", f"/v1/apps/{app_id}", {"redirect_uris": ["https://nimbus.example/cb"]})
    bad = tenant.api.request("PATCH", f"/v1/apps/{app_id}", {"redirect_uris": ["http://nimbus.example/cb"]})

    assert [a["id"] for a in listed] == [app_id]
    assert changed.status_code == 200, changed.json
    assert changed.json["redirect_uris"] == ["https://nimbus.example/cb"]
    assert_problem(bad, 422, "invalid_redirect_uri")
    assert tenant.api.get(f"/v1/apps/{app_id}").json["redirect_uris"] == ["https://nimbus.example/cb"]
    # Another tenant's app, and a back-end client, are no apps of this tenant.
    assert_problem(other_tenant.api.get(f"/v1/apps/{app_id}"), 404, "app_not_found")
    assert_problem(tenant.api.get(f"/v1/apps/{tenant.client_id}"), 404, "app_not_found")
    # An app is an API client without a secret: it is revoked like one, and has no secret to rotate.
    as_client = tenant.api.get(f"/v1/api-clients/{app_id}").json
    assert as_client["kind"] == "public"
    assert tenant.api.get(f"/v1/api-clients/{tenant.client_id}").json["kind"] == "confidential"
    assert_problem(tenant.api.post(f"/v1/api-clients/{app_id}/rotate-secret", {}), 409, "api_client_is_public")
    assert tenant.api.post(f"/v1/api-clients/{app_id}/revoke").status_code == 200
    assert tenant.api.get(f"/v1/apps/{app_id}").json["status"] == "revoked"
    revoked = tenant.api.request("PATCH", f"/v1/apps/{app_id}", {"name": "Renamed"})
    assert_problem(revoked, 409, "api_client_revoked")


def test_an_update_must_change_something(tenant: TenantHandle) -> None:
    created = tenant.api.post("/v1/apps", {"name": "Nimbus", "redirect_uris": ["com.nimbus.app:/callback"]}).json

    response = tenant.api.request("PATCH", f"/v1/apps/{created['id']}", {})

    assert_problem(response, 422, "validation_failed")
