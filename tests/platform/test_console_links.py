"""The pages behind the links staff get by e-mail, in headless Chromium: confirm an address, join a staff."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.api import TenantHandle, wait_for
from tests.support.browser import chromium
from tests.support.staff import PASSWORD

LINK = re.compile(r"https?://\S+/console/[a-z-]+\?token=[A-Za-z0-9_%-]+")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as browser:
        yield browser


def link_in_mail(live_url: str, address: str, kind: str) -> str:
    def found() -> str | None:
        messages = httpx.get(f"{live_url}/v1/dev/mailbox", params={"to": address}, timeout=10).json()["data"]
        texts = [m["text"] for m in messages if m["kind"] == kind]
        match = LINK.search(texts[0]) if texts else None
        return match.group(0) if match else None

    return wait_for(found, what=f"the {kind} link")


def log_in(live_url: str, tenant: str, email: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{live_url}/v1/console/sessions", json={"tenant": tenant, "email": email, "password": password}, timeout=10
    )


def test_a_founder_confirms_the_address_from_the_e_mailed_link_once(browser: Any, live_url: str) -> None:
    email = f"founder-{secrets.token_hex(4)}@orbit.example"
    signed_up = httpx.post(
        f"{live_url}/v1/signup",
        json={
            "email": email,
            "password": PASSWORD,
            "company": "Orbit Telecom",
            "brand_name": "Orbit Mobile",
            "country": "FR",
            "currency": "EUR",
        },
        timeout=30,
    )
    assert signed_up.status_code == 201, signed_up.text
    slug = signed_up.json()["tenant"]["slug"]
    link = link_in_mail(live_url, email, "signup_verification")
    page = browser.new_page(viewport={"width": 390, "height": 844})

    page.goto(link)
    # Opening the link changes nothing (mail scanners open links too); the button does.
    assert page.title() == "Confirm your e-mail address · Orbit Mobile"
    assert email in page.inner_text("main")
    assert log_in(live_url, slug, email, PASSWORD).json()["code"] == "email_not_verified"
    page.click("button[type=submit]")
    page.wait_for_selector("text=Your address is confirmed")

    assert slug in page.inner_text("main")
    assert log_in(live_url, slug, email, PASSWORD).status_code == 201
    # The same link again: the page says it was used, and what to do.
    page.goto(link)
    page.click("button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "already used" in page.inner_text("[role=alert]")
    assert page.title() == "This link does not work · Console"


def test_an_invited_person_joins_from_the_link_after_a_weak_password_is_refused(
    browser: Any, live_url: str, tenant: TenantHandle
) -> None:
    brand = {"display_name": "Halo Mobile", "primary_color": "#0b7285", "accent_color": "#f59f00"}
    assert tenant.api.request("PUT", "/v1/tenant/brand", brand).status_code == 200
    email = f"agent-{secrets.token_hex(4)}@halo.example"
    invited = tenant.api.post("/v1/staff/invitations", {"email": email, "role": "support"})
    assert invited.status_code == 201, invited.json
    link = link_in_mail(live_url, email, "staff_invitation")
    page = browser.new_page(viewport={"width": 390, "height": 844})

    page.goto(link)
    assert page.title() == "Join Halo Mobile · Halo Mobile"
    assert "as a support agent" in page.inner_text("main")
    page.fill("input[name=name]", "Sam Agent")
    page.fill("input[name=password]", "halomobile1")
    page.click("button[type=submit]")
    page.wait_for_selector("[role=alert]")
    assert "too weak" in page.inner_text("[role=alert]").lower()
    assert page.input_value("input[name=name]") == "Sam Agent"  # kept, so only the password is typed again
    assert log_in(live_url, tenant.slug, email, "halomobile1").status_code == 401

    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Welcome to Halo Mobile")

    assert "You joined Halo Mobile as a support agent." in page.inner_text("main")
    session = log_in(live_url, tenant.slug, email, PASSWORD)
    assert session.status_code == 201, session.text
    assert session.json()["staff_user"]["role"] == "support"
    assert tenant.api.get("/v1/staff/invitations").json["data"][0]["status"] == "accepted"
