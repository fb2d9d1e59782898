"""Subscriber accounts: signing a tenant's customers in to its apps, and the OAuth grants they give apps.

A customer signs in with the e-mail the tenant knows them by: with a one-time code e-mailed to them,
or with a password once they set one. The account is opened the first time they ask for a code.
Five wrong passwords or codes in a row lock the account for a quarter of an hour.

What the sign-in gives an app is kept here too: authorization codes (single use, 60 seconds) and rotating
refresh tokens (30 days; a family per sign-in). Codes and tokens are random and long, so a SHA-256 is
enough to store them; one-time codes are six digits, so they get argon2id like passwords.
Services take a session scoped to the subscriber's tenant.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.infra.mail import Mail, send_mail
from mvne.tenants import credentials
from mvne.tenants.branding import brand_of
from mvne.tenants.errors import AccountLocked, SubscriberAccountNotFound, WrongPassword
from mvne.tenants.models import (
    AuthorizationCode,
    Customer,
    OneTimeCode,
    RefreshToken,
    SubscriberAccount,
    Tenant,
)
from mvne.tenants.service import record_event
from mvne.tenants.settings import find_settings

ACTIVE = "active"
DISABLED = "disabled"
ONE_TIME_CODE_TTL = dt.timedelta(minutes=10)
ONE_TIME_CODE_KIND = "subscriber_one_time_code"
AUTHORIZATION_CODE_TTL = dt.timedelta(seconds=60)
REFRESH_TOKEN_TTL = dt.timedelta(days=30)
MAX_FAILED_SIGN_INS = 5
# Codes e-mailed to one account within a code's lifetime: enough for slow mail, too few to flood a mailbox.
MAX_CODES_PER_WINDOW = 5
LOCKOUT = dt.timedelta(minutes=15)


@functools.cache
def _decoy_hash() -> str:
    """Verified when the e-mail is unknown or has no password, so a refusal takes as long either way."""
    return credentials.hash_secret(secrets.token_urlsafe(16))


def digest(value: str) -> str:
    """How codes and tokens are stored: their SHA-256, in hex."""
    return hashlib.sha256(value.encode()).hexdigest()


def normalized_email(email: str) -> str:
    return email.strip().lower()


def find_account(session: Session, email: str) -> SubscriberAccount | None:
    """The account signing in with `email`, if any (none is opened here)."""
    return session.scalar(select(SubscriberAccount).where(SubscriberAccount.email == normalized_email(email)))


def account_for_email(session: Session, email: str) -> SubscriberAccount | None:
    """The account of the customer with this e-mail, opened on first use; None when no customer has it."""
    email = normalized_email(email)
    account = find_account(session, email)
    if account is not None:
        return account
    customer = session.scalar(select(Customer).where(Customer.email == email))
    if customer is None:
        return None
    existing = session.scalar(select(SubscriberAccount).where(SubscriberAccount.customer_id == customer.id))
    if existing is not None:
        return existing
    account = SubscriberAccount(id=new_id("sac"), customer_id=customer.id, email=email, status=ACTIVE, failed_logins=0)
    try:
        with session.begin_nested():
            session.add(account)
    except IntegrityError:  # opened by a concurrent request
        return find_account(session, email)
    record_event(session, "subscriber_account.created", account.id, {"customer": customer.id, "email": email})
    return account


def get_account(session: Session, account_id: str) -> SubscriberAccount | None:
    return session.get(SubscriberAccount, account_id)


def is_locked(account: SubscriberAccount, now: dt.datetime | None = None) -> bool:
    return account.locked_until is not None and account.locked_until > (now or utcnow())


@dataclass(frozen=True)
class SignIn:
    """The outcome of one attempt: the account when it succeeded, else `refused` (`wrong`, `locked`)."""

    account: SubscriberAccount | None
    refused: str | None = None
    locked_until: dt.datetime | None = None


def _failed(session: Session, account: SubscriberAccount | None) -> SignIn:
    """Count a wrong password or code; the fifth in a row locks the account."""
    if account is None:
        return SignIn(None, "wrong")
    account.failed_logins = (account.failed_logins or 0) + 1
    if account.failed_logins >= MAX_FAILED_SIGN_INS:
        account.failed_logins = 0
        account.locked_until = utcnow() + LOCKOUT
        session.flush()
        record_event(
            session, "subscriber_account.locked", account.id, {"locked_until": account.locked_until.isoformat()}
        )
        return SignIn(None, "locked", account.locked_until)
    session.flush()
    return SignIn(None, "wrong")


def _succeeded(session: Session, account: SubscriberAccount) -> SignIn:
    account.failed_logins = 0
    account.locked_until = None
    account.last_login_at = utcnow()
    session.flush()
    return SignIn(account)


def _locked_account(session: Session, email: str) -> SubscriberAccount | None:
    account = find_account(session, email)
    if account is None:
        return None
    return session.get(SubscriberAccount, account.id, with_for_update=True, populate_existing=True)


def sign_in_with_password(session: Session, email: str, password: str) -> SignIn:
    """Check a password; the same refusal whether the e-mail is unknown, has no password, or the password is wrong."""
    account = _locked_account(session, email)
    if account is not None and is_locked(account):
        return SignIn(None, "locked", account.locked_until)
    stored = account.password_hash if account is not None and account.status == ACTIVE else None
    matched = credentials.verify_secret(stored or _decoy_hash(), password[: credentials.PASSWORD_MAX_LENGTH])
    if account is None or stored is None or not matched:
        return _failed(session, account)
    return _succeeded(session, account)


def send_sign_in_code(session: Session, tenant: Tenant, email: str) -> bool:
    """E-mail a six-digit code to the customer with this e-mail (opening their account); False when none is sent
    (no such customer, a closed or locked account, or five codes sent already within a code's lifetime).

    Codes sent before stay valid until they expire: mail is slow, and the subscriber may type an older one.
    """
    account = account_for_email(session, email)
    if account is None or account.status != ACTIVE or is_locked(account):
        return False
    recent = session.scalar(
        select(func.count())
        .select_from(OneTimeCode)
        .where(OneTimeCode.account_id == account.id, OneTimeCode.created_at > utcnow() - ONE_TIME_CODE_TTL)
    )
    if (recent or 0) >= MAX_CODES_PER_WINDOW:
        return False
    code = f"{secrets.randbelow(10**6):06d}"
    session.add(
        OneTimeCode(
            id=new_id("otc"),
            account_id=account.id,
            code_hash=credentials.hash_secret(code),
            expires_at=utcnow() + ONE_TIME_CODE_TTL,
            attempts=0,
        )
    )
    session.flush()
    brand = brand_of(session, tenant)
    words = CODE_MAIL[_mail_language(session)]
    values = {"brand": brand.display_name, "code": code, "minutes": int(ONE_TIME_CODE_TTL.total_seconds() // 60)}
    send_mail(
        session,
        Mail(
            to=account.email,
            subject=words["subject"].format(**values),
            text=words["text"].format(**values),
            kind=ONE_TIME_CODE_KIND,
            sender_name=brand.display_name,
        ),
        tenant_id=tenant.id,
    )
    return True


# The sign-in code's e-mail, in the tenant's first language when we have its words (else English).
CODE_MAIL = {
    "en": {
        "subject": "Your {brand} sign-in code: {code}",
        "text": "Your sign-in code for {brand} is {code}.\n\nIt works once, for {minutes} minutes. If you did not "
        "ask for it, ignore this message: nobody can sign in without the code.\n",
    },
    "fr": {
        "subject": "Votre code de connexion {brand} : {code}",
        "text": "Votre code de connexion à {brand} est {code}.\n\nIl ne sert qu'une fois, pendant {minutes} minutes. "
        "Si vous ne l'avez pas demandé, ignorez ce message : personne ne peut se connecter sans ce code.\n",
    },
}


def _mail_language(session: Session) -> str:
    chosen = find_settings(session)
    first = (chosen.languages or [""])[0] if chosen is not None and chosen.languages else ""
    lang = first.split("-")[0].lower()
    return lang if lang in CODE_MAIL else "en"


def sign_in_with_code(session: Session, email: str, code: str) -> SignIn:
    """Check a one-time code against the account's unexpired, unused codes; a match is used up."""
    account = _locked_account(session, email)
    if account is None or account.status != ACTIVE:
        return SignIn(None, "wrong")
    if is_locked(account):
        return SignIn(None, "locked", account.locked_until)
    now = utcnow()
    candidates = session.scalars(
        select(OneTimeCode)
        .where(
            OneTimeCode.account_id == account.id,
            OneTimeCode.used_at.is_(None),
            OneTimeCode.expires_at > now,
            OneTimeCode.attempts < MAX_FAILED_SIGN_INS,
        )
        .order_by(OneTimeCode.id.desc())
        .limit(3)
    ).all()
    typed = "".join(code.split())[:12]
    for candidate in candidates:
        if credentials.verify_secret(candidate.code_hash, typed):
            candidate.used_at = now
            return _succeeded(session, account)
    for candidate in candidates:
        candidate.attempts += 1
    return _failed(session, account)


def check_current_password(session: Session, account_id: str, password: str | None) -> None:
    """Before a password change: the current one, when the account has one (wrong ones count toward the lock).

    Raises 409 `account_locked` or 422 `wrong_password`; a failure is flushed, for the caller to commit.
    """
    account = session.get(SubscriberAccount, account_id, with_for_update=True)
    if account is None or account.password_hash is None:
        return
    if is_locked(account):
        raise AccountLocked(
            f"Too many wrong passwords or codes; try again after {account.locked_until:%H:%M} UTC.",
        )
    if not password:
        raise WrongPassword(
            "Give your current password to change it.",
            errors={"current_password": ["Required: this account has a password."]},
        )
    if not credentials.verify_secret(account.password_hash, password[: credentials.PASSWORD_MAX_LENGTH]):
        _failed(session, account)
        raise WrongPassword(
            "The current password is wrong.", errors={"current_password": ["Not this account's password."]}
        )


def set_password(session: Session, account: SubscriberAccount, new_password: str) -> SubscriberAccount:
    """Set or replace the account's password (checked for strength against the subscriber's name and e-mail)."""
    customer = session.get(Customer, account.customer_id)
    credentials.check_password(new_password, user_inputs=(account.email, customer.name if customer else ""))
    had_password = account.password_hash is not None
    account.password_hash = credentials.hash_secret(new_password)
    account.failed_logins = 0
    session.flush()
    kind = "subscriber_account.password_changed" if had_password else "subscriber_account.password_set"
    record_event(session, kind, account.id, {})
    return account


# Authorization codes and refresh tokens -----------------------------------------------------------------


def save_authorization_code(
    session: Session,
    *,
    code: str,
    client_id: str,
    account_id: str,
    redirect_uri: str,
    scope: str,
    code_challenge: str,
    code_challenge_method: str,
) -> AuthorizationCode:
    row = AuthorizationCode(
        id=new_id("azc"),
        code_hash=digest(code),
        client_id=client_id,
        account_id=account_id,
        redirect_uri=redirect_uri,
        scope=scope,
        code_challenge=code_challenge,
        code_challenge_method=code_challenge_method,
        expires_at=utcnow() + AUTHORIZATION_CODE_TTL,
    )
    session.add(row)
    session.flush()
    return row


def find_authorization_code(session: Session, code: str) -> AuthorizationCode | None:
    return session.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == digest(code)))


