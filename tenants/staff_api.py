"""Staff users and console sessions: login (a cookie and a CSRF token), who am I, two-factor login,
the tenant's staff and their invitations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import segno
from flask import request
from flask_smorest import Blueprint
from sqlalchemy import select
from werkzeug.http import dump_cookie

from mvne.infra.crypto import SecretBox
from mvne.infra.settings import Settings
from mvne.infra.web.auth import KIND_STAFF, SESSION_COOKIE, current_principal, public, require
from mvne.infra.web.context import db_session, public_db_session, runtime, tenant_id
from mvne.infra.web.limits import client_address
from mvne.infra.web.pagination import PageArgs, page_schema, paginate
from mvne.infra.web.problems import problems
from mvne.tenants import roles, staff
from mvne.tenants.branding import brand_of
from mvne.tenants.errors import (
    EmailNotVerified,
    InvalidCredentials,
    InvalidTotp,
    InvitationRevoked,
    InvitationTokenExpired,
    InvitationTokenInvalid,
    LastOwner,
    LoginLocked,
    LoginRefused,
    OwnerRoleRequired,
    StaffEmailTaken,
    StaffInvitationAccepted,
    StaffInvitationNotFound,
    StaffUserNotFound,
    TenantSuspended,
    TotpAlreadyEnabled,
    TotpCodeIncorrect,
    TotpNotEnabled,
    TotpNotStarted,
    TotpRequired,
    WeakPassword,
)
from mvne.tenants.models import StaffInvitation, StaffUser, Tenant
from mvne.tenants.schemas import (
    ConsoleMeSchema,
    InvitationAcceptSchema,
    LoginSchema,
    SessionCreatedSchema,
    StaffInvitationCreateSchema,
    StaffInvitationSchema,
    StaffUpdateSchema,
    StaffUserSchema,
    TotpCodeSchema,
    TotpSetupSchema,
)

console = Blueprint(
    "console",
    __name__,
    url_prefix="/v1/console",
    description="Staff users' console sessions: log in (a cookie and a CSRF token), who am I, two-factor login.",
)
staff_blp = Blueprint(
    "staff",
    __name__,
    url_prefix="/v1/staff",
    description="The tenant's staff users, their roles, and invitations to join.",
)
STAFF_ONLY = (KIND_STAFF,)


def secret_box(settings: Settings) -> SecretBox:
    """The box second factors' secrets are sealed in: the platform's key for secrets at rest."""
    return SecretBox.from_setting(settings.sim_key)


def session_cookie(settings: Settings, value: str, max_age: int) -> str:
    """The console session's cookie: script-proof, same-site only, Secure when the platform is served over HTTPS."""
    return dump_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        path="/",
        secure=settings.public_url.startswith("https://"),
        httponly=True,
        samesite="Strict",
    )


def _acts_as_owner() -> bool:
    """Owners, and the tenant's own API clients (its back end acts for the tenant itself)."""
    principal = current_principal()
    if principal.kind != KIND_STAFF:
        return True
    user = db_session().get(StaffUser, principal.subject)
    return user is not None and user.role == roles.OWNER


# Console sessions ---------------------------------------------------------------------------------------


