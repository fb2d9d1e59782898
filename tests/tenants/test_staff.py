"""Staff users: invitations, roles, password login with lockout, two-factor login, console sessions."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import pyotp
from flask import Flask
from sqlalchemy import select, update

from mvne.infra.runtime import Runtime
from mvne.tenants.models import Event, StaffInvitation, StaffSession, StaffUser
from tests.support.api import OFFER, Operator, TenantHandle
from tests.support.staff import (
    PASSWORD,
    ConsoleCaller,
    StaffHandle,
    console_for,
    log_in,
    make_staff_user,
    token_in,
    wait_for_mail,
)


def event_types(runtime: Runtime, tenant_id: str, object_id: str) -> list[str]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        return list(session.scalars(select(Event.type).where(Event.object_id == object_id).order_by(Event.id)))


def invite(console: ConsoleCaller, role: str, email: str | None = None) -> dict[str, str]:
    email = email or f"{role}-{secrets.token_hex(4)}@invited.example"
    response = console.post("/v1/staff/invitations", {"email": email, "role": role})
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def test_an_invited_person_joins_with_the_role_and_can_do_what_it_allows(
    app: Flask, runtime: Runtime, tenant: TenantHandle
) -> None:
    owner = console_for(app, tenant.slug, make_staff_user(runtime, tenant.id, "owner"))
    invitation = invite(owner, "support", "Grace@Invited.Example")
    assert (invitation["email"], invitation["role"], invitation["status"]) == (
        "grace@invited.example",
        "support",
        "pending",
    )

    message = wait_for_mail(app, "grace@invited.example", "staff_invitation")
    assert "/console/accept-invitation?token=" in message["text"]
    joined = app.test_client().post(
        "/v1/staff/invitations/accept",
        json={"token": token_in(message), "name": "Grace Hopper", "password": PASSWORD},
    )
    assert joined.status_code == 201, joined.get_json()
    user = joined.get_json()
    assert (user["role"], user["email_verified"], user["status"]) == ("support", True, "active")
    listed = owner.get("/v1/staff/invitations").get_json()["data"]
    assert [(i["id"], i["status"], i["staff_user_id"]) for i in listed] == [(invitation["id"], "accepted", user["id"])]

    support = console_for(app, tenant.slug, StaffHandle(user["id"], "grace@invited.example", "support", PASSWORD))
    assert support.post("/v1/customers", customer_body()).status_code == 201
    refused = support.get("/v1/staff")
    assert refused.status_code == 403
    assert refused.get_json()["code"] == "insufficient_scope"
    assert support.post("/v1/offers", {**OFFER, "code": "NOPE"}).get_json()["code"] == "insufficient_scope"
    assert event_types(runtime, tenant.id, invitation["id"]) == ["staff.invited"]
    assert event_types(runtime, tenant.id, user["id"]) == ["staff.joined"]


def customer_body() -> dict[str, object]:
    return {
        "name": "Ada Lovelace",
        "email": f"{secrets.token_hex(4)}@example.com",
        "address": {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"},
    }


def test_a_used_expired_or_revoked_invitation_is_refused(app: Flask, runtime: Runtime, tenant: TenantHandle) -> None:
    owner = console_for(app, tenant.slug, make_staff_user(runtime, tenant.id, "owner"))
    client = app.test_client()
    accept = {"name": "Someone", "password": PASSWORD}

    used = invite(owner, "read_only")
    used_token = token_in(wait_for_mail(app, used["email"], "staff_invitation"))
    assert client.post("/v1/staff/invitations/accept", json={**accept, "token": used_token}).status_code == 201
    again = client.post("/v1/staff/invitations/accept", json={**accept, "token": used_token})
    assert (again.status_code, again.get_json()["code"]) == (422, "invitation_token_invalid")

    expired = invite(owner, "finance")
    expired_token = token_in(wait_for_mail(app, expired["email"], "staff_invitation"))
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        session.execute(
            update(StaffInvitation)
            .where(StaffInvitation.id == expired["id"])
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    late = client.post("/v1/staff/invitations/accept", json={**accept, "token": expired_token})
    assert (late.status_code, late.get_json()["code"]) == (422, "invitation_token_expired")
    assert owner.get("/v1/staff/invitations").get_json()["data"][1]["status"] == "expired"

    revoked = invite(owner, "support")
    revoked_token = token_in(wait_for_mail(app, revoked["email"], "staff_invitation"))
    assert owner.request("DELETE", f"/v1/staff/invitations/{revoked['id']}").status_code == 204
    refused = client.post("/v1/staff/invitations/accept", json={**accept, "token": revoked_token})
    assert (refused.status_code, refused.get_json()["code"]) == (422, "invitation_revoked")

    weak = invite(owner, "support")
    weak_token = token_in(wait_for_mail(app, weak["email"], "staff_invitation"))
    too_weak = client.post("/v1/staff/invitations/accept", json={**accept, "token": weak_token, "password": "abc"})
    assert (too_weak.status_code, too_weak.get_json()["code"]) == (422, "weak_password")
    accepted = owner.request("DELETE", f"/v1/staff/invitations/{used['id']}")
    assert (accepted.status_code, accepted.get_json()["code"]) == (409, "staff_invitation_accepted")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        emails = set(session.scalars(select(StaffUser.email)))
    assert used["email"] in emails
    assert not {expired["email"], revoked["email"], weak["email"]} & emails


def test_only_owners_grant_the_owner_role_and_the_last_owner_stays(
    app: Flask, runtime: Runtime, tenant: TenantHandle
) -> None:
    owner_user = make_staff_user(runtime, tenant.id, "owner")
    admin_user = make_staff_user(runtime, tenant.id, "admin")
    owner = console_for(app, tenant.slug, owner_user)
    admin = console_for(app, tenant.slug, admin_user)

    refused = admin.post("/v1/staff/invitations", {"email": "boss@invited.example", "role": "owner"})
    assert (refused.status_code, refused.get_json()["code"]) == (403, "owner_role_required")
    assert admin.post("/v1/staff/invitations", {"email": "aide@invited.example", "role": "admin"}).status_code == 201
    promote = admin.request("PATCH", f"/v1/staff/{admin_user.id}", {"role": "owner"})
    assert (promote.status_code, promote.get_json()["code"]) == (403, "owner_role_required")
    disable_owner = admin.request("PATCH", f"/v1/staff/{owner_user.id}", {"status": "disabled"})
    assert (disable_owner.status_code, disable_owner.get_json()["code"]) == (403, "owner_role_required")

    for change in ({"role": "admin"}, {"status": "disabled"}):
        last = owner.request("PATCH", f"/v1/staff/{owner_user.id}", change)
        assert (last.status_code, last.get_json()["code"]) == (409, "last_owner"), change

    promoted = owner.request("PATCH", f"/v1/staff/{admin_user.id}", {"role": "owner"})
    assert promoted.status_code == 200, promoted.get_json()
    stepped_down = owner.request("PATCH", f"/v1/staff/{owner_user.id}", {"role": "finance"})
    assert stepped_down.status_code == 200, stepped_down.get_json()
    # Its session now holds the finance role's scopes.
    me = owner.get("/v1/console/me").get_json()
    assert me["role"] == "finance"
    assert "staff:write" not in me["scopes"]
    assert owner.request("PATCH", f"/v1/staff/{admin_user.id}", {"role": "admin"}).status_code == 403
    assert event_types(runtime, tenant.id, owner_user.id) == ["staff.role_changed"]
    missing = admin.request("PATCH", "/v1/staff/stf_01JD8ZZZZZZZZZZZZZZZZZZZZZ", {"role": "admin"})
    assert (missing.status_code, missing.get_json()["code"]) == (404, "staff_user_not_found")


def test_disabling_a_staff_user_ends_its_sessions_and_its_logins(
    app: Flask, runtime: Runtime, tenant: TenantHandle
) -> None:
    owner = console_for(app, tenant.slug, make_staff_user(runtime, tenant.id, "owner"))
    clerk_user = make_staff_user(runtime, tenant.id, "support")
    clerk = console_for(app, tenant.slug, clerk_user)
    assert clerk.get("/v1/customers").status_code == 200

    disabled = owner.request("PATCH", f"/v1/staff/{clerk_user.id}", {"status": "disabled"})

    assert disabled.status_code == 200, disabled.get_json()
    assert disabled.get_json()["status"] == "disabled"
    over = clerk.get("/v1/customers")
    assert (over.status_code, over.get_json()["code"]) == (401, "session_expired")
    again, _ = log_in(app, tenant.slug, clerk_user.email)
    assert (again.status_code, again.get_json()["code"]) == (401, "invalid_credentials")
    assert event_types(runtime, tenant.id, clerk_user.id) == ["staff.disabled"]


def test_five_failed_logins_lock_the_account_for_a_while(app: Flask, runtime: Runtime, tenant: TenantHandle) -> None:
    user = make_staff_user(runtime, tenant.id, "finance")
    wrong = "not the password at all 99"

    # Unknown tenant, unknown e-mail and wrong password answer alike.
    answers = [
        log_in(app, "no-such-tenant", user.email)[0],
        log_in(app, tenant.slug, "nobody@staff.example")[0],
        log_in(app, tenant.slug, user.email, wrong)[0],
    ]
    assert {(a.status_code, a.get_json()["code"], a.get_json()["detail"]) for a in answers} == {
        (401, "invalid_credentials", "The tenant, e-mail address or password is wrong.")
    }
    # A success resets the count: four failures, a success, four more, and the password still works.
    for _ in range(3):
        assert log_in(app, tenant.slug, user.email, wrong)[0].status_code == 401
    assert log_in(app, tenant.slug, user.email)[0].status_code == 201
    for _ in range(4):
        assert log_in(app, tenant.slug, user.email, wrong)[0].status_code == 401
    assert log_in(app, tenant.slug, user.email)[0].status_code == 201

    for _ in range(5):
        assert log_in(app, tenant.slug, user.email, wrong)[0].status_code == 401
    locked, _ = log_in(app, tenant.slug, user.email)

    assert locked.status_code == 423, locked.get_json()
    assert locked.get_json()["code"] == "login_locked"
    assert 14 * 60 <= int(locked.headers["Retry-After"]) <= 15 * 60
    assert "login_locked" in str(event_types(runtime, tenant.id, user.id))
    # The lock over, the password works again.
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        session.execute(
            update(StaffUser)
            .where(StaffUser.id == user.id)
            .values(locked_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    assert log_in(app, tenant.slug, user.email)[0].status_code == 201


def test_two_factor_login_with_an_authenticator_app(app: Flask, runtime: Runtime, tenant: TenantHandle) -> None:
    user = make_staff_user(runtime, tenant.id, "admin")
    console = console_for(app, tenant.slug, user)

    setup = console.post("/v1/console/me/totp")
    assert setup.status_code == 201, setup.get_json()
    secret = setup.get_json()["secret"]
    assert setup.get_json()["otpauth_uri"].startswith("otpauth://totp/")
    assert secret in setup.get_json()["otpauth_uri"]
    assert setup.get_json()["qr_svg"].startswith("data:image/svg+xml")
    totp = pyotp.TOTP(secret)
    # Not on before a code confirms it.
    assert log_in(app, tenant.slug, user.email)[0].status_code == 201
    wrong = console.post("/v1/console/me/totp/confirm", {"code": "000000" if totp.now() != "000000" else "111111"})
    assert (wrong.status_code, wrong.get_json()["code"]) == (422, "totp_code_incorrect")
    confirmed = console.post("/v1/console/me/totp/confirm", {"code": totp.now()})
    assert confirmed.status_code == 200, confirmed.get_json()
    assert confirmed.get_json()["totp_enabled"] is True

    without, _ = log_in(app, tenant.slug, user.email)
    assert (without.status_code, without.get_json()["code"]) == (401, "totp_required")
    bad, _ = log_in(app, tenant.slug, user.email, totp_code="123456" if totp.now() != "123456" else "654321")
    assert (bad.status_code, bad.get_json()["code"]) == (401, "invalid_totp")
    code = totp.now()
    good, second = log_in(app, tenant.slug, user.email, totp_code=code)
    assert good.status_code == 201, good.get_json()
    replayed, _ = log_in(app, tenant.slug, user.email, totp_code=code)
    assert (replayed.status_code, replayed.get_json()["code"]) == (401, "invalid_totp")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        failures = session.scalar(select(StaffUser.failed_logins).where(StaffUser.id == user.id))
    assert failures == 1  # the replay; the success before it reset the wrong code's count

    # Turning it off takes a code not used yet: the next time step's, within the drift allowed.
    next_code = totp.at(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30))
    off = second.request("DELETE", "/v1/console/me/totp", {"code": next_code})
    assert off.status_code == 200, off.get_json()
    assert off.get_json()["totp_enabled"] is False
    assert log_in(app, tenant.slug, user.email)[0].status_code == 201
    assert event_types(runtime, tenant.id, user.id) == ["staff.totp_enabled", "staff.totp_disabled"]


def audit_log(tenant: TenantHandle) -> list[dict[str, Any]]:
    """Every page of the tenant's audit log (onboarding alone writes a row per eSIM profile)."""
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    while True:
        page = tenant.api.get("/v1/audit-events", **params).json
        rows += page["data"]
        if not page["has_more"]:
            return rows
        params["starting_after"] = page["data"][-1]["id"]


