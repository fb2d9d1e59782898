"""Subscribers sign in to a tenant's app: authorization code with PKCE, driven by an OAuth client library
against the live server, configured from the server's metadata (RFC 8414); rotating refresh tokens, reuse
detection, revocation (RFC 7009), the themed sign-in page, and what it refuses."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from flask import Flask
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.tenants.models import Event, RefreshToken, TenantBrand
from tests.platform.problems import assert_problem
from tests.support.api import Operator, TenantHandle, customer
from tests.support.subscribers import (
    REDIRECT_URI,
    FlaskBrowser,
    Form,
    Page,
    Pkce,
    alerts,
    authorization_params,
    authorize,
    form_for,
    mailbox_of,
    parse_page,
    query_of,
    register_app,
    request_code,
    signed_in,
)

SCOPE = "me:read me:write"
# A 1x1 transparent PNG: the brand's logo.
LOGO = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


class HttpxBrowser:
    """A browser on the live server: httpx with a cookie jar, redirects not followed."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)

    def open(self, url: str, params: dict[str, str]) -> Page:
        response = self.client.get(url, params=params or None)
        return Page(response.status_code, response.headers.get("Location"), response.text)

    def submit(self, form: Form, values: dict[str, str]) -> Page:
        assert form.method == "post", form
        response = self.client.post(urljoin(str(self.client.base_url), form.action), data={**form.fields, **values})
        return Page(response.status_code, response.headers.get("Location"), response.text)


@pytest.fixture
def metadata(live_url: str) -> dict[str, Any]:
    response = httpx.get(f"{live_url}/.well-known/oauth-authorization-server")
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def my_app(tenant: TenantHandle) -> dict[str, Any]:
    return register_app(tenant.api, name="Nimbus <Self-care>")


@pytest.fixture
def subscriber(tenant: TenantHandle) -> dict[str, Any]:
    return customer(tenant.api, name="Ada Martin")


@pytest.fixture
def oauth(metadata: dict[str, Any], my_app: dict[str, Any]) -> Iterator[OAuth2Client]:
    """The app's OAuth client, configured from the metadata document only."""
    client = OAuth2Client(
        client_id=my_app["client_id"],
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        redirect_uri=REDIRECT_URI,
        scope=SCOPE,
        code_challenge_method="S256",
        token_endpoint=metadata["token_endpoint"],
    )
    yield client
    client.close()


def sign_in(oauth: OAuth2Client, metadata: dict[str, Any], live_url: str, app: Flask, email: str) -> tuple[str, str]:
    """The app sends the subscriber to the sign-in page; the location it is sent back to, and the verifier."""
    verifier = Pkce.new().verifier
    url, state = oauth.create_authorization_url(metadata["authorization_endpoint"], code_verifier=verifier)
    location = authorize(HttpxBrowser(live_url), mailbox_of(app.test_client()), url.split("?")[0], query_of(url), email)
    assert query_of(location)["state"] == state
    return location, verifier


def token_error(response: httpx.Response) -> str:
    assert response.status_code in (400, 401), (response.status_code, response.text)
    return str(response.json()["error"])


def me_status(live_url: str, access_token: str) -> int:
    return httpx.get(f"{live_url}/v1/me", headers={"Authorization": f"Bearer {access_token}"}).status_code


