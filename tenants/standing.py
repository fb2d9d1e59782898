"""A tenant's standing with the platform: operators suspend it, resume it, or offboard it.

A suspended tenant's API refuses its clients (the web kit checks the status on every request), while
its subscribers keep service: lines stay active on the network, usage from the network is rated, and
jobs already queued for it run. Offboarding starts from a suspended tenant only: the request marks it
`offboarding` and queues the job that exports and erases its data (`mvne.tenants.offboarding`).
Services take a platform-scoped session: the tenants table is the platform's.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.jobs import enqueue
from mvne.tenants.errors import TenantAlreadySuspended, TenantNotFound, TenantNotSuspended, TenantOffboarded
from mvne.tenants.models import Event, Tenant
from mvne.tenants.service import get_tenant_by_slug, record_event

ACTIVE = "active"
ONBOARDING = "onboarding"
SUSPENDED = "suspended"
OFFBOARDING = "offboarding"
OFFBOARDED = "offboarded"

OFFBOARD_JOB = "tenants.offboard_tenant"


def _locked_tenant(session: Session, ref: str) -> Tenant:
    """The tenant by id or slug, its row locked until the transaction ends (state changes serialise)."""
    tenant = session.scalar(select(Tenant).where(Tenant.id == ref).with_for_update())
    if tenant is None:
        by_slug = get_tenant_by_slug(session, ref)
        if by_slug is not None:
            tenant = session.scalar(select(Tenant).where(Tenant.id == by_slug.id).with_for_update())
    if tenant is None:
        raise TenantNotFound(f"No tenant {ref}.")
    return tenant


def _refuse_if_leaving(tenant: Tenant) -> None:
    if tenant.status in (OFFBOARDING, OFFBOARDED):
        raise TenantOffboarded(f"Tenant {tenant.id} is {tenant.status}.")


def suspend_tenant(session: Session, ref: str, *, reason: str | None = None) -> Tenant:
    """Refuse the tenant's API clients from now on; its subscribers keep service."""
    tenant = _locked_tenant(session, ref)
    _refuse_if_leaving(tenant)
    if tenant.status == SUSPENDED:
        since = tenant.suspended_at.isoformat() if tenant.suspended_at else "an unknown time"
        raise TenantAlreadySuspended(f"Tenant {tenant.id} is already suspended (since {since}).")
    before = tenant.status
    tenant.status = SUSPENDED
    tenant.suspended_at = utcnow()
    tenant.suspension_reason = reason or None
    session.flush()
    record_event(
        session,
        "tenant.suspended",
        tenant.id,
        {"reason": tenant.suspension_reason, "from": before},
        tenant_id=tenant.id,
    )
    return tenant


def resume_tenant(session: Session, ref: str) -> Tenant:
    """Let the tenant's API clients in again."""
    tenant = _locked_tenant(session, ref)
    _refuse_if_leaving(tenant)
    if tenant.status != SUSPENDED:
        raise TenantNotSuspended(f"Tenant {tenant.id} is {tenant.status}, not suspended.")
    # Back to where it was: a sandbox suspended before its launch is still a sandbox.
    tenant.status = ONBOARDING if _status_before_suspension(session, tenant) == ONBOARDING else ACTIVE
    tenant.suspended_at = None
    tenant.suspension_reason = None
    session.flush()
    record_event(session, "tenant.resumed", tenant.id, {"to": tenant.status}, tenant_id=tenant.id)
    return tenant


def _status_before_suspension(session: Session, tenant: Tenant) -> str | None:
    """The status the tenant's last suspension left, as its `tenant.suspended` event recorded it."""
    data = session.scalar(
        select(Event.data)
        .where(Event.tenant_id == tenant.id, Event.type == "tenant.suspended", Event.object_id == tenant.id)
        .order_by(Event.id.desc())
        .limit(1)
        .execution_options(all_tenants=True)
    )
    return str(data.get("from")) if isinstance(data, dict) and data.get("from") else None


def request_offboarding(session: Session, ref: str) -> Tenant:
    """Mark a suspended tenant `offboarding` and queue the job that exports, then erases, its data."""
    tenant = _locked_tenant(session, ref)
    _refuse_if_leaving(tenant)
    if tenant.status != SUSPENDED:
        raise TenantNotSuspended(f"Tenant {tenant.id} is {tenant.status}: suspend it before offboarding it.")
    tenant.status = OFFBOARDING
    session.flush()
    enqueue(session, OFFBOARD_JOB, tenant_id=tenant.id, key=f"offboard-{tenant.id}")
    return tenant
