"""Subscribers in tests: an app of the tenant, and a subscriber signed in through its pages.

The sign-in goes through the real page: its forms are read from the HTML (action, hidden fields) and posted
back as a browser would, and the one-time code is read from the local mailbox. `FlaskBrowser` drives the
app's test client; the live-server tests drive the same steps with httpx.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient

from tests.support.api import ApiCaller, wait_for

REDIRECT_URI = "com.example.app:/callback"


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.alerts: list[str] = []
        self._in_alert = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append(Form(values.get("action", ""), values.get("method", "get").lower()))
        elif tag == "input" and self.forms and values.get("type") == "hidden":
            self.forms[-1].fields[values.get("name", "")] = values.get("value", "")
        elif tag == "button" and self.forms and values.get("name"):
            self.forms[-1].buttons.append((values["name"], values.get("value", "")))
        elif values.get("role") == "alert":
            self._in_alert = True
            self.alerts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in_alert = False

    def handle_data(self, data: str) -> None:
        if self._in_alert:
            self.alerts[-1] += data


def parse_page(html: str) -> _FormParser:
    parser = _FormParser()
    parser.feed(html)
    return parser


def form_for(html: str, action: str) -> Form:
    """The page's form whose hidden `action` field is `action`."""
    found = [f for f in parse_page(html).forms if f.fields.get("action") == action]
    assert found, f"no {action!r} form on the page: {html[:3000]}"
    return found[0]


def alerts(html: str) -> list[str]:
    return [text.strip() for text in parse_page(html).alerts]


@dataclass(frozen=True)
class Page:
    status: int
    location: str | None
    text: str


class Browser(Protocol):
    def open(self, url: str, params: dict[str, str]) -> Page: ...

    def submit(self, form: Form, values: dict[str, str]) -> Page: ...


class FlaskBrowser:
    """A browser on the app's test client (cookies kept, redirects not followed)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def open(self, url: str, params: dict[str, str]) -> Page:
        response = self.client.get(urlsplit(url).path, query_string=params)
        return Page(response.status_code, response.headers.get("Location"), response.get_data(as_text=True))

    def submit(self, form: Form, values: dict[str, str]) -> Page:
        assert form.method == "post", form
        response = self.client.post(urlsplit(form.action).path, data={**form.fields, **values})
        return Page(response.status_code, response.headers.get("Location"), response.get_data(as_text=True))


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        return cls(verifier, create_s256_code_challenge(verifier))


Mailbox = Callable[[str], list[dict[str, Any]]]


def mailbox_of(client: FlaskClient) -> Mailbox:
    """The local mailbox's messages to one address, newest first."""

    def read(address: str) -> list[dict[str, Any]]:
        response = client.get("/v1/dev/mailbox", query_string={"to": address})
        assert response.status_code == 200, response.get_data(as_text=True)
        return list(response.json["data"])

    return read


def sign_in_codes(mailbox: Mailbox, address: str) -> dict[str, str]:
    """The sign-in codes e-mailed to `address`, by message id, newest first."""
    codes = {}
    for message in mailbox(address):
        found = re.search(r"\b(\d{6})\b", message["subject"])
        if message["kind"] == "subscriber_one_time_code" and found:
            codes[message["id"]] = found.group(1)
    return codes


def authorization_params(app_client_id: str, pkce: Pkce, **changes: str) -> dict[str, str]:
    """What an app puts in its authorization request; `changes` replace any of it."""
    params = {
        "response_type": "code",
        "client_id": app_client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "me:read me:write",
        "state": secrets.token_urlsafe(12),
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return params


def email_a_code(browser: Browser, mailbox: Mailbox, page: Page, email: str) -> tuple[Page, str]:
    """From the page asking for the e-mail: ask for a code, and wait for it in the mailbox."""
    page = browser.submit(form_for(page.text, "email"), {"email": email})
    assert page.status == 200, page
    page, code = request_code(browser, mailbox, page, email)
    return page, code


def request_code(browser: Browser, mailbox: Mailbox, page: Page, email: str) -> tuple[Page, str]:
    """Press the page's "e-mail me a code" button and wait for the new code in the mailbox."""
    before = set(sign_in_codes(mailbox, email))
    page = browser.submit(form_for(page.text, "send_code"), {})
    assert page.status == 200, page

    def new_code() -> str | None:
        return next((code for key, code in sign_in_codes(mailbox, email).items() if key not in before), None)

    return page, wait_for(new_code, what=f"a sign-in code for {email}")


def authorize(browser: Browser, mailbox: Mailbox, url: str, params: dict[str, str], email: str) -> str:
    """Sign in with an e-mailed code and allow the app; the address the app is sent back to."""
    page = browser.open(url, params)
    assert page.status == 200, page
    page, code = email_a_code(browser, mailbox, page, email)
    page = browser.submit(form_for(page.text, "code"), {"code": code})
    assert page.status == 200, page
    page = browser.submit(form_for(page.text, "consent"), {"decision": "allow"})
    assert page.status == 302, page
    assert page.location is not None, page
    assert page.location.startswith(params["redirect_uri"] + "?"), page
    return page.location


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def register_app(api: ApiCaller, name: str = "Self-care", redirect_uris: list[str] | None = None) -> dict[str, Any]:
    response = api.post("/v1/apps", {"name": name, "redirect_uris": redirect_uris or [REDIRECT_URI]})
    assert response.status_code == 201, response.json
    return dict(response.json)


def signed_in(client: FlaskClient, app_client_id: str, email: str) -> dict[str, Any]:
    """Tokens of the customer with `email`, signed in through the app's pages on the test client."""
    pkce = Pkce.new()
    params = authorization_params(app_client_id, pkce)
    back = query_of(authorize(FlaskBrowser(client), mailbox_of(client), "/oauth/authorize", params, email))
    assert back.get("state") == params["state"], back
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": back["code"],
            "redirect_uri": REDIRECT_URI,
            "client_id": app_client_id,
            "code_verifier": pkce.verifier,
        },
    )
    assert response.status_code == 200, response.json
    return dict(response.json)


def subscriber_api(client: FlaskClient, app_client_id: str, email: str) -> ApiCaller:
    """An API caller with the access token of the customer with `email`."""
    return ApiCaller(client, signed_in(client, app_client_id, email)["access_token"])