def test_the_metadata_document_describes_the_endpoints_and_its_issuer_signs_the_tokens(
    metadata: dict[str, Any], live_url: str, runtime: Runtime
) -> None:
    issuer = metadata["issuer"]

    assert issuer == runtime.settings.public_url
    assert metadata["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert metadata["token_endpoint"] == f"{issuer}/oauth/token"
    assert metadata["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(metadata["grant_types_supported"])
    assert set(metadata["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert {"me:read", "me:write"} <= set(metadata["scopes_supported"])
    assert httpx.get(metadata["jwks_uri"]).status_code == 200


def test_an_app_signs_a_subscriber_in_with_pkce_refreshes_with_rotation_and_revokes(
    oauth: OAuth2Client, metadata: dict[str, Any], live_url: str, app: Flask, subscriber: dict[str, Any]
) -> None:
    location, verifier = sign_in(oauth, metadata, live_url, app, subscriber["email"])

    token = oauth.fetch_token(authorization_response=location, code_verifier=verifier)
    me = oauth.get(f"{live_url}/v1/me")
    assert me.status_code == 200, me.text
    assert (me.json()["customer"], me.json()["email"]) == (subscriber["id"], subscriber["email"])
    keys = KeySet.import_key_set(httpx.get(metadata["jwks_uri"]).json())
    claims = jwt.decode(token["access_token"], keys, algorithms=["RS256"]).claims
    assert claims["iss"] == metadata["issuer"]
    assert claims["subscriber_id"] == me.json()["account"]
    assert set(claims["scope"].split()) == {"me:read", "me:write"}

    # Rotation: each refresh returns a new refresh token, and the old one stops working.
    first_refresh = token["refresh_token"]
    rotated = oauth.refresh_token(metadata["token_endpoint"], refresh_token=first_refresh)
    assert rotated["refresh_token"] != first_refresh
    assert rotated["access_token"] != token["access_token"]
    assert oauth.get(f"{live_url}/v1/me").status_code == 200
    rotated_twice = oauth.refresh_token(metadata["token_endpoint"], refresh_token=rotated["refresh_token"])
    assert rotated_twice["refresh_token"] not in (first_refresh, rotated["refresh_token"])

    # The first refresh token used again: a stolen copy. The whole family is revoked, live tokens too.
    reuse = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": first_refresh, "client_id": oauth.client_id},
    )
    assert token_error(reuse) == "invalid_grant"
    latest = httpx.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "refresh_token",
            "refresh_token": rotated_twice["refresh_token"],
            "client_id": oauth.client_id,
        },
    )
    assert token_error(latest) == "invalid_grant"
    assert me_status(live_url, rotated_twice["access_token"]) == 401

    # A new sign-in, revoked by the app (RFC 7009): its refresh token and access token stop working.
    location, verifier = sign_in(oauth, metadata, live_url, app, subscriber["email"])
    fresh = oauth.fetch_token(authorization_response=location, code_verifier=verifier)
    assert me_status(live_url, fresh["access_token"]) == 200
    revoked = oauth.revoke_token(
        metadata["revocation_endpoint"], token=fresh["refresh_token"], token_type_hint="refresh_token"
    )
    assert revoked.status_code == 200, revoked.text
    assert me_status(live_url, fresh["access_token"]) == 401
    after = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": fresh["refresh_token"], "client_id": oauth.client_id},
    )
    assert token_error(after) == "invalid_grant"
    unknown = oauth.revoke_token(metadata["revocation_endpoint"], token=secrets.token_urlsafe(32))
    assert unknown.status_code == 200


def test_revoking_an_access_token_ends_its_sign_in(
    oauth: OAuth2Client, metadata: dict[str, Any], live_url: str, app: Flask, subscriber: dict[str, Any]
) -> None:
    location, verifier = sign_in(oauth, metadata, live_url, app, subscriber["email"])
    token = oauth.fetch_token(authorization_response=location, code_verifier=verifier)

    revoked = oauth.revoke_token(metadata["revocation_endpoint"], token=token["access_token"])

    assert revoked.status_code == 200
    assert me_status(live_url, token["access_token"]) == 401
    refresh = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": oauth.client_id},
    )
    assert token_error(refresh) == "invalid_grant"