@console.post("/sessions")
@public
@problems(InvalidCredentials, TotpRequired, InvalidTotp, EmailNotVerified, TenantSuspended, LoginLocked)
@console.arguments(
    LoginSchema, example={"tenant": "nimbus", "email": "ada@nimbus.example", "password": "correct horse battery"}
)
@console.response(201, SessionCreatedSchema)
def log_in(body: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """Log in to the console: sets the `mvne_session` cookie (HttpOnly, SameSite=Strict) and answers a CSRF token.

    The same 401 `invalid_credentials` answers an unknown tenant, an unknown e-mail, a wrong password and
    a disabled account. Five failures in a row (passwords or one-time codes) lock the account for 15
    minutes: 423 `login_locked` with `Retry-After`. With two-factor login on, send `totp_code` too.
    Then call the API with the cookie, and the CSRF token as `X-CSRF-Token` on POST, PUT, PATCH and DELETE.
    """
    rt = runtime()
    settings = rt.settings
    ttl = dt.timedelta(seconds=settings.staff_session_ttl_s)
    with rt.db.session(platform=True) as session:
        try:
            user, _tenant = staff.check_login(
                session,
                tenant_slug=body["tenant"],
                email=body["email"],
                password=body["password"],
                totp_code=body.get("totp_code"),
                box=secret_box(settings),
            )
            issued = staff.open_session(
                session, user, ttl=ttl, ip=client_address(), user_agent=request.headers.get("User-Agent")
            )
            answer = {
                "csrf_token": issued.csrf_token,
                "expires_at": issued.session.expires_at,
                "staff_user": staff.staff_view(user),
            }
            session.commit()
        except LoginRefused:
            session.commit()  # the failure count, and a lock, stay
            raise
    return answer, 201, {"Set-Cookie": session_cookie(settings, issued.token, int(ttl.total_seconds()))}


@console.delete("/sessions/current")
@require(roles.SELF_SCOPE, kinds=STAFF_ONLY)
@console.response(204)
def log_out() -> tuple[str, int, dict[str, str]]:
    """Log out: the session ends and its cookie is cleared."""
    staff.end_session(db_session(), current_principal().client_id)
    return "", 204, {"Set-Cookie": session_cookie(runtime().settings, "", 0)}


@console.get("/me")
@require(roles.SELF_SCOPE, kinds=STAFF_ONLY)
@console.response(200, ConsoleMeSchema)
def me() -> dict[str, Any]:
    """The logged-in staff user: its role, what the role allows (as scopes), its tenant and its session."""
    principal = current_principal()
    session = db_session()
    user = staff.get_staff_user(session, str(principal.subject))
    tenant = session.get(Tenant, user.tenant_id)
    current = staff.get_session(session, principal.client_id)
    return {
        "staff_user": user,
        "role": user.role,
        "scopes": sorted(principal.scopes),
        "totp_enabled": user.totp_enabled_at is not None,
        "tenant": tenant,
        "session_expires_at": current.expires_at if current else None,
    }


@console.post("/me/totp")
@require(roles.SELF_SCOPE, kinds=STAFF_ONLY)
@problems(TotpAlreadyEnabled)
@console.response(201, TotpSetupSchema)
def begin_totp() -> dict[str, Any]:
    """Start setting up two-factor login: a new secret, as an otpauth:// URI and its QR code.

    Scan it with an authenticator app, then confirm with a code (POST /v1/console/me/totp/confirm);
    until then login does not ask for codes. Starting again replaces a setup not yet confirmed.
    """
    session = db_session()
    settings = runtime().settings
    user = staff.get_staff_user(session, str(current_principal().subject))
    tenant = session.get(Tenant, user.tenant_id)
    issuer = f"{brand_of(session, tenant).display_name} console" if tenant else "Console"
    setup = staff.begin_totp(session, user.id, box=secret_box(settings), issuer=issuer)
    qr = segno.make_qr(setup.uri, error="m").svg_data_uri(scale=4, border=4)
    return {"secret": setup.secret, "otpauth_uri": setup.uri, "qr_svg": qr}


@console.post("/me/totp/confirm")
@require(roles.SELF_SCOPE, kinds=STAFF_ONLY)
@problems(TotpNotStarted, TotpAlreadyEnabled, TotpCodeIncorrect)
@console.arguments(TotpCodeSchema, example={"code": "123456"})
@console.response(200, StaffUserSchema)
def confirm_totp(body: dict[str, Any]) -> StaffUser:
    """Turn two-factor login on with the code the authenticator app shows; logins then ask for one."""
    return staff.confirm_totp(
        db_session(), str(current_principal().subject), body["code"], box=secret_box(runtime().settings)
    )


@console.delete("/me/totp")
@require(roles.SELF_SCOPE, kinds=STAFF_ONLY)
@problems(TotpNotEnabled, TotpCodeIncorrect)
@console.arguments(TotpCodeSchema, example={"code": "123456"})
@console.response(200, StaffUserSchema)
def disable_totp(body: dict[str, Any]) -> StaffUser:
    """Turn two-factor login off, with a current code as proof."""
    return staff.disable_totp(
        db_session(), str(current_principal().subject), body["code"], box=secret_box(runtime().settings)
    )


# Staff users and invitations ----------------------------------------------------------------------------


@staff_blp.get("")
@require("staff:read")
@staff_blp.arguments(PageArgs, location="query")
@staff_blp.response(200, page_schema(StaffUserSchema, "StaffUserPage"))
def list_staff(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's staff users, oldest first, disabled ones included."""
    return paginate(db_session(), select(StaffUser), StaffUser.id, args, prefix="stf")


@staff_blp.post("/invitations")
@require("staff:write")
@problems(OwnerRoleRequired, StaffEmailTaken)
@staff_blp.arguments(StaffInvitationCreateSchema, example={"email": "grace@nimbus.example", "role": "support"})
@staff_blp.response(201, StaffInvitationSchema)
def invite_staff(body: dict[str, Any]) -> StaffInvitation:
    """Invite a person to the staff with a role: the link is e-mailed and works once, for 7 days.

    Only owners invite owners (403 `owner_role_required`). Inviting an address again replaces its pending
    invitation.
    """
    session = db_session()
    tenant = session.get(Tenant, tenant_id())
    assert tenant is not None
    return staff.invite_staff(
        session,
        tenant=tenant,
        email=body["email"],
        role=body["role"],
        invited_by=current_principal().actor_id,
        inviter_is_owner=_acts_as_owner(),
        public_url=runtime().settings.public_url,
    )


@staff_blp.get("/invitations")
@require("staff:read")
@staff_blp.arguments(PageArgs, location="query")
@staff_blp.response(200, page_schema(StaffInvitationSchema, "StaffInvitationPage"))
def list_invitations(args: dict[str, Any]) -> dict[str, Any]:
    """The tenant's invitations, oldest first, with their status (pending, accepted, revoked, expired)."""
    return paginate(db_session(), select(StaffInvitation), StaffInvitation.id, args, prefix="sti")


@staff_blp.delete("/invitations/<staff_invitation_id>")
@require("staff:write")
@problems(StaffInvitationNotFound, StaffInvitationAccepted)
@staff_blp.response(204)
def revoke_invitation(staff_invitation_id: str) -> None:
    """Revoke a pending invitation: its link stops working. An accepted one is 409."""
    staff.revoke_invitation(db_session(), staff_invitation_id)


@staff_blp.post("/invitations/accept")
@public
@problems(InvitationTokenInvalid, InvitationTokenExpired, InvitationRevoked, WeakPassword, StaffEmailTaken)
@staff_blp.arguments(
    InvitationAcceptSchema,
    example={"token": "l1Yf9bX0dWq3...", "name": "Grace Hopper", "password": "cobalt lantern orchard swim"},
)
@staff_blp.response(201, StaffUserSchema)
def accept_invitation(body: dict[str, Any]) -> StaffUser:
    """Join a tenant's staff with an invitation's code: choose a name and a password; the e-mail is verified."""
    return staff.accept_invitation(
        public_db_session(), token=body["token"], name=body["name"], password=body["password"]
    )


@staff_blp.get("/<staff_user_id>")
@require("staff:read")
@problems(StaffUserNotFound)
@staff_blp.response(200, StaffUserSchema)
def get_staff_user(staff_user_id: str) -> StaffUser:
    """One staff user."""
    return staff.get_staff_user(db_session(), staff_user_id)


@staff_blp.patch("/<staff_user_id>")
@require("staff:write")
@problems(StaffUserNotFound, OwnerRoleRequired, LastOwner)
@staff_blp.arguments(StaffUpdateSchema, example={"role": "finance"})
@staff_blp.response(200, StaffUserSchema)
def update_staff_user(body: dict[str, Any], staff_user_id: str) -> StaffUser:
    """Change a staff user's role or status; disabling ends its sessions.

    Only owners grant or take away the owner role, or disable an owner (403 `owner_role_required`); the
    tenant keeps at least one active owner (409 `last_owner`).
    """
    return staff.update_staff_user(
        db_session(),
        staff_user_id,
        role=body.get("role"),
        status=body.get("status"),
        actor_is_owner=_acts_as_owner(),
    )