def test_an_offer_made_in_a_staff_session_names_the_staff_user_in_the_audit_log(
    app: Flask, runtime: Runtime, tenant: TenantHandle
) -> None:
    user = make_staff_user(runtime, tenant.id, "catalog_manager")
    console = console_for(app, tenant.slug, user)

    made = console.post("/v1/offers", {**OFFER, "code": "AUDITED"})

    assert made.status_code == 201, made.get_json()
    rows = [row for row in audit_log(tenant) if row["object_id"] == made.get_json()["id"]]
    assert [(r["actor_type"], r["actor_id"], r["action"]) for r in rows] == [("staff", user.id, "create")]
    assert rows[0]["client_id"].startswith("ses_")


def test_logout_expiry_suspension_and_callers_of_another_kind(
    app: Flask, runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    user = make_staff_user(runtime, tenant.id, "read_only")
    console = console_for(app, tenant.slug, user)
    assert console.get("/v1/console/me").status_code == 200
    # The tenant's back end is not a staff user.
    kind = tenant.api.get("/v1/console/me")
    assert (kind.status_code, kind.json["code"]) == (403, "caller_kind_refused")

    assert operator.api.post(f"/v1/tenants/{tenant.id}/suspend", {"reason": "test"}).status_code == 200
    suspended = console.get("/v1/console/me")
    assert (suspended.status_code, suspended.get_json()["code"]) == (403, "tenant_suspended")
    refused, _ = log_in(app, tenant.slug, user.email)
    assert (refused.status_code, refused.get_json()["code"]) == (403, "tenant_suspended")
    assert operator.api.post(f"/v1/tenants/{tenant.id}/resume").status_code == 200
    assert console.get("/v1/console/me").status_code == 200

    without_csrf = console.request("DELETE", "/v1/console/sessions/current", csrf=False)
    assert (without_csrf.status_code, without_csrf.get_json()["code"]) == (403, "csrf_failed")
    out = console.request("DELETE", "/v1/console/sessions/current")
    assert out.status_code == 204
    assert "mvne_session=;" in out.headers["Set-Cookie"]
    assert console.cookie() is None

    later = console_for(app, tenant.slug, user)
    token = later.cookie()
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        session.execute(
            update(StaffSession)
            .where(StaffSession.staff_user_id == user.id, StaffSession.revoked_at.is_(None))
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    replay = app.test_client()
    assert token
    replay.set_cookie("mvne_session", token)
    expired = replay.get("/v1/console/me")
    assert (expired.status_code, expired.get_json()["code"]) == (401, "session_expired")