def test_a_wrong_verifier_is_refused_and_a_code_works_only_once(
    oauth: OAuth2Client, metadata: dict[str, Any], live_url: str, app: Flask, subscriber: dict[str, Any]
) -> None:
    location, verifier = sign_in(oauth, metadata, live_url, app, subscriber["email"])

    with pytest.raises(OAuthError) as wrong:
        oauth.fetch_token(authorization_response=location, code_verifier=Pkce.new().verifier)
    assert wrong.value.error == "invalid_grant"
    with pytest.raises(OAuthError) as elsewhere:
        oauth.fetch_token(
            authorization_response=location, code_verifier=verifier, redirect_uri="com.example.app:/other"
        )
    assert elsewhere.value.error == "invalid_grant"

    token = oauth.fetch_token(authorization_response=location, code_verifier=verifier)
    assert me_status(live_url, token["access_token"]) == 200
    with pytest.raises(OAuthError) as reused:
        oauth.fetch_token(authorization_response=location, code_verifier=verifier)
    assert reused.value.error == "invalid_grant"
    # What the code gave is revoked with it (RFC 6749 4.1.2).
    assert me_status(live_url, token["access_token"]) == 401
    refresh = httpx.post(
        metadata["token_endpoint"],
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": oauth.client_id},
    )
    assert token_error(refresh) == "invalid_grant"


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({"code_challenge_method": "plain"}, "S256"),
        ({"code_challenge": "", "code_challenge_method": ""}, "PKCE is required"),
        ({"response_type": "token"}, None),
    ],
    ids=["plain-challenge", "no-challenge", "implicit"],
)
def test_an_authorization_request_without_s256_pkce_goes_back_to_the_app_with_an_error(
    live_url: str, my_app: dict[str, Any], changes: dict[str, str], description: str | None
) -> None:
    pkce = Pkce.new()
    params = {k: v for k, v in authorization_params(my_app["client_id"], pkce, **changes).items() if v}
    if changes.get("code_challenge_method") == "plain":
        params["code_challenge"] = pkce.verifier

    response = httpx.get(f"{live_url}/oauth/authorize", params=params)

    assert response.status_code == 302, response.text
    location = response.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?")
    back = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    assert back["state"] == params["state"]
    assert "code" not in back
    expected = "unsupported_response_type" if description is None else "invalid_request"
    assert back["error"] == expected, back
    if description:
        assert description in back["error_description"]


@pytest.mark.parametrize(
    "changes",
    [
        {"redirect_uri": "https://attacker.example/callback"},
        {"redirect_uri": REDIRECT_URI + "/more"},
        {"client_id": "cli_01M8NHTM21YRHT2QG60D9HJAWD"},
        {"redirect_uri": ""},
    ],
    ids=["unregistered-uri", "uri-prefix-only", "unknown-client", "no-uri"],
)
def test_an_unknown_app_or_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
    live_url: str, my_app: dict[str, Any], changes: dict[str, str]
) -> None:
    params = {k: v for k, v in authorization_params(my_app["client_id"], Pkce.new(), **changes).items() if v}

    response = httpx.get(f"{live_url}/oauth/authorize", params=params)

    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "attacker.example" not in response.text
    assert alerts(response.text), response.text


def test_a_back_end_client_cannot_sign_subscribers_in_and_an_app_gets_no_client_credentials(
    live_url: str, tenant: TenantHandle, my_app: dict[str, Any]
) -> None:
    page = httpx.get(f"{live_url}/oauth/authorize", params=authorization_params(tenant.client_id, Pkce.new()))
    assert page.status_code == 400
    assert "Location" not in page.headers

    token = httpx.post(
        f"{live_url}/oauth/token", data={"grant_type": "client_credentials", "client_id": my_app["client_id"]}
    )
    assert token_error(token) == "invalid_client"


