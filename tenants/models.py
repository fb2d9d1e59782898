"""Tenants (the MVNO brands), their API clients, their customers, and their event log."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mvne.infra.db import Base, JSONValue, TenantOwned, utcnow
from mvne.infra.web.audit import NOT_AUDITED
from mvne.tenants import credentials


class Tenant(Base):
    """A brand running its MVNO on the platform. A platform table: operators manage it."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    # onboarding (a sandbox: simulated networks, test numbers; made live by POST /v1/tenant/launch) -> active;
    # active -> suspended (its API refuses its clients; its subscribers keep service) -> active again,
    # or -> offboarding (its rows are exported, then erased) -> offboarded (this row stays as a tombstone).
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    suspended_at: Mapped[dt.datetime | None] = mapped_column()
    suspension_reason: Mapped[str | None] = mapped_column(String(500))
    offboarded_at: Mapped[dt.datetime | None] = mapped_column()
    # Where the offboarding export lies in storage (its manifest), once the export is complete.
    export_location: Mapped[str | None] = mapped_column(String(300))
    # When the founder launched it (onboarding -> active); None for tenants onboarded live by an operator.
    launched_at: Mapped[dt.datetime | None] = mapped_column()


# The kinds of OAuth client. A confidential client (a tenant's back end, an operator) holds a secret and
# uses client credentials; a public client (one of the tenant's apps, on a phone or in a browser) holds no
# secret and signs its subscribers in with the authorization code grant and PKCE (RFC 6749 2.1, RFC 8252).
CONFIDENTIAL = "confidential"
PUBLIC = "public"
# What a public client may do, whatever else it asks for.
PUBLIC_GRANT_TYPES = ("authorization_code", "refresh_token")
PUBLIC_RESPONSE_TYPES = ("code",)


class ApiClient(Base):
    """An OAuth2 client: a tenant's back end or app, or a platform operator when tenant_id is null.

    A platform table, because the token endpoint must find a client before it knows the tenant;
    tenant-facing reads filter on tenant_id explicitly. A public client (`kind="public"`, an app) has
    no usable secret: its `secret_hash` is a hash of nothing anyone knows, and no secret is ever checked.
    """

    __tablename__ = "api_clients"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    secret_hash: Mapped[str] = mapped_column(String(255))
    scopes: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    # After a rotation, the secret before it keeps working until previous_secret_expires_at.
    previous_secret_hash: Mapped[str | None] = mapped_column(String(255))
    previous_secret_expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_used_at: Mapped[dt.datetime | None] = mapped_column()
    kind: Mapped[str] = mapped_column(String(20), default=CONFIDENTIAL)
    # Public clients only: where subscribers are sent back with a code, compared exactly (RFC 9700 2.1).
    redirect_uris: Mapped[list[str]] = mapped_column(JSONValue, default=list)

    @staticmethod
    def hash_secret(secret: str) -> str:
        return credentials.hash_secret(secret)

    @property
    def status(self) -> str:
        return "revoked" if self.revoked_at is not None else "active"

    @property
    def is_public(self) -> bool:
        return self.kind == PUBLIC

    def previous_secret_valid_until(self, now: dt.datetime | None = None) -> dt.datetime | None:
        """When the secret before the last rotation stops working; None when it no longer does."""
        expires = self.previous_secret_expires_at
        if self.previous_secret_hash is None or expires is None or expires <= (now or utcnow()):
            return None
        return expires

    # Authlib's ClientMixin interface -------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """The scopes asked for that the client holds (all of them when none is asked for).

        A public client asking only for scopes it does not hold gets None (`invalid_scope`), not a token
        that can do nothing.
        """
        allowed = set(self.scopes.split())
        if not scope:
            return " ".join(sorted(allowed))
        granted = " ".join(s for s in scope.split() if s in allowed)
        if self.is_public and not granted:
            return None
        return granted

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Only a public client's registered URIs, compared exactly; none for a revoked client."""
        return self.is_public and self.revoked_at is None and redirect_uri in (self.redirect_uris or [])

    def check_client_secret(self, client_secret: str) -> bool:
        """The current secret, or the previous one until its overlap ends; never for a revoked client.

        A match on a hash made before argon2id (or with older parameters) leaves the new hash in
        `pending_rehash`, for the token endpoint to store once the token is issued.
        """
        self.pending_rehash: tuple[str, str, str] | None = None
        if self.revoked_at is not None or self.is_public:
            return False
        candidates = [("secret_hash", self.secret_hash)]
        if self.previous_secret_valid_until() is not None and self.previous_secret_hash is not None:
            candidates.append(("previous_secret_hash", self.previous_secret_hash))
        for column, stored in candidates:
            if credentials.verify_secret(stored, client_secret):
                if credentials.needs_rehash(stored):
                    self.pending_rehash = (column, stored, credentials.hash_secret(client_secret))
                return True
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """A public client identifies itself by its id alone (`none`); a confidential one proves its secret."""
        if self.is_public:
            return method == "none" and self.revoked_at is None
        return method in {"client_secret_basic", "client_secret_post"}

    def check_response_type(self, response_type: str) -> bool:
        return self.is_public and response_type in PUBLIC_RESPONSE_TYPES

    def check_grant_type(self, grant_type: str) -> bool:
        if self.is_public:
            return grant_type in PUBLIC_GRANT_TYPES
        return grant_type == "client_credentials"


