"""Tenants, their API clients and customers, the event log and per-tenant counters."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.infra.db import get_or_raise, utcnow
from mvne.infra.ids import new_id
from mvne.tenants import webhooks
from mvne.tenants.errors import (
    CustomerEmailTaken,
    CustomerNotFound,
    InvalidScopes,
    TenantNotFound,
    TenantSlugTaken,
)
from mvne.tenants.models import ApiClient, Counter, Customer, Event, Tenant


@dataclass(frozen=True)
class IssuedCredentials:
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]


def create_tenant(session: Session, *, name: str, slug: str, country: str, currency: str, timezone: str) -> Tenant:
    """Register a brand; its slug is unique across the platform."""
    if session.scalar(select(Tenant.id).where(Tenant.slug == slug)) is not None:
        raise TenantSlugTaken(f"The slug {slug!r} is already used by another tenant.")
    tenant = Tenant(id=new_id("ten"), name=name, slug=slug, country=country, currency=currency, timezone=timezone)
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
    """Create client credentials; the secret is shown once and only its digest is kept."""
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
    return IssuedCredentials(client.id, secret, tuple(sorted(set(scopes))))


def create_customer(session: Session, *, name: str, email: str, address: dict[str, Any]) -> Customer:
    """A subscriber account of the session's tenant; one account per email."""
    email = email.strip().lower()
    if session.scalar(select(Customer.id).where(Customer.email == email)) is not None:
        raise CustomerEmailTaken(f"A customer with email {email} already exists.")
    customer = Customer(id=new_id("cus"), name=name, email=email, address=address)
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
    webhooks.fan_out(session, owner, event)
    return event


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
