"""OAuth2 client credentials, signed JWT access tokens, the published key set, and who may call what."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from mvne.infra.runtime import Runtime
from mvne.platform.auth import TENANT_SCOPES
from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, Operator, TenantHandle, make_tenant

TENANT_BODY = {"name": "Sneaky", "slug": "sneaky", "country": "FR", "currency": "EUR", "timezone": "Europe/Paris"}


def token_response(api: ApiCaller, client_id: str, secret: str, *, basic: bool, scope: str | None = None) -> Any:
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if basic:
        return api.client.post("/oauth/token", data=form, auth=(client_id, secret))
    return api.client.post("/oauth/token", data={**form, "client_id": client_id, "client_secret": secret})


def published_keys(api: ApiCaller) -> KeySet:
    response = api.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return KeySet.import_key_set(response.json)


def decoded(api: ApiCaller, token: str) -> jwt.Token:
    return jwt.decode(token, published_keys(api), algorithms=["RS256"])


def resigned(token: jwt.Token, key: RSAKey, **claims: Any) -> str:
    """The token's header and claims, changed by `claims` and signed with `key`."""
    return jwt.encode(dict(token.header), {**token.claims, **claims}, key, algorithms=["RS256"])


@pytest.mark.parametrize("basic", [True, False], ids=["http-basic", "form-body"])
def test_client_credentials_get_a_bearer_jwt_that_lives_the_configured_ttl(
    api: ApiCaller, tenant: TenantHandle, runtime: Runtime, basic: bool
) -> None:
    response = token_response(api, tenant.client_id, tenant.secret, basic=basic)

    assert response.status_code == 200, response.json
    assert response.json["token_type"] == "Bearer"
    assert response.json["expires_in"] == runtime.settings.token_ttl
    assert response.headers["Cache-Control"] == "no-store"
    token = decoded(api, response.json["access_token"])
    assert token.claims["exp"] - token.claims["iat"] == runtime.settings.token_ttl
    assert api.with_token(response.json["access_token"]).get("/v1/offers").status_code == 200


@pytest.mark.parametrize("basic", [True, False], ids=["http-basic", "form-body"])
def test_a_wrong_secret_is_refused_with_invalid_client(api: ApiCaller, tenant: TenantHandle, basic: bool) -> None:
    response = token_response(api, tenant.client_id, tenant.secret + "x", basic=basic)

    # The token endpoint speaks OAuth2 (RFC 6749, section 5.2), not problem+json.
    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"
    assert "access_token" not in response.json


def test_an_unknown_client_is_refused_with_invalid_client(api: ApiCaller) -> None:
    response = token_response(api, "cli_01J00000000000000000000000", "whatever", basic=True)

    assert response.status_code == 401
    assert response.json["error"] == "invalid_client"


def test_a_tenant_token_verifies_against_the_jwks_and_carries_its_tenant_and_scopes(
    api: ApiCaller, tenant: TenantHandle, runtime: Runtime
) -> None:
    token = decoded(api, tenant.api.token or "")

    assert token.header["alg"] == "RS256"
    assert token.claims["iss"] == runtime.settings.public_url
    assert token.claims["client_id"] == tenant.client_id
    assert token.claims["tenant_id"] == tenant.id
    assert set(token.claims["scope"].split()) == set(TENANT_SCOPES)


def test_an_operator_token_carries_no_tenant_id(api: ApiCaller, operator: Operator) -> None:
    token = decoded(api, operator.api.token or "")

    assert token.claims["client_id"] == operator.client_id
    assert "tenant_id" not in token.claims
    assert "tenants:write" in token.claims["scope"].split()


def test_a_token_resigned_with_our_key_and_unchanged_claims_is_accepted(
    api: ApiCaller, tenant: TenantHandle, runtime: Runtime
) -> None:
    # The control for the forged tokens below: our re-signing makes a token the API accepts.
    ours = RSAKey.import_key(runtime.settings.jwt_private_key)
    token = resigned(decoded(api, tenant.api.token or ""), ours)

    assert api.with_token(token).get("/v1/offers").status_code == 200


def no_token(api: ApiCaller, tenant: TenantHandle, runtime: Runtime) -> str | None:
    return None