def test_the_page_wears_the_tenants_brand_escaped_with_a_csrf_token_and_no_framing(
    app: Flask, runtime: Runtime, tenant: TenantHandle, my_app: dict[str, Any]
) -> None:
    logo_key = f"tenants/{tenant.id}/brand/logo.png"
    runtime.storage.put(logo_key, LOGO, "image/png")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        session.add(
            TenantBrand(
                id=new_id("brd"),
                tenant_id=tenant.id,
                display_name="Nimbus <b>Mobile</b>",
                primary_color="#aa3300",
                accent_color="#00aa33",
                logo_key=logo_key,
                logo_content_type="image/png",
            )
        )
    client = app.test_client()

    page = client.get("/oauth/authorize", query_string=authorization_params(my_app["client_id"], Pkce.new()))

    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "--primary: #aa3300" in html
    assert "--accent: #00aa33" in html
    assert "Nimbus &lt;b&gt;Mobile&lt;/b&gt;" in html
    assert "<b>Mobile</b>" not in html
    assert "Nimbus &lt;Self-care&gt;" in html
    assert "data:image/png;base64," in html
    assert "<script" not in html
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    form = form_for(html, "email")
    assert form.fields["csrf_token"]
    # A form posted with another token, or without the page's cookie, is refused.
    forged = client.post("/oauth/authorize", data={**form.fields, "csrf_token": "forged", "email": "a@example.com"})
    assert forged.status_code == 400
    assert "expired" in " ".join(alerts(forged.get_data(as_text=True)))
    stranger = app.test_client().post("/oauth/authorize", data={**form.fields, "email": "a@example.com"})
    assert stranger.status_code == 400