def redeem_authorization_code(session: Session, code_id: str) -> bool:
    """Mark a code used; False when it was used already (by a concurrent request too)."""
    result = session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.id == code_id, AuthorizationCode.used_at.is_(None))
        .values(used_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def save_refresh_token(
    session: Session, *, token: str, client_id: str, account_id: str, scope: str, family_id: str
) -> RefreshToken:
    now = utcnow()
    row = RefreshToken(
        id=new_id("rft"),
        token_hash=digest(token),
        client_id=client_id,
        account_id=account_id,
        scope=scope,
        family_id=family_id,
        created_at=now,
        expires_at=now + REFRESH_TOKEN_TTL,
    )
    session.add(row)
    session.flush()
    return row


def find_refresh_token(session: Session, token: str) -> RefreshToken | None:
    return session.scalar(select(RefreshToken).where(RefreshToken.token_hash == digest(token)))


def retire_refresh_token(session: Session, token_id: str) -> bool:
    """Mark a refresh token used (rotated); False when it was used or revoked already."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token_id, RefreshToken.rotated_at.is_(None), RefreshToken.revoked_at.is_(None))
        .values(rotated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def revoke_family(session: Session, family_id: str) -> int:
    """Revoke every refresh token of a sign-in; its access tokens are refused from the next request."""
    result = session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def set_account_status(session: Session, customer_id: str, status: str) -> SubscriberAccount:
    """Disable a customer's sign-in to the tenant's apps (every sign-in ends: its tokens are refused at once),
    or enable it again. Setting the status it has already changes nothing."""
    account = session.scalar(
        select(SubscriberAccount).where(SubscriberAccount.customer_id == customer_id).with_for_update()
    )
    if account is None:
        raise SubscriberAccountNotFound(
            f"Customer {customer_id} has no subscriber account: one opens when they first sign in to an app."
        )
    if account.status == status:
        return account
    account.status = status
    if status == DISABLED:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.account_id == account.id, RefreshToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
    session.flush()
    change = "disabled" if status == DISABLED else "enabled"
    record_event(session, f"subscriber_account.{change}", account.id, {"customer": customer_id})
    return account
