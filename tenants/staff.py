"""Staff users: invitations, e-mail verification, password login with lockout, TOTP, console sessions.

Every token (session, CSRF, invitation, verification) is 256 random bits shown once; only its sha256
digest is stored, which is enough for a secret that cannot be guessed (a password needs argon2, a random
token does not). Login runs before the tenant of the request is known, so its lookups take a
platform-scoped session and name the tenant themselves.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pyotp
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from mvne.infra.crypto import SecretBox
from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.infra.mail import Mail, send_mail
from mvne.tenants import credentials, roles
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
    VerificationTokenExpired,
    VerificationTokenInvalid,
)
from mvne.tenants.models import EmailVerification, StaffInvitation, StaffSession, StaffUser, Tenant
from mvne.tenants.service import get_tenant_by_slug, record_event

ACTIVE = "active"
DISABLED = "disabled"
STATUSES = (ACTIVE, DISABLED)

INVITATION_TTL = dt.timedelta(days=7)
VERIFICATION_TTL = dt.timedelta(hours=24)
# A new verification link at most this often per person, whatever is asked (no mail bombing).
RESEND_INTERVAL = dt.timedelta(minutes=1)
MAX_FAILED_LOGINS = 5
LOCKOUT = dt.timedelta(minutes=15)
DEFAULT_SESSION_TTL = dt.timedelta(hours=12)
# last_seen_at is written at most this often: one write a minute per session, not one per request.
SEEN_GRANULARITY = dt.timedelta(minutes=1)
TOTP_DIGITS = 6
# Tenants gone or going: their staff can neither log in nor join.
GONE = ("offboarding", "offboarded")
# Tenants whose staff may log in (a suspended one's may not, as its API refuses its clients).
SERVING = ("active", "onboarding")


def digest(token: str) -> str:
    """The stored form of a random token: its sha256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A 256-bit random token (URL-safe) and its digest."""
    token = secrets.token_urlsafe(32)
    return token, digest(token)


def normalize_email(email: str) -> str:
    return email.strip().lower()


@functools.cache
def _decoy_hash() -> str:
    # Checked against when there is no such user, so an unknown e-mail costs the same argon2 time as a known one.
    return credentials.hash_secret(secrets.token_urlsafe(32))


# Staff users ------------------------------------------------------------------------------------------------


def create_staff_user(
    session: Session,
    *,
    tenant_id: str,
    email: str,
    name: str,
    role: str,
    password: str,
    verified: bool,
    user_inputs: tuple[str, ...] = (),
) -> StaffUser:
    """A staff user of the tenant; its password checked for strength (422 `weak_password`), stored as argon2id."""
    if role not in roles.ROLES:
        raise ValueError(f"unknown role {role!r}")
    email = normalize_email(email)
    credentials.check_password(password, user_inputs=(email, name, *user_inputs))
    taken = session.scalar(select(StaffUser.id).where(StaffUser.tenant_id == tenant_id, StaffUser.email == email))
    if taken is not None:
        raise StaffEmailTaken(
            f"{email} is already a staff user of this tenant.", errors={"email": ["Already a staff user here."]}
        )
    now = utcnow()
    user = StaffUser(
        id=new_id("stf"),
        tenant_id=tenant_id,
        email=email,
        name=name,
        role=role,
        password_hash=credentials.hash_secret(password),
        email_verified_at=now if verified else None,
        status=ACTIVE,
        failed_logins=0,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def find_staff_user(session: Session, tenant_id: str, email: str) -> StaffUser | None:
    """The tenant's staff user with this e-mail (any case), or None."""
    return session.scalar(
        select(StaffUser).where(StaffUser.tenant_id == tenant_id, StaffUser.email == normalize_email(email))
    )


def get_staff_user(session: Session, user_id: str, *, lock: bool = False) -> StaffUser:
    if lock:
        user = session.get(StaffUser, user_id, with_for_update=True)
        if user is None:
            raise StaffUserNotFound(f"No staff user {user_id}.")
        return user
    return get_or_raise(session, StaffUser, user_id, StaffUserNotFound, "staff user")


