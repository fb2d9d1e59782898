"""Host network agreements: operators record them, each tenant chooses one of its country's.

The choice is the tenant's target host network. What its lines run on today is the platform's network
simulator whatever the choice, the only network adapter the platform has; a sandbox tenant's lines will
stay on the simulator even once live networks are wired (docs/sandbox.md).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mvne.infra.db import utcnow
from mvne.infra.ids import new_id
from mvne.provisioning.errors import NetworkAgreementUnavailable, UnknownNetworkAgreement
from mvne.provisioning.models import NetworkAgreement
from mvne.tenants import settings as tenant_settings
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event

SIMULATED = "simulated"
LIVE = "live"
KINDS = (SIMULATED, LIVE)
ACTIVE = "active"
RETIRED = "retired"


def create_agreement(
    session: Session, *, name: str, host_mno: str, mcc: str, mnc: str, country: str, kind: str, status: str = ACTIVE
) -> NetworkAgreement:
    """Record an agreement with a host network (platform-scoped session)."""
    agreement = NetworkAgreement(
        id=new_id("nag"),
        name=name,
        host_mno=host_mno,
        mcc=mcc,
        mnc=mnc,
        country=country,
        kind=kind,
        status=status,
        created_at=utcnow(),
    )
    session.add(agreement)
    session.flush()
    return agreement


def agreements_query(*, country: str | None = None, only_active: bool = False) -> Select[NetworkAgreement]:
    stmt = select(NetworkAgreement)
    if country is not None:
        stmt = stmt.where(NetworkAgreement.country == country)
    if only_active:
        stmt = stmt.where(NetworkAgreement.status == ACTIVE)
    return stmt


def choose_host_network(session: Session, tenant: Tenant, agreement_id: str) -> NetworkAgreement:
    """Make an active agreement of the tenant's country its host network (tenant session)."""
    agreement = session.get(NetworkAgreement, agreement_id)
    if agreement is None:
        raise UnknownNetworkAgreement(
            f"No network agreement {agreement_id}: choose one of GET /v1/network-agreements.",
            errors={"agreement_id": ["Not an agreement: see GET /v1/network-agreements."]},
        )
    if agreement.country != tenant.country or agreement.status != ACTIVE:
        why = f"is for {agreement.country}" if agreement.country != tenant.country else "is retired"
        raise NetworkAgreementUnavailable(
            f"Network agreement {agreement_id} {why}: choose one of GET /v1/network-agreements.",
            errors={"agreement_id": [f"This agreement {why}."]},
        )
    row = tenant_settings.settings_for_update(session)
    row.host_network_agreement_id = agreement.id
    row.updated_at = utcnow()
    session.flush()
    record_event(
        session, "tenant.host_network_chosen", agreement.id, {"agreement": agreement.id, "kind": agreement.kind}
    )
    return agreement


def chosen_agreement(session: Session) -> NetworkAgreement | None:
    """The agreement the session's tenant chose, or None."""
    row = tenant_settings.find_settings(session)
    if row is None or row.host_network_agreement_id is None:
        return None
    return session.get(NetworkAgreement, row.host_network_agreement_id)


def host_network_view(session: Session, tenant: Tenant) -> dict[str, Any]:
    agreement = chosen_agreement(session)
    return {
        "agreement_id": agreement.id if agreement else None,
        "agreement": agreement,
        "lines_run_on": SIMULATED,
        "note": (
            "Lines run on the platform's simulated host network: it is the only network the platform reaches "
            "today, and a sandbox tenant's lines always stay on it."
            if tenant.status == "onboarding"
            else "Lines run on the platform's simulated host network, the only network the platform reaches today."
        ),
    }