def malformed(api: ApiCaller, tenant: TenantHandle, runtime: Runtime) -> str | None:
    return "not-a-jwt"


def signed_by_another_key(api: ApiCaller, tenant: TenantHandle, runtime: Runtime) -> str | None:
    token = decoded(api, tenant.api.token or "")
    stranger = RSAKey.generate_key(2048, parameters={"kid": token.header["kid"]})
    return resigned(token, stranger)


def expired(api: ApiCaller, tenant: TenantHandle, runtime: Runtime) -> str | None:
    now = int(time.time())
    ours = RSAKey.import_key(runtime.settings.jwt_private_key)
    return resigned(decoded(api, tenant.api.token or ""), ours, iat=now - 7200, exp=now - 3600)


def unsigned(api: ApiCaller, tenant: TenantHandle, runtime: Runtime) -> str | None:
    claims = decoded(api, tenant.api.token or "").claims

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'at+jwt'})}.{part(claims)}."


@pytest.mark.parametrize("make_token", [no_token, malformed, signed_by_another_key, expired, unsigned])
def test_a_request_without_a_valid_token_is_a_401_problem_with_a_challenge(
    api: ApiCaller,
    tenant: TenantHandle,
    runtime: Runtime,
    make_token: Callable[[ApiCaller, TenantHandle, Runtime], str | None],
) -> None:
    response = api.with_token(make_token(api, tenant, runtime)).get("/v1/offers")

    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_client_lacking_a_scope_is_a_403_insufficient_scope_problem(
    app: Flask, operator: Operator, live_url: str
) -> None:
    reader = make_tenant(app.test_client(), operator, scopes=("offers:read",))

    assert reader.api.get("/v1/offers").status_code == 200
    assert_problem(reader.api.post("/v1/offers", OFFER), 403, "insufficient_scope")
    assert reader.api.get("/v1/offers").json["data"] == []


def test_a_403_names_the_missing_scope_in_the_problem_and_the_rfc_6750_challenge(
    app: Flask, operator: Operator, live_url: str
) -> None:
    reader = make_tenant(app.test_client(), operator, scopes=("offers:read",))

    response = reader.api.post("/v1/offers", OFFER)

    assert_problem(response, 403, "insufficient_scope")
    assert "offers:write" in response.json["detail"]
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="offers:write"' in challenge


def test_a_401_with_a_bad_token_says_invalid_token_and_without_one_says_nothing_more(api: ApiCaller) -> None:
    without = api.get("/v1/offers")
    garbled = api.with_token("not-a-token").get("/v1/offers")

    assert without.headers["WWW-Authenticate"] == 'Bearer realm="mvne"'
    assert garbled.headers["WWW-Authenticate"] == 'Bearer realm="mvne", error="invalid_token"'


def test_a_tenant_token_is_refused_on_operator_routes(tenant: TenantHandle) -> None:
    response = tenant.api.post("/v1/tenants", {**TENANT_BODY, "slug": f"sneaky-{tenant.slug}"})

    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 403


def test_an_operator_token_is_refused_on_tenant_routes(operator: Operator) -> None:
    response = operator.api.get("/v1/offers")

    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    assert response.json["status"] == 403


def test_asking_for_a_scope_the_client_does_not_hold_gives_a_token_without_it(
    api: ApiCaller, app: Flask, operator: Operator, live_url: str
) -> None:
    reader = make_tenant(app.test_client(), operator, scopes=("offers:read",))

    response = token_response(api, reader.client_id, reader.secret, basic=True, scope="offers:read offers:write")

    assert response.status_code == 200, response.json
    token = response.json["access_token"]
    assert decoded(api, token).claims["scope"].split() == ["offers:read"]
    assert_problem(api.with_token(token).post("/v1/offers", OFFER), 403, "insufficient_scope")


def test_asking_for_a_narrower_scope_gives_a_token_with_only_that_scope(api: ApiCaller, tenant: TenantHandle) -> None:
    response = token_response(api, tenant.client_id, tenant.secret, basic=False, scope="offers:read")

    assert response.status_code == 200, response.json
    narrow = api.with_token(response.json["access_token"])
    assert narrow.get("/v1/offers").status_code == 200
    assert_problem(narrow.get("/v1/customers"), 403, "insufficient_scope")
