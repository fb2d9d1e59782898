"""Self-service sign-up: a founder's tenant, owner account and brand, the verification e-mail, then the console."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select, update

from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.platform.auth import TENANT_SCOPES
from mvne.tenants.models import EmailVerification, Event, StaffUser, Tenant, TenantBrand
from tests.support.api import Operator
from tests.support.staff import PASSWORD, log_in, mailbox, token_in, wait_for_mail


def founder(**changes: Any) -> dict[str, Any]:
    brand = f"Nimbus {secrets.token_hex(3)}"
    body = {
        "email": f"founder-{secrets.token_hex(4)}@nimbus.example",
        "password": PASSWORD,
        "name": "Ada Martin",
        "company": "Nimbus Telecom SAS",
        "brand_name": brand,
        "country": "FR",
        "currency": "EUR",
    }
    body.update(changes)
    return body


def sign_up(app: Flask, body: dict[str, Any]) -> Any:
    return app.test_client().post("/v1/signup", json=body)


def tenant_count(runtime: Runtime) -> int:
    with runtime.db.transaction(platform=True) as session:
        return int(session.scalar(select(func.count()).select_from(Tenant)) or 0)


def test_a_founder_signs_up_verifies_the_email_and_works_in_a_console_session(
    app: Flask, runtime: Runtime, settings: Settings, operator: Operator, live_url: str
) -> None:
    body = founder(brand_name="Étoile Mobile!")
    created = sign_up(app, body)

    assert created.status_code == 201, created.get_json()
    answer = created.get_json()
    tenant, owner = answer["tenant"], answer["staff_user"]
    assert tenant["status"] == "onboarding"
    assert tenant["slug"].startswith("etoile-mobile")
    assert owner == {"id": owner["id"], "email": body["email"], "role": "owner", "email_verified": False}
    seen = operator.api.get(f"/v1/tenants/{tenant['id']}").json
    assert (seen["status"], seen["name"], seen["timezone"]) == ("onboarding", "Nimbus Telecom SAS", "Europe/Paris")
    assert seen["number_range"] is not None
    with runtime.db.transaction(platform=True) as session:
        brand = session.scalar(select(TenantBrand).where(TenantBrand.tenant_id == tenant["id"]))
        assert brand is not None
        assert brand.display_name == "Étoile Mobile!"

    # Not before the address is verified.
    early, _ = log_in(app, tenant["slug"], body["email"])
    assert early.status_code == 403, early.get_json()
    assert early.get_json()["code"] == "email_not_verified"

    message = wait_for_mail(app, body["email"], "signup_verification")
    assert f"{settings.public_url}/console/verify-email?token=" in message["text"]
    verified = app.test_client().post("/v1/signup/verify", json={"token": token_in(message)})
    assert verified.status_code == 200, verified.get_json()
    assert verified.get_json()["staff_user"]["email_verified"] is True
    assert verified.get_json()["tenant"]["slug"] == tenant["slug"]

    response, console = log_in(app, tenant["slug"], body["email"].upper())
    assert response.status_code == 201, response.get_json()
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("mvne_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/" in cookie
    assert "Secure" not in cookie  # served over http here
    assert response.get_json()["staff_user"]["role"] == "owner"

    me = console.get("/v1/console/me")
    assert me.status_code == 200, me.get_json()
    assert me.get_json()["role"] == "owner"
    assert set(me.get_json()["scopes"]) == set(TENANT_SCOPES)
    assert me.get_json()["tenant"]["status"] == "onboarding"

    offer = {
        "code": "SIGNUP-1",
        "name": "First offer",
        "price": "9.99",
        "allowances": {"data_mb": 100, "voice_minutes": 10, "sms": 10},
        "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
    }
    made = console.post("/v1/offers", offer)
    assert made.status_code == 201, made.get_json()

    forged = console.post("/v1/offers", {**offer, "code": "SIGNUP-2"}, csrf=False)
    assert forged.status_code == 403
    assert forged.get_json()["code"] == "csrf_failed"
    wrong = console.client.post(
        "/v1/offers", json={**offer, "code": "SIGNUP-3"}, headers={"X-CSRF-Token": "not-the-token"}
    )
    assert wrong.get_json()["code"] == "csrf_failed"
    offers = console.get("/v1/offers").get_json()["data"]
    assert [o["code"] for o in offers] == ["SIGNUP-1"]

    stranger = app.test_client()
    stranger.set_cookie("mvne_session", secrets.token_urlsafe(32))
    refused = stranger.get("/v1/console/me")
    assert refused.status_code == 401
    assert refused.get_json()["code"] == "session_expired"

    with runtime.db.transaction(platform=True) as session:
        types = set(session.scalars(select(Event.type).where(Event.tenant_id == tenant["id"])))
    assert {"tenant.created", "staff.joined", "tenant.email_verified"} <= types


@pytest.mark.parametrize(
    ("changes", "code", "field"),
    [
        ({"password": "nimbus2024"}, "weak_password", "password"),
        ({"password": "Nimbus Telecom SAS"}, "weak_password", "password"),
        ({"email": "not-an-address"}, "validation_failed", "email"),
        ({"country": "US"}, "country_not_supported", "country"),
        ({"country": "XX"}, "validation_failed", "country"),
        ({"currency": "EURO"}, "validation_failed", "currency"),
        # ISO 4217's code for "no currency": well formed, yet tender nowhere, so refused like an unknown one.
        ({"currency": "XXX"}, "validation_failed", "currency"),
        ({"timezone": "Mars/Olympus"}, "validation_failed", "timezone"),
    ],
)
def test_a_bad_sign_up_is_refused_with_422_and_writes_nothing(
    app: Flask, runtime: Runtime, changes: dict[str, Any], code: str, field: str
) -> None:
    body = founder(**changes)
    before = tenant_count(runtime)

    response = sign_up(app, body)

    assert response.status_code == 422, response.get_json()
    assert response.get_json()["code"] == code
    assert field in response.get_json()["errors"], response.get_json()
    assert tenant_count(runtime) == before
    with runtime.db.transaction(platform=True) as session:
        assert session.scalar(select(StaffUser.id).where(StaffUser.email == str(body["email"]).lower())) is None
    assert mailbox(app, str(body["email"])) == []


def test_a_taken_slug_gets_a_suffix_and_the_same_founder_may_sign_up_another_brand(app: Flask) -> None:
    first = sign_up(app, founder(brand_name="Suffix Brand"))
    assert first.status_code == 201, first.get_json()
    again = sign_up(app, founder(brand_name="suffix  brand", email=first.get_json()["staff_user"]["email"]))

    assert again.status_code == 201, again.get_json()
    slugs = [first.get_json()["tenant"]["slug"], again.get_json()["tenant"]["slug"]]
    assert slugs[0].startswith("suffix-brand")
    assert slugs[1] != slugs[0]
    assert slugs[1].startswith("suffix-brand-")


def test_a_used_unknown_or_expired_verification_link_is_refused_and_a_new_one_can_be_asked_for(
    app: Flask, runtime: Runtime
) -> None:
    body = founder()
    created = sign_up(app, body).get_json()
    slug = created["tenant"]["slug"]
    client = app.test_client()
    token = token_in(wait_for_mail(app, body["email"], "signup_verification"))

    # Expired: the link was sent a day and a minute ago.
    now = dt.datetime.now(dt.UTC)
    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(EmailVerification)
            .where(EmailVerification.staff_user_id == created["staff_user"]["id"])
            .values(created_at=now - dt.timedelta(hours=24, minutes=1), expires_at=now - dt.timedelta(minutes=1))
        )
    expired = client.post("/v1/signup/verify", json={"token": token})
    assert expired.status_code == 422
    assert expired.get_json()["code"] == "verification_token_expired"
    assert "resend-verification" in expired.get_json()["detail"]

    unknown = client.post("/v1/signup/verify", json={"token": secrets.token_urlsafe(32)})
    assert unknown.status_code == 422
    assert unknown.get_json()["code"] == "verification_token_invalid"

    # Whether the account exists or not, the answer is the same.
    for ask in ({"email": body["email"], "tenant": slug}, {"email": "nobody@nimbus.example", "tenant": slug}):
        resent = client.post("/v1/signup/resend-verification", json=ask)
        assert resent.status_code == 202, resent.get_json()
    fresh = token_in(wait_for_mail(app, body["email"], "signup_verification", count=2))
    assert fresh != token
    assert mailbox(app, "nobody@nimbus.example") == []

    assert client.post("/v1/signup/verify", json={"token": fresh}).status_code == 200
    reused = client.post("/v1/signup/verify", json={"token": fresh})
    assert reused.status_code == 422
    assert reused.get_json()["code"] == "verification_token_invalid"
    response, _ = log_in(app, slug, body["email"])
    assert response.status_code == 201, response.get_json()
