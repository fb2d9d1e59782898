"""Staff users in tests: made directly through the service, then logged in through the console's login."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from mvne.infra.runtime import Runtime
from mvne.infra.web.auth import CSRF_HEADER, SESSION_COOKIE
from mvne.tenants import staff
from tests.support.api import wait_for

# Strong enough for zxcvbn, and unrelated to any test's names.
PASSWORD = "cobalt lantern orchard swim 4417"
TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_-]+)")


class ConsoleCaller:
    """A browser with a console session: its own cookie jar, and the CSRF token the login answered."""

    def __init__(self, client: FlaskClient, csrf_token: str | None) -> None:
        self.client = client
        self.csrf_token = csrf_token

    def headers(self, method: str, csrf: bool) -> dict[str, str]:
        if csrf and self.csrf_token and method in ("POST", "PUT", "PATCH", "DELETE"):
            return {CSRF_HEADER: self.csrf_token}
        return {}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, query_string=params)

    def post(self, path: str, body: Any = None, *, csrf: bool = True) -> Any:
        return self.request("POST", path, body, csrf=csrf)

    def request(self, method: str, path: str, body: Any = None, *, csrf: bool = True) -> Any:
        send = body if method in ("POST", "PUT", "PATCH") or body is not None else None
        return self.client.open(path, method=method, json=send, headers=self.headers(method, csrf))

    def cookie(self) -> str | None:
        found = self.client.get_cookie(SESSION_COOKIE)
        return found.value if found else None


@dataclass(frozen=True)
class StaffHandle:
    id: str
    email: str
    role: str
    password: str


def make_staff_user(
    runtime: Runtime, tenant_id: str, role: str, *, email: str | None = None, verified: bool = True
) -> StaffHandle:
    """A staff user of the tenant with a verified e-mail (no invitation round trip)."""
    email = email or f"{role}-{secrets.token_hex(4)}@staff.example"
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        user = staff.create_staff_user(
            session,
            tenant_id=tenant_id,
            email=email,
            name=f"The {role}",
            role=role,
            password=PASSWORD,
            verified=verified,
        )
        return StaffHandle(user.id, user.email, user.role, PASSWORD)


def log_in(
    app: Flask, tenant_slug: str, email: str, password: str = PASSWORD, *, totp_code: str | None = None
) -> tuple[Any, ConsoleCaller]:
    """POST /v1/console/sessions from a fresh browser; the answer and the browser (with its cookie if any)."""
    client = app.test_client()
    body: dict[str, Any] = {"tenant": tenant_slug, "email": email, "password": password}
    if totp_code is not None:
        body["totp_code"] = totp_code
    response = client.post("/v1/console/sessions", json=body)
    csrf = response.get_json().get("csrf_token") if response.status_code == 201 else None
    return response, ConsoleCaller(client, csrf)


def console_for(app: Flask, tenant_slug: str, user: StaffHandle) -> ConsoleCaller:
    response, console = log_in(app, tenant_slug, user.email, user.password)
    assert response.status_code == 201, response.get_json()
    return console


def mailbox(app: Flask, address: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (
        app.test_client().get("/v1/dev/mailbox", query_string={"to": address}).get_json()["data"]
    )
    return data


def wait_for_mail(app: Flask, address: str, kind: str, *, count: int = 1) -> dict[str, Any]:
    """The newest message of `kind` to `address`, once `count` of them arrived (delivery is a job)."""

    def arrived() -> list[dict[str, Any]] | None:
        found = [m for m in mailbox(app, address) if m["kind"] == kind]
        return found if len(found) >= count else None

    return wait_for(arrived, what=f"{kind} mail to {address}")[0]


def token_in(message: dict[str, Any]) -> str:
    found = TOKEN_IN_LINK.search(message["text"])
    assert found, message["text"]
    return found.group(1)
