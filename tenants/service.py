"""Tenants, their API clients and customers, the event log and per-tenant counters."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.tenants import identifiers, webhooks
from mvne.tenants.errors import (
    ApiClientIsPublic,
    ApiClientNotFound,
    ApiClientRevoked,
    CustomerEmailTaken,
    CustomerNotFound,
    InvalidIdentifier,
    InvalidScopes,
    InvalidSecretOverlap,
    TenantNotFound,
    TenantSlugTaken,
)
from mvne.tenants.models import ApiClient, Counter, Customer, Event, Tenant


@dataclass(frozen=True)
class IssuedCredentials:
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]


def create_tenant(
    session: Session, *, name: str, slug: str, country: str, currency: str, timezone: str, status: str = "active"
) -> Tenant:
    """Register a brand; its slug is unique across the platform. `status="onboarding"`: a sandbox until launch."""
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantSlugTaken(f"The slug {slug!r} is already used by another tenant.")
    tenant = Tenant(
        id=new_id("ten"), name=name, slug=slug, country=country, currency=currency, timezone=timezone, status=status
    )
    session.add(tenant)
    session.flush()
    return tenant


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    return get_or_raise(session, Tenant, tenant_id, TenantNotFound, "tenant")


def get_tenant_by_slug(session: Session, slug: str) -> Tenant | None:
    return session.scalar(select(Tenant).where(Tenant.slug == slug))


def issue_api_client(
    session: Session,
    *,
    tenant_id: str | None,
    name: str,
    scopes: list[str],
    allowed: tuple[str, ...],
    secret: str | None = None,
    client_id: str | None = None,
) -> IssuedCredentials:
    """Create client credentials; the secret is shown once and only its argon2id hash is kept."""
    unknown = sorted(set(scopes) - set(allowed))
    if unknown:
        raise InvalidScopes(
            f"Unknown or forbidden scopes: {', '.join(unknown)}.",
            errors={"scopes": [f"not allowed: {s}" for s in unknown]},
        )
    secret = secret or secrets.token_urlsafe(32)
    client = ApiClient(
        id=client_id or new_id("cli"),
        tenant_id=tenant_id,
        name=name,
        secret_hash=ApiClient.hash_secret(secret),
        scopes=" ".join(sorted(set(scopes))),
    )
    session.add(client)
    session.flush()
    if tenant_id is not None:
        data = {"name": name, "scopes": client.scopes.split()}
        record_event(session, "api_client.created", client.id, data, tenant_id=tenant_id)
    return IssuedCredentials(client.id, secret, tuple(sorted(set(scopes))))


# How long the secret before a rotation keeps working, unless the rotation says otherwise.
DEFAULT_SECRET_OVERLAP = dt.timedelta(hours=24)
MAX_SECRET_OVERLAP = dt.timedelta(days=7)


@dataclass(frozen=True)
class RotatedSecret:
    client: ApiClient
    client_secret: str


def get_api_client(session: Session, client_id: str, *, lock: bool = False) -> ApiClient:
    """Any client, a tenant's or an operator's (for platform operators)."""
    client = session.get(ApiClient, client_id, with_for_update=lock)
    if client is None:
        raise ApiClientNotFound(f"No API client {client_id}.")
    return client


def get_tenant_api_client(session: Session, tenant_id: str, client_id: str, *, lock: bool = False) -> ApiClient:
    """One of the tenant's clients; another tenant's (or an operator's) is not found, like a missing one."""
    client = session.get(ApiClient, client_id, with_for_update=lock)
    if client is None or client.tenant_id != tenant_id:
        raise ApiClientNotFound(f"No API client {client_id}.")
    return client


def rotate_api_client_secret(
    session: Session, client: ApiClient, *, overlap: dt.timedelta = DEFAULT_SECRET_OVERLAP
) -> RotatedSecret:
    """Give a client a new secret, shown once; the current one keeps working for `overlap` (0 to 7 days).

    Only one earlier secret is kept: rotating again within an overlap ends the older secret at once.
    Tokens already issued stay valid until they expire; revocation is what ends them.
    """
    if client.revoked_at is not None:
        raise ApiClientRevoked(f"API client {client.id} is revoked; its secret cannot be rotated.")
    if client.is_public:
        raise ApiClientIsPublic(f"API client {client.id} is an app (a public client): it has no secret to rotate.")
    if not dt.timedelta(0) <= overlap <= MAX_SECRET_OVERLAP:
        raise InvalidSecretOverlap(
            f"The overlap must be 0 to {int(MAX_SECRET_OVERLAP.total_seconds())} seconds.",
            errors={"overlap_seconds": [f"Must be between 0 and {int(MAX_SECRET_OVERLAP.total_seconds())}."]},
        )
    secret = secrets.token_urlsafe(32)
    if overlap:
        client.previous_secret_hash = client.secret_hash
        client.previous_secret_expires_at = utcnow() + overlap
    else:
        client.previous_secret_hash = None
        client.previous_secret_expires_at = None
    client.secret_hash = ApiClient.hash_secret(secret)
    session.flush()
    if client.tenant_id is not None:
        expires = client.previous_secret_expires_at
        record_event(
            session,
            "api_client.secret_rotated",
            client.id,
            {"previous_secret_expires_at": expires.isoformat() if expires else None},
            tenant_id=client.tenant_id,
        )
    return RotatedSecret(client, secret)


def revoke_api_client(session: Session, client: ApiClient, *, by: str) -> ApiClient:
    """Revoke a client for good: no new tokens, and its live tokens are refused from the next request.

    `by` is who did it (`tenant` or `operator`), for the event. Revoking a revoked client changes nothing.
    """
    if client.revoked_at is not None:
        return client
    client.revoked_at = utcnow()
    client.previous_secret_hash = None
    client.previous_secret_expires_at = None
    session.flush()
    if client.tenant_id is not None:
        record_event(
            session,
            "api_client.revoked",
            client.id,
            {"revoked_at": client.revoked_at.isoformat(), "by": by},
            tenant_id=client.tenant_id,
        )
    return client


def record_token_issued(session: Session, client_id: str, *, rehash: tuple[str, str, str] | None = None) -> None:
    """The client obtained a token: note when, and store the argon2id hash of a legacy secret it used.

    `rehash` is (column, hash it matched, new hash); the new one is stored only if the old is still there.
    """
    session.execute(update(ApiClient).where(ApiClient.id == client_id).values(last_used_at=utcnow()))
    if rehash is not None:
        column, old, new = rehash
        if column not in ("secret_hash", "previous_secret_hash"):
            raise ValueError(f"not a secret column: {column}")
        stored = getattr(ApiClient, column)
        session.execute(update(ApiClient).where(ApiClient.id == client_id, stored == old).values({column: new}))


def create_customer(
    session: Session, *, name: str, email: str, address: dict[str, Any], vat_id: str | None = None
) -> Customer:
    """A subscriber account of the session's tenant; one account per email. A business gives its VAT id."""
    email = email.strip().lower()
    if vat_id is not None:
        try:
            vat_id = identifiers.check_vat_id(vat_id, str(address.get("country", "")))
        except identifiers.IdentifierError as error:
            raise InvalidIdentifier(str(error), errors={"vat_id": [str(error)]}) from None
    if session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise CustomerEmailTaken(f"A customer with email {email} already exists.")
    customer = Customer(id=new_id("cus"), name=name, email=email, address=address, vat_id=vat_id)
    session.add(customer)
    session.flush()
    record_event(session, "customer.created", customer.id, {"email": email})
    return customer


def get_customer(session: Session, customer_id: str) -> Customer:
    return get_or_raise(session, Customer, customer_id, CustomerNotFound, "customer")


def record_event(
    session: Session, type_: str, object_id: str, data: dict[str, Any], *, tenant_id: str | None = None
) -> Event:
    """Append to the tenant's event log, in the transaction of the change it reports."""
    owner = tenant_id or session.info.get("tenant_id")
    if owner is None:
        raise ValueError(f"event {type_} needs a tenant")
    event = Event(id=new_id("evt"), tenant_id=owner, type=type_, object_id=object_id, data=data, created_at=utcnow())
    session.add(event)
    webhooks.fan_out(session, owner, [event])
    return event


def record_events(session: Session, type_: str, items: list[tuple[str, dict[str, Any]]], *, tenant_id: str) -> None:
    """Append several events of one type (object id, data) to the tenant's log: one lookup of its endpoints."""
    if not items:
        return
    now = utcnow()
    events = [
        Event(id=new_id("evt"), tenant_id=tenant_id, type=type_, object_id=object_id, data=data, created_at=now)
        for object_id, data in items
    ]
    session.add_all(events)
    webhooks.fan_out(session, tenant_id, events)


def next_counter(session: Session, tenant_id: str, name: str) -> int:
    """The next value of a gapless per-tenant sequence; the row lock serialises concurrent callers."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(Counter)
        .values(id=new_id("ctr"), tenant_id=tenant_id, name=name, value=0)
        .on_conflict_do_nothing(index_elements=["tenant_id", "name"])
    )
    value = session.scalar(
        update(Counter)
        .where(Counter.tenant_id == tenant_id, Counter.name == name)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    )
    assert value is not None
    return int(value)