def test_the_code_comes_from_the_brand_and_denying_consent_sends_the_app_access_denied(
    app: Flask, tenant: TenantHandle, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    client = app.test_client()
    browser = FlaskBrowser(client)
    params = authorization_params(my_app["client_id"], Pkce.new())
    page = browser.open("/oauth/authorize", params)
    page = browser.submit(form_for(page.text, "email"), {"email": subscriber["email"]})
    page, code = request_code(browser, mailbox_of(client), page, subscriber["email"])
    mail = mailbox_of(client)(subscriber["email"])[0]
    assert mail["kind"] == "subscriber_one_time_code"
    assert mail["from"].startswith(f"Brand {tenant.slug} <")
    assert code in mail["text"]
    page = browser.submit(form_for(page.text, "code"), {"code": code})
    assert "Nimbus &lt;Self-care&gt; wants to read your lines, usage and invoices" in page.text

    denied = browser.submit(form_for(page.text, "consent"), {"decision": "deny"})

    assert denied.status == 302
    back = parse_qs(urlsplit(denied.location or "").query)
    assert back["error"] == ["access_denied"]
    assert back["state"] == [params["state"]]
    assert "code" not in back


def test_five_wrong_codes_lock_the_account_and_then_even_the_right_code_is_refused(
    app: Flask, runtime: Runtime, tenant: TenantHandle, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    client = app.test_client()
    browser = FlaskBrowser(client)
    page = browser.open("/oauth/authorize", authorization_params(my_app["client_id"], Pkce.new()))
    page = browser.submit(form_for(page.text, "email"), {"email": subscriber["email"]})
    page, code = request_code(browser, mailbox_of(client), page, subscriber["email"])
    wrong = f"{(int(code) + 1) % 10**6:06d}"

    for attempt in range(1, 6):
        page = browser.submit(form_for(page.text, "code"), {"code": wrong})
        assert page.status == 200
        message = " ".join(alerts(page.text))
        assert ("Too many wrong attempts" in message) == (attempt == 5), (attempt, message)

    page = browser.submit(form_for(page.text, "code"), {"code": code})
    assert "Too many wrong attempts" in " ".join(alerts(page.text))
    assert "consent" not in {form.fields.get("action") for form in parse_page(page.text).forms}
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        types = session.scalars(select(Event.type).where(Event.type.like("subscriber_account.%"))).all()
    assert "subscriber_account.locked" in types


def answers_to(app: Flask, app_client_id: str, email: str) -> tuple[str, str]:
    """What the page shows `email` after "e-mail me a code", and after a wrong password (CSRF tokens left out)."""
    browser = FlaskBrowser(app.test_client())
    page = browser.open("/oauth/authorize", authorization_params(app_client_id, Pkce.new()))
    method = browser.submit(form_for(page.text, "email"), {"email": email})
    after_code = browser.submit(form_for(method.text, "send_code"), {})
    after_password = browser.submit(form_for(method.text, "password"), {"password": "not the password at all"})
    return tuple(  # type: ignore[return-value]
        re.sub(r'name="csrf_token" value="[^"]*"', "", page.text.replace(email, "EMAIL"))
        for page in (after_code, after_password)
    )


def test_an_unknown_email_is_answered_like_a_known_one_and_gets_no_mail(
    app: Flask, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    stranger = f"nobody-{secrets.token_hex(4)}@example.com"

    known = answers_to(app, my_app["client_id"], subscriber["email"])
    unknown = answers_to(app, my_app["client_id"], stranger)

    assert known == unknown
    assert alerts(known[1]) == ["Wrong e-mail or password."]
    assert mailbox_of(app.test_client())(stranger) == []


def test_a_subscriber_sets_a_password_then_signs_in_with_it(
    app: Flask, tenant: TenantHandle, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    client = app.test_client()
    token = signed_in(client, my_app["client_id"], subscriber["email"])["access_token"]
    headers = {"Authorization": f"Bearer {token}"}

    weak = client.put("/v1/me/password", json={"new_password": "ada martin 1"}, headers=headers)
    assert_problem(weak, 422, "weak_password")
    assert (
        client.put(
            "/v1/me/password", json={"new_password": "violet quarry lantern marmalade"}, headers=headers
        ).status_code
        == 204
    )
    missing = client.put("/v1/me/password", json={"new_password": "copper meadow bicycle thunder"}, headers=headers)
    assert_problem(missing, 422, "wrong_password")
    assert client.get("/v1/me", headers=headers).json["has_password"] is True

    browser = FlaskBrowser(app.test_client())
    pkce = Pkce.new()
    params = authorization_params(my_app["client_id"], pkce)
    page = browser.open("/oauth/authorize", params)
    page = browser.submit(form_for(page.text, "email"), {"email": subscriber["email"].upper()})
    wrong = browser.submit(form_for(page.text, "password"), {"password": "copper meadow bicycle thunder"})
    assert alerts(wrong.text) == ["Wrong e-mail or password."]
    page = browser.submit(form_for(wrong.text, "password"), {"password": "violet quarry lantern marmalade"})
    page = browser.submit(form_for(page.text, "consent"), {"decision": "allow"})
    assert page.status == 302
    code = parse_qs(urlsplit(page.location or "").query)["code"][0]
    exchanged = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "client_id": my_app["client_id"],
            "code_verifier": pkce.verifier,
        },
    )
    assert exchanged.status_code == 200, exchanged.json


def test_a_suspended_tenants_subscribers_keep_their_self_service_and_a_revoked_app_ends_its_tokens(
    app: Flask, operator: Operator, tenant: TenantHandle, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    client = app.test_client()
    tokens = signed_in(client, my_app["client_id"], subscriber["email"])
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}

    suspended = operator.api.post(f"/v1/tenants/{tenant.id}/suspend", {"reason": "unpaid invoices"})
    assert suspended.status_code == 200, suspended.json
    assert client.get("/v1/me", headers=headers).status_code == 200
    assert tenant.api.get("/v1/customers").status_code == 403
    assert operator.api.post(f"/v1/tenants/{tenant.id}/resume", {}).status_code == 200

    revoked = tenant.api.post(f"/v1/api-clients/{my_app['client_id']}/revoke")
    assert revoked.status_code == 200, revoked.json
    assert revoked.json["kind"] == "public"
    assert client.get("/v1/me", headers=headers).status_code == 401
    refresh = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": my_app["client_id"],
        },
    )
    assert refresh.json["error"] == "invalid_client"


def test_refresh_tokens_are_stored_as_digests_only(
    app: Flask, runtime: Runtime, tenant: TenantHandle, my_app: dict[str, Any], subscriber: dict[str, Any]
) -> None:
    tokens = signed_in(app.test_client(), my_app["client_id"], subscriber["email"])

    with runtime.db.transaction(tenant_id=tenant.id) as session:
        stored = session.scalars(select(RefreshToken.token_hash)).all()
    assert stored == [hashlib.sha256(tokens["refresh_token"].encode()).hexdigest()]