class Customer(TenantOwned, Base):
    """A subscriber account of a tenant: who pays, where invoices go."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(254))
    address: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    vat_id: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Event(TenantOwned, Base):
    """The tenant's event log: one row per state change of its objects (`subscription.activated`)."""

    __tablename__ = "events"
    __table_args__ = {"info": {NOT_AUDITED: True}}  # a log of its own; the audit log records API changes

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    type: Mapped[str] = mapped_column(String(80), index=True)
    object_id: Mapped[str] = mapped_column(String(40), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Counter(TenantOwned, Base):
    """Per-tenant sequences (invoice numbers) that must have no gaps and no duplicates."""

    __tablename__ = "counters"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    value: Mapped[int] = mapped_column(Integer, default=0)


class WebhookEndpoint(TenantOwned, Base):
    """Where a tenant wants its events POSTed; the signing secret is encrypted at rest."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(JSONValue)
    secret_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20), default="enabled")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class WebhookDelivery(TenantOwned, Base):
    """One event for one endpoint: attempted until it succeeds or runs out of attempts; replayable."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("endpoint_id", "event_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    event_type: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column()
    delivered_at: Mapped[dt.datetime | None] = mapped_column()


class TenantLegalProfile(TenantOwned, Base):
    """Who the tenant is in law, as its invoices must say: name, form, seat, registration, VAT, bank details.

    One per tenant (unique `tenant_id`); identifiers are stored checked and compact (FR40303265045).
    """

    __tablename__ = "tenant_legal_profiles"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    legal_name: Mapped[str] = mapped_column(String(200))
    legal_form: Mapped[str | None] = mapped_column(String(50))
    address: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    registration_number: Mapped[str | None] = mapped_column(String(50))
    rcs_city: Mapped[str | None] = mapped_column(String(100))
    share_capital: Mapped[Decimal | None] = mapped_column()
    vat_id: Mapped[str | None] = mapped_column(String(20))
    iban: Mapped[str | None] = mapped_column(String(34))
    bic: Mapped[str | None] = mapped_column(String(11))
    invoice_locale: Mapped[str] = mapped_column(String(20))
    support_email: Mapped[str | None] = mapped_column(String(254))
    support_phone: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TenantBrand(TenantOwned, Base):
    """How the brand shows itself: in its apps, its subscribers' login page, its e-mails.

    One per tenant (unique `tenant_id`). The logo is an object in storage (`logo_key`), never a URL
    we would fetch. Colours are `#rrggbb`.
    """

    __tablename__ = "tenant_brands"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(100))
    primary_color: Mapped[str] = mapped_column(String(7), default="#1f4fd1")
    accent_color: Mapped[str] = mapped_column(String(7), default="#f5a623")
    logo_key: Mapped[str | None] = mapped_column(String(300))
    logo_content_type: Mapped[str | None] = mapped_column(String(40))
    support_email: Mapped[str | None] = mapped_column(String(254))
    support_phone: Mapped[str | None] = mapped_column(String(20))
    support_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StaffUser(TenantOwned, Base):
    """A person who runs the tenant in its console: a role, a password, optionally a second factor (TOTP).

    The e-mail is stored lower-cased and unique per tenant; the same person may work for several tenants.
    `failed_logins` counts consecutive wrong passwords or codes; five lock the account until `locked_until`.
    The TOTP secret is sealed (`SecretBox`, bound to the user's id); `totp_enabled_at` is set once a first
    code confirmed it, and `totp_last_step` keeps the time step of the last code accepted, so none is used twice.
    """

    __tablename__ = "staff_users"
    __table_args__ = (UniqueConstraint("tenant_id", "email"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    password_hash: Mapped[str] = mapped_column(String(255))
    email_verified_at: Mapped[dt.datetime | None] = mapped_column()
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | disabled
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    totp_secret_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[dt.datetime | None] = mapped_column()
    totp_last_step: Mapped[int | None] = mapped_column(Integer)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StaffInvitation(TenantOwned, Base):
    """An invitation to join the tenant's staff with a role, by a link e-mailed to the person (7 days)."""

    __tablename__ = "staff_invitations"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(20))
    # sha256 of the link's 256-bit random token: the token itself is only in the e-mail.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    invited_by: Mapped[str] = mapped_column(String(40))  # a staff user's id, or the API client's
    expires_at: Mapped[dt.datetime] = mapped_column()
    accepted_at: Mapped[dt.datetime | None] = mapped_column()
    staff_user_id: Mapped[str | None] = mapped_column(String(40))  # who joined with it
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    def status_at(self, now: dt.datetime) -> str:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "pending"


class EmailVerification(TenantOwned, Base):
    """A link proving a staff user owns its e-mail address (24 hours, used once)."""

    __tablename__ = "email_verifications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    staff_user_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class StaffSession(TenantOwned, Base):
    """A console session: the cookie's token and the CSRF token, both kept as sha256 digests only."""

    __tablename__ = "staff_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    staff_user_id: Mapped[str] = mapped_column(ForeignKey("staff_users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    last_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(128))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class TenantSettings(TenantOwned, Base):
    """What the founder chose for running the brand: market, host network and billing. One per tenant.

    Country, currency and timezone stay on the tenant row (the number block, prices and billing cycles
    hang on them); the rest is here. `tax_rate` is a percent (20 for 20%) that invoices use instead of
    the country's standard VAT rate when set; `payment_terms_days` is the one place payment terms live
    (the legal profile shows and sets the same value).
    """

    __tablename__ = "tenant_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # BCP 47 tags, the first being the default language of the brand's apps and messages.
    languages: Mapped[list[str] | None] = mapped_column(JSONValue)
    tax_rate: Mapped[Decimal | None] = mapped_column()
    host_network_agreement_id: Mapped[str | None] = mapped_column(ForeignKey("network_agreements.id"))
    # Invoice numbers start with it (`NIM-` gives NIM-2026-000001); INV- when not set.
    invoice_series: Mapped[str | None] = mapped_column(String(10))
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=14)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SubscriberAccount(TenantOwned, Base):
    """How a customer signs in to the tenant's apps: one per customer, found by the customer's e-mail.

    A password is optional (a one-time code by e-mail always works); `failed_logins` counts wrong
    passwords and codes in a row, and `locked_until` stops every attempt for a while after too many.
    """

    __tablename__ = "subscriber_accounts"
    __table_args__ = (UniqueConstraint("tenant_id", "customer_id"), UniqueConstraint("tenant_id", "email"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"), index=True)
    email: Mapped[str] = mapped_column(String(254))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | disabled
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column()


class OneTimeCode(TenantOwned, Base):
    """A six-digit sign-in code e-mailed to a subscriber: argon2id-hashed, short-lived, used once."""

    __tablename__ = "subscriber_one_time_codes"
    __table_args__ = {"info": {NOT_AUDITED: True}}  # sign-in bookkeeping, not a change made through the API

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("subscriber_accounts.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    used_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuthorizationCode(TenantOwned, Base):
    """An OAuth2 authorization code (RFC 6749 4.1) bound to its app, redirect URI and PKCE challenge.

    Only its SHA-256 is stored. Its id names the refresh-token family the code starts, so a code used
    twice can revoke every token issued from it.
    """

    __tablename__ = "subscriber_authorization_codes"
    __table_args__ = {"info": {NOT_AUDITED: True}}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("api_clients.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("subscriber_accounts.id"), index=True)
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    scope: Mapped[str] = mapped_column(String(1000))
    code_challenge: Mapped[str] = mapped_column(String(128))
    code_challenge_method: Mapped[str] = mapped_column(String(10))
    expires_at: Mapped[dt.datetime] = mapped_column()
    used_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RefreshToken(TenantOwned, Base):
    """A rotating refresh token (RFC 9700 4.14.2): each use gives a new one and retires this one.

    Tokens issued one from another share a `family_id` (the authorization code's id). A retired token
    used again means it was copied: the whole family is revoked. Only the SHA-256 is stored.
    """

    __tablename__ = "subscriber_refresh_tokens"
    __table_args__ = {"info": {NOT_AUDITED: True}}

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("api_clients.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("subscriber_accounts.id"), index=True)
    scope: Mapped[str] = mapped_column(String(1000))
    family_id: Mapped[str] = mapped_column(String(40), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    rotated_at: Mapped[dt.datetime | None] = mapped_column()
    revoked_at: Mapped[dt.datetime | None] = mapped_column()