def update_staff_user(
    session: Session, user_id: str, *, role: str | None, status: str | None, actor_is_owner: bool
) -> StaffUser:
    """Change a staff user's role or status (the session's tenant).

    Only an owner (or the tenant's own API client) grants or takes away the owner role, or disables an
    owner: 403 `owner_role_required`. The tenant keeps at least one active owner: 409 `last_owner`.
    Disabling a user ends its sessions at once.
    """
    user = get_staff_user(session, user_id, lock=True)
    new_role = role if role is not None and role != user.role else None
    new_status = status if status is not None and status != user.status else None
    owner_touched = (new_role is not None and roles.OWNER in (new_role, user.role)) or (
        new_status == DISABLED and user.role == roles.OWNER
    )
    if owner_touched and not actor_is_owner:
        raise OwnerRoleRequired("Only an owner grants or takes away the owner role, or disables an owner.")
    stops_owning = (
        user.role == roles.OWNER and user.status == ACTIVE and (new_role is not None or new_status == DISABLED)
    )
    if stops_owning:
        others = session.scalars(
            select(StaffUser.id)
            .where(
                StaffUser.tenant_id == user.tenant_id,
                StaffUser.role == roles.OWNER,
                StaffUser.status == ACTIVE,
                StaffUser.id != user.id,
            )
            .with_for_update()
        ).all()
        if not others:
            raise LastOwner(
                f"{user.email} is the tenant's last active owner: make another staff user owner first.",
            )
    if new_role is not None:
        before = user.role
        user.role = new_role
        record_event(session, "staff.role_changed", user.id, {"from": before, "to": new_role}, tenant_id=user.tenant_id)
    if new_status is not None:
        user.status = new_status
        if new_status == DISABLED:
            end_sessions(session, user.id)
            record_event(session, "staff.disabled", user.id, {"email": user.email}, tenant_id=user.tenant_id)
        else:
            record_event(session, "staff.enabled", user.id, {"email": user.email}, tenant_id=user.tenant_id)
    session.flush()
    return user


