"""The request's runtime and database session, scoped to the authenticated caller."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from mvne.infra.runtime import Runtime
from mvne.infra.web import audit


def runtime() -> Runtime:
    rt: Runtime = current_app.extensions["mvne.runtime"]
    return rt


def db_session() -> Session:
    """The request's unit of work, scoped to the caller's tenant (or the platform for operators).

    It is committed after the view succeeds and rolled back on any error response.
    """
    session: Session | None = g.get("db_session")
    if session is None:
        from mvne.infra.web.auth import current_principal

        principal = current_principal()
        session = runtime().db.session(tenant_id=principal.tenant_id, platform=principal.is_operator)
        # Changes through this session are recorded in the audit log (mvne.infra.web.audit).
        session.info[audit.ACTOR_INFO] = audit.AuditActor(
            client_id=principal.client_id,
            tenant_id=principal.tenant_id,
            request_id=g.get("request_id"),
            kind=principal.kind,
            actor_id=principal.actor_id,
        )
        g.db_session = session
    return session


def public_db_session() -> Session:
    """The unit of work of a route without a caller (sign-up, accepting an invitation), committed like any other.

    Platform-scoped, as the tenant is not known before the request's token or link names it: the services
    these routes call name their tenant in every query.
    """
    session: Session | None = g.get("db_session")
    if session is None:
        session = runtime().db.session(platform=True)
        g.db_session = session
    return session


def tenant_id() -> str:
    from mvne.infra.web.auth import current_principal

    tid = current_principal().tenant_id
    if tid is None:
        raise RuntimeError("tenant route reached without a tenant principal")
    return tid
