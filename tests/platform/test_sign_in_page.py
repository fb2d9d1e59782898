"""The subscribers' sign-in page in headless Chromium: a person signs in with an e-mailed code and allows the app.

The page is the tenant's: its name, its colours and its logo. The browser ends on the app's redirect URI with a
code, which the app exchanges (with its PKCE verifier) for a token that reads the subscriber's own data.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from flask import Flask, request

from tests.support.api import TenantHandle, customer, wait_for
from tests.support.browser import chromium
from tests.support.servers import live_server
from tests.support.subscribers import Pkce, register_app, signed_in

BRAND = {"display_name": "Lumen Mobile", "primary_color": "#7a1fd1", "accent_color": "#10b981"}
# A 1x1 PNG, the brand's logo: the page shows it inline.
LOGO = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def callback() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """The app's redirect URI (a loopback address, as a native app would use): it records what it is given."""
    received: list[dict[str, str]] = []
    app = Flask("app-callback")

    @app.get("/callback")
    def back() -> str:
        received.append(dict(request.args))
        return "<p id='done'>Back in the app</p>"

    with live_server(app) as url:
        yield f"{url}/callback", received


def test_a_subscriber_signs_in_on_the_brands_page_with_a_code_and_the_app_reads_their_lines(
    browser: Any,
    tenant: TenantHandle,
    live_url: str,
    callback: tuple[str, list[dict[str, str]]],
    tmp_path: Path,
) -> None:
    assert tenant.api.request("PUT", "/v1/tenant/brand", BRAND).status_code == 200
    logo = tenant.api.client.put(
        "/v1/tenant/brand/logo", data=LOGO, headers=tenant.api.headers({"Content-Type": "image/png"})
    )
    assert logo.status_code == 200, logo.json
    person = customer(tenant.api, name="Noor Haddad")
    redirect_uri, received = callback
    self_care = register_app(tenant.api, name="Lumen self-care", redirect_uris=[redirect_uri])
    pkce = Pkce.new()
    state = secrets.token_urlsafe(12)
    query = {
        "response_type": "code",
        "client_id": self_care["id"],
        "redirect_uri": redirect_uri,
        "scope": "me:read",
        "state": state,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(f"{live_url}/oauth/authorize?{urlencode(query)}")

    # The tenant's page: its name, its logo, its colour.
    assert page.title() == "Sign in · Lumen Mobile"
    assert page.inner_text("header .name") == "Lumen Mobile"
    assert page.get_attribute("header img", "src").startswith("data:image/png;base64,")
    assert page.eval_on_selector("header .name", "e => getComputedStyle(e).color") == "rgb(122, 31, 209)"
    assert "Sign in to Lumen self-care" in page.inner_text("h1")
    page.screenshot(path=str(tmp_path / "sign-in.png"), full_page=True)

    page.fill("input[name=email]", person["email"])
    page.click("form:has(input[value=email]) button")
    page.wait_for_selector("input[name=code], button:has-text('code')")
    if page.query_selector("input[name=code]") is None:  # a subscriber without a password asks for a code
        page.click("form:has(input[value=send_code]) button")
        page.wait_for_selector("input[name=code]")

    def code() -> str | None:
        messages = httpx.get(f"{live_url}/v1/dev/mailbox", params={"to": person["email"]}, timeout=10).json()["data"]
        found = [m for m in messages if m["kind"] == "subscriber_one_time_code"]
        return "".join(c for c in found[0]["subject"] if c.isdigit())[-6:] if found else None

    page.fill("input[name=code]", wait_for(code, what="the sign-in code"))
    page.click("form:has(input[value=code]) button")
    page.wait_for_selector("button[value=allow]")
    assert "Lumen self-care" in page.inner_text("main")
    page.screenshot(path=str(tmp_path / "consent.png"), full_page=True)
    page.click("button[value=allow]")
    page.wait_for_selector("#done")

    assert errors == []
    [answer] = received
    assert answer["state"] == state
    token = httpx.post(
        f"{live_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": answer["code"],
            "redirect_uri": redirect_uri,
            "client_id": self_care["id"],
            "code_verifier": pkce.verifier,
        },
        timeout=10,
    )
    assert token.status_code == 200, token.text
    me = httpx.get(f"{live_url}/v1/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["email"] == person["email"]


# (the browser's locale, then what the page shows: its language, title, heading and first button)
SPOKEN = [
    ("fr-FR", "fr", "Connexion · Lumen Mobile", "Connexion à Lumen self-care", "Continuer"),
    ("en-GB", "en", "Sign in · Lumen Mobile", "Sign in to Lumen self-care", "Continue"),
    ("de-DE", "fr", "Connexion · Lumen Mobile", "Connexion à Lumen self-care", "Continuer"),  # the tenant's first
]


@pytest.mark.parametrize("case", SPOKEN, ids=[case[0] for case in SPOKEN])
def test_the_page_speaks_the_tenants_languages_as_the_browser_prefers(
    browser: Any, tenant: TenantHandle, live_url: str, case: tuple[str, str, str, str, str]
) -> None:
    browser_locale, lang, title, heading, button = case
    assert tenant.api.request("PUT", "/v1/tenant/brand", BRAND).status_code == 200
    market = {"currency": "EUR", "timezone": "Europe/Paris", "languages": ["fr-FR", "en"], "tax_rate": "20"}
    assert tenant.api.request("PUT", "/v1/tenant/market", market).status_code == 200
    self_care = register_app(tenant.api, name="Lumen self-care", redirect_uris=["com.lumen.app:/callback"])
    query = {
        "response_type": "code",
        "client_id": self_care["id"],
        "redirect_uri": "com.lumen.app:/callback",
        "scope": "me:read",
        "state": "s",
        "code_challenge": Pkce.new().challenge,
        "code_challenge_method": "S256",
    }
    page = browser.new_page(locale=browser_locale)

    page.goto(f"{live_url}/oauth/authorize?{urlencode(query)}")

    assert page.title() == title
    assert page.inner_text("h1") == heading
    assert page.inner_text("form button") == button
    assert page.get_attribute("html", "lang") == lang


def test_the_language_is_the_browsers_favourite_among_the_tenants_else_the_tenants_first() -> None:
    from werkzeug.datastructures import LanguageAccept

    from mvne.platform.page_text import page_language

    assert page_language([]) == "en"
    assert page_language(["de-DE"]) == "en"  # no words for German yet: English
    assert page_language(["de", "fr-BE", "en"]) == "fr"
    assert page_language(["fr-FR", "en"], LanguageAccept([("en-US", 1), ("fr", 0.5)])) == "en"
    assert page_language(["fr-FR", "en"], LanguageAccept([("es", 1)])) == "fr"


def test_the_sign_in_code_is_e_mailed_in_the_tenants_first_language(app: Any, tenant: TenantHandle) -> None:
    market = {"currency": "EUR", "timezone": "Europe/Paris", "languages": ["fr-FR", "en"], "tax_rate": "20"}
    assert tenant.api.request("PUT", "/v1/tenant/market", market).status_code == 200
    assert tenant.api.request("PUT", "/v1/tenant/brand", BRAND).status_code == 200
    person = customer(tenant.api, name="Chloé Petit")

    signed_in(app.test_client(), register_app(tenant.api)["id"], person["email"])

    [mail] = app.test_client().get("/v1/dev/mailbox", query_string={"to": person["email"]}).get_json()["data"]
    assert mail["subject"].startswith("Votre code de connexion Lumen Mobile : ")
    assert "Il ne sert qu'une fois, pendant 10 minutes." in mail["text"]