def end_sessions(session: Session, user_id: str) -> None:
    now = utcnow()
    session.execute(
        update(StaffSession)
        .where(StaffSession.staff_user_id == user_id, StaffSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# E-mail verification ------------------------------------------------------------------------------------


def send_verification(session: Session, user: StaffUser, *, public_url: str, brand_name: str) -> EmailVerification:
    """A new verification link for the user, e-mailed (kind `signup_verification`) once the change commits."""
    token, token_hash = new_token()
    now = utcnow()
    verification = EmailVerification(
        id=new_id("evf"),
        tenant_id=user.tenant_id,
        staff_user_id=user.id,
        token_hash=token_hash,
        expires_at=now + VERIFICATION_TTL,
        created_at=now,
    )
    session.add(verification)
    session.flush()
    link = f"{public_url}/console/verify-email?token={quote(token)}"
    text = (
        f"Welcome to the platform, and to {brand_name}.\n\n"
        f"Confirm your e-mail address to sign in to your console:\n\n{link}\n\n"
        f"Or paste this code where the console asks for it: {token}\n\n"
        f"The link works once, for {int(VERIFICATION_TTL.total_seconds() // 3600)} hours. "
        "If you did not sign up, ignore this message."
    )
    send_mail(
        session,
        Mail(
            to=user.email,
            subject=f"Confirm your e-mail address for {brand_name}",
            text=text,
            kind="signup_verification",
        ),
        tenant_id=user.tenant_id,
    )
    return verification


def verify_email(session: Session, token: str) -> StaffUser:
    """Mark the e-mail of the link's user verified (platform-scoped session); each link works once."""
    verification = session.scalar(
        select(EmailVerification).where(EmailVerification.token_hash == digest(token)).with_for_update()
    )
    fix = "Ask for a new link: POST /v1/signup/resend-verification with your e-mail address and tenant."
    if verification is None or verification.used_at is not None:
        raise VerificationTokenInvalid(
            f"This verification link is unknown or was already used. {fix}",
            errors={"token": ["Unknown or already used."]},
        )
    now = utcnow()
    if verification.expires_at <= now:
        raise VerificationTokenExpired(
            f"This verification link expired at {verification.expires_at:%Y-%m-%dT%H:%M:%SZ}. {fix}",
            errors={"token": ["Expired."]},
        )
    user = session.get(StaffUser, verification.staff_user_id, with_for_update=True)
    if user is None:  # erased with its tenant
        raise VerificationTokenInvalid(f"This verification link is unknown. {fix}", errors={"token": ["Unknown."]})
    # Every open link of the user is spent: the first one used proves the address.
    session.execute(
        update(EmailVerification)
        .where(EmailVerification.staff_user_id == user.id, EmailVerification.used_at.is_(None))
        .values(used_at=now)
    )
    if user.email_verified_at is None:
        user.email_verified_at = now
        record_event(
            session,
            "tenant.email_verified",
            user.id,
            {"staff_user_id": user.id, "email": user.email},
            tenant_id=user.tenant_id,
        )
    session.flush()
    return user


def resend_verification(session: Session, *, tenant_slug: str, email: str, public_url: str) -> None:
    """A new link for an unverified staff user of the tenant; nothing (and no sign of it) otherwise."""
    tenant = get_tenant_by_slug(session, tenant_slug)
    if tenant is None or tenant.status in GONE:
        return
    user = session.scalar(
        select(StaffUser).where(StaffUser.tenant_id == tenant.id, StaffUser.email == normalize_email(email))
    )
    if user is None or user.email_verified_at is not None or user.status != ACTIVE:
        return
    last = session.scalar(
        select(func.max(EmailVerification.created_at)).where(EmailVerification.staff_user_id == user.id)
    )
    if last is not None and utcnow() - last < RESEND_INTERVAL:
        return
    send_verification(session, user, public_url=public_url, brand_name=brand_of(session, tenant).display_name)


# Invitations --------------------------------------------------------------------------------------------


def invite_staff(
    session: Session,
    *,
    tenant: Tenant,
    email: str,
    role: str,
    invited_by: str,
    inviter_is_owner: bool,
    public_url: str,
) -> StaffInvitation:
    """Invite a person to the tenant's staff with a role; the link is e-mailed (kind `staff_invitation`).

    Inviting an e-mail that has a pending invitation replaces it (the earlier link stops working).
    """
    if role not in roles.ROLES:
        raise ValueError(f"unknown role {role!r}")
    if role == roles.OWNER and not inviter_is_owner:
        raise OwnerRoleRequired("Only an owner invites owners.")
    email = normalize_email(email)
    taken = session.scalar(select(StaffUser.id).where(StaffUser.tenant_id == tenant.id, StaffUser.email == email))
    if taken is not None:
        raise StaffEmailTaken(
            f"{email} is already a staff user of this tenant ({taken}); change its role instead.",
            errors={"email": ["Already a staff user here."]},
        )
    now = utcnow()
    session.execute(
        update(StaffInvitation)
        .where(
            StaffInvitation.tenant_id == tenant.id,
            StaffInvitation.email == email,
            StaffInvitation.accepted_at.is_(None),
            StaffInvitation.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    token, token_hash = new_token()
    invitation = StaffInvitation(
        id=new_id("sti"),
        tenant_id=tenant.id,
        email=email,
        role=role,
        token_hash=token_hash,
        invited_by=invited_by,
        expires_at=now + INVITATION_TTL,
        created_at=now,
    )
    session.add(invitation)
    session.flush()
    brand = brand_of(session, tenant).display_name
    link = f"{public_url}/console/accept-invitation?token={quote(token)}"
    text = (
        f"You are invited to join {brand}'s team on the platform as {role.replace('_', ' ')}.\n\n"
        f"Choose your password and join:\n\n{link}\n\n"
        f"Or paste this code where the console asks for it: {token}\n\n"
        f"The invitation works once, for {INVITATION_TTL.days} days. If you did not expect it, ignore this message."
    )
    send_mail(
        session,
        Mail(to=email, subject=f"Join {brand} on the platform", text=text, kind="staff_invitation", sender_name=brand),
        tenant_id=tenant.id,
    )
    record_event(
        session,
        "staff.invited",
        invitation.id,
        {"email": email, "role": role, "invited_by": invited_by},
        tenant_id=tenant.id,
    )
    return invitation


def get_invitation(session: Session, invitation_id: str) -> StaffInvitation:
    return get_or_raise(session, StaffInvitation, invitation_id, StaffInvitationNotFound, "staff invitation")


def revoke_invitation(session: Session, invitation_id: str) -> StaffInvitation:
    """Stop an invitation's link from working; revoking a revoked one changes nothing (409 once accepted)."""
    invitation = session.get(StaffInvitation, invitation_id, with_for_update=True)
    if invitation is None:
        raise StaffInvitationNotFound(f"No staff invitation {invitation_id}.")
    if invitation.accepted_at is not None:
        raise StaffInvitationAccepted(
            f"Invitation {invitation_id} was accepted; disable the staff user instead (PATCH /v1/staff/{{id}})."
        )
    if invitation.revoked_at is None:
        invitation.revoked_at = utcnow()
        session.flush()
        record_event(
            session,
            "staff.invitation_revoked",
            invitation.id,
            {"email": invitation.email},
            tenant_id=invitation.tenant_id,
        )
    return invitation


def accept_invitation(session: Session, *, token: str, name: str, password: str) -> StaffUser:
    """Join the tenant with the invitation's role (platform-scoped session); the e-mail counts as verified."""
    invitation = session.scalar(
        select(StaffInvitation).where(StaffInvitation.token_hash == digest(token)).with_for_update()
    )
    fix = "Ask the person who invited you for a new invitation."
    if invitation is None or invitation.accepted_at is not None:
        raise InvitationTokenInvalid(
            f"This invitation is unknown or was already used. {fix}", errors={"token": ["Unknown or already used."]}
        )
    if invitation.revoked_at is not None:
        raise InvitationRevoked(f"This invitation was revoked. {fix}", errors={"token": ["Revoked."]})
    now = utcnow()
    if invitation.expires_at <= now:
        raise InvitationTokenExpired(
            f"This invitation expired at {invitation.expires_at:%Y-%m-%dT%H:%M:%SZ}. {fix}",
            errors={"token": ["Expired."]},
        )
    tenant = session.get(Tenant, invitation.tenant_id)
    if tenant is None or tenant.status in GONE:
        raise InvitationTokenInvalid(f"This invitation's tenant is closed. {fix}", errors={"token": ["Closed."]})
    user = create_staff_user(
        session,
        tenant_id=tenant.id,
        email=invitation.email,
        name=name,
        role=invitation.role,
        password=password,
        verified=True,
        user_inputs=(tenant.name, brand_of(session, tenant).display_name),
    )
    invitation.accepted_at = now
    invitation.staff_user_id = user.id
    session.flush()
    record_event(
        session,
        "staff.joined",
        user.id,
        {"email": user.email, "role": user.role, "invitation_id": invitation.id},
        tenant_id=tenant.id,
    )
    return user


# Login and sessions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedSession:
    """A new console session: the cookie's token and the CSRF token, shown once."""

    session: StaffSession
    token: str
    csrf_token: str


def check_login(
    session: Session,
    *,
    tenant_slug: str,
    email: str,
    password: str,
    totp_code: str | None,
    box: SecretBox,
    now: dt.datetime | None = None,
) -> tuple[StaffUser, Tenant]:
    """The user and tenant the credentials name (platform-scoped session), or a `LoginRefused` error.

    Whatever is refused, the answer is the same for an unknown tenant, an unknown e-mail, a wrong password
    and a disabled account, and costs the same argon2 check. Wrong passwords and wrong one-time codes count;
    the fifth in a row locks the account for 15 minutes (423 `login_locked` with `Retry-After`), and a
    successful login resets the count. The caller commits even when this raises, to keep the count.
    """
    now = now or utcnow()
    refused = InvalidCredentials("The tenant, e-mail address or password is wrong.")
    tenant = get_tenant_by_slug(session, tenant_slug)
    user = None
    if tenant is not None and tenant.status not in GONE:
        user = session.scalar(
            select(StaffUser)
            .where(StaffUser.tenant_id == tenant.id, StaffUser.email == normalize_email(email))
            .with_for_update()
        )
    if user is None or tenant is None:
        credentials.verify_secret(_decoy_hash(), password)
        raise refused
    if user.locked_until is not None and user.locked_until > now:
        seconds = max(1, int((user.locked_until - now).total_seconds() + 0.999))
        raise LoginLocked(
            f"Too many failed logins: this account is locked until {user.locked_until:%Y-%m-%dT%H:%M:%SZ}. "
            f"Retry in {seconds} seconds, or ask an owner or admin to check the account.",
            headers={"Retry-After": str(seconds)},
        )
    if not credentials.verify_secret(user.password_hash, password):
        _count_failure(session, user, now)
        raise refused
    if user.status != ACTIVE:
        raise refused
    if user.totp_enabled_at is not None:
        if not totp_code:
            raise TotpRequired("This account has two-factor login: send `totp_code` from your authenticator app.")
        step = _totp_step(_totp_secret(user, box), totp_code, now, user.totp_last_step)
        if step is None:
            _count_failure(session, user, now)
            raise InvalidTotp("The one-time code is wrong or was already used; send the current one.")
        user.totp_last_step = step
    user.failed_logins = 0
    user.locked_until = None
    if user.email_verified_at is None:
        session.flush()
        raise EmailNotVerified(
            "Confirm your e-mail address first with the link we sent; ask for a new one with "
            "POST /v1/signup/resend-verification."
        )
    if credentials.needs_rehash(user.password_hash):
        user.password_hash = credentials.hash_secret(password)
    session.flush()
    if tenant.status not in SERVING:
        since = f" since {tenant.suspended_at:%Y-%m-%dT%H:%M:%SZ}" if tenant.suspended_at is not None else ""
        raise TenantSuspended(
            f"This tenant's access is {tenant.status}{since}. Its subscribers keep service; to restore access, "
            "contact platform support through your account manager or the operators' support desk."
        )
    return user, tenant


def _count_failure(session: Session, user: StaffUser, now: dt.datetime) -> None:
    user.failed_logins += 1
    if user.failed_logins >= MAX_FAILED_LOGINS:
        user.failed_logins = 0
        user.locked_until = now + LOCKOUT
        record_event(
            session,
            "staff.login_locked",
            user.id,
            {"locked_until": user.locked_until.isoformat()},
            tenant_id=user.tenant_id,
        )
    session.flush()


def open_session(
    session: Session,
    user: StaffUser,
    *,
    ttl: dt.timedelta = DEFAULT_SESSION_TTL,
    ip: str | None = None,
    user_agent: str | None = None,
) -> IssuedSession:
    """Open a console session for a user whose credentials were checked."""
    token, token_hash = new_token()
    csrf_token, csrf_hash = new_token()
    now = utcnow()
    row = StaffSession(
        id=new_id("ses"),
        tenant_id=user.tenant_id,
        staff_user_id=user.id,
        token_hash=token_hash,
        csrf_token_hash=csrf_hash,
        created_at=now,
        expires_at=now + ttl,
        last_seen_at=now,
        ip=(ip or None) and ip[:128],
        user_agent=(user_agent or None) and user_agent[:300],
    )
    user.last_login_at = now
    session.add(row)
    session.flush()
    return IssuedSession(row, token, csrf_token)


@dataclass(frozen=True)
class SessionStanding:
    """What a session cookie stands for right now, from one query."""

    session_id: str
    expires_at: dt.datetime
    revoked: bool
    last_seen_at: dt.datetime
    csrf_token_hash: str
    staff_user_id: str
    role: str
    user_status: str
    tenant_id: str
    tenant_status: str
    suspended_at: dt.datetime | None

    def csrf_matches(self, csrf_token: str | None) -> bool:
        return bool(csrf_token) and hmac.compare_digest(digest(csrf_token or ""), self.csrf_token_hash)


def session_standing(session: Session, token: str) -> SessionStanding | None:
    """The session of a cookie's token with its user and tenant, in one query (platform-scoped); None if unknown."""
    row = session.execute(
        select(
            StaffSession.id,
            StaffSession.expires_at,
            StaffSession.revoked_at,
            StaffSession.last_seen_at,
            StaffSession.csrf_token_hash,
            StaffUser.id.label("user_id"),
            StaffUser.role,
            StaffUser.status.label("user_status"),
            Tenant.id.label("tenant_id"),
            Tenant.status.label("tenant_status"),
            Tenant.suspended_at,
        )
        .join(StaffUser, StaffUser.id == StaffSession.staff_user_id)
        .join(Tenant, Tenant.id == StaffSession.tenant_id)
        .where(StaffSession.token_hash == digest(token))
    ).first()
    if row is None:
        return None
    return SessionStanding(
        session_id=row.id,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        last_seen_at=row.last_seen_at,
        csrf_token_hash=row.csrf_token_hash,
        staff_user_id=row.user_id,
        role=row.role,
        user_status=row.user_status,
        tenant_id=row.tenant_id,
        tenant_status=row.tenant_status,
        suspended_at=row.suspended_at,
    )


def touch_session(session: Session, session_id: str, now: dt.datetime) -> None:
    """Note the session was used (callers do it at most once a minute)."""
    session.execute(update(StaffSession).where(StaffSession.id == session_id).values(last_seen_at=now))


def end_session(session: Session, session_id: str) -> None:
    """Log out: the session's cookie is refused from now on."""
    row = session.get(StaffSession, session_id, with_for_update=True)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()


def get_session(session: Session, session_id: str) -> StaffSession | None:
    return session.get(StaffSession, session_id)


# Two-factor login (TOTP, RFC 6238) ----------------------------------------------------------------------


@dataclass(frozen=True)
class TotpSetup:
    secret: str
    uri: str


def begin_totp(session: Session, user_id: str, *, box: SecretBox, issuer: str) -> TotpSetup:
    """A new TOTP secret for the user, kept sealed until a code from the authenticator confirms it."""
    user = get_staff_user(session, user_id, lock=True)
    if user.totp_enabled_at is not None:
        raise TotpAlreadyEnabled("Two-factor login is already on; turn it off first to set up another device.")
    secret = pyotp.random_base32()
    user.totp_secret_encrypted = box.encrypt(secret.encode(), user.id.encode())
    user.totp_last_step = None
    session.flush()
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS).provisioning_uri(name=user.email, issuer_name=issuer)
    return TotpSetup(secret, uri)


def confirm_totp(session: Session, user_id: str, code: str, *, box: SecretBox) -> StaffUser:
    """Turn two-factor login on with a first code from the authenticator."""
    user = get_staff_user(session, user_id, lock=True)
    if user.totp_enabled_at is not None:
        raise TotpAlreadyEnabled("Two-factor login is already on.")
    if user.totp_secret_encrypted is None:
        raise TotpNotStarted("Start the setup first: POST /v1/console/me/totp, then scan its QR code.")
    now = utcnow()
    if _totp_step(_totp_secret(user, box), code, now, user.totp_last_step) is None:
        raise TotpCodeIncorrect(
            "The code does not match: check the device's clock and send the code it shows now.",
            errors={"code": ["Does not match."]},
        )
    # The confirming code proves the device; it is not spent, so the next login may use the same one.
    user.totp_enabled_at = now
    session.flush()
    record_event(session, "staff.totp_enabled", user.id, {"email": user.email}, tenant_id=user.tenant_id)
    return user


def disable_totp(session: Session, user_id: str, code: str, *, box: SecretBox) -> StaffUser:
    """Turn two-factor login off, proven by a current code."""
    user = get_staff_user(session, user_id, lock=True)
    if user.totp_enabled_at is None:
        raise TotpNotEnabled("Two-factor login is not on for this account.")
    step = _totp_step(_totp_secret(user, box), code, utcnow(), user.totp_last_step)
    if step is None:
        raise TotpCodeIncorrect(
            "The code does not match the one your authenticator shows now.", errors={"code": ["Does not match."]}
        )
    user.totp_enabled_at = None
    user.totp_secret_encrypted = None
    user.totp_last_step = None
    session.flush()
    record_event(session, "staff.totp_disabled", user.id, {"email": user.email}, tenant_id=user.tenant_id)
    return user


def _totp_secret(user: StaffUser, box: SecretBox) -> str:
    assert user.totp_secret_encrypted is not None
    return box.decrypt(user.totp_secret_encrypted, user.id.encode()).decode()


def _totp_step(secret: str, code: str, now: dt.datetime, last_step: int | None) -> int | None:
    """The time step the code belongs to (now, or one step either side for clock drift), if later than the last."""
    code = "".join(code.split())
    if len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS)
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if last_step is not None and step <= last_step:
            continue  # a code is good once
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def staff_view(user: StaffUser) -> dict[str, Any]:
    """A staff user as the API shows it: never a hash, a secret or a token."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "role": user.role,
        "status": user.status,
        "email_verified": user.email_verified_at is not None,
        "totp_enabled": user.totp_enabled_at is not None,
        "locked_until": user.locked_until if user.locked_until and user.locked_until > utcnow() else None,
        "last_login_at": user.last_login_at,
        "created_at": user.created_at,
    }


def invitation_view(invitation: StaffInvitation) -> dict[str, Any]:
    return {
        "id": invitation.id,
        "email": invitation.email,
        "role": invitation.role,
        "status": invitation.status_at(utcnow()),
        "invited_by": invitation.invited_by,
        "expires_at": invitation.expires_at,
        "accepted_at": invitation.accepted_at,
        "staff_user_id": invitation.staff_user_id,
        "revoked_at": invitation.revoked_at,
        "created_at": invitation.created_at,
    }
