"""The calling tenant's onboarding: its checklist, its launch, its host network and its sandbox's test numbers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask_smorest import Blueprint

from mvne.infra.web.auth import require
from mvne.infra.web.context import db_session, runtime, tenant_id
from mvne.infra.web.problems import problems
from mvne.provisioning import network_agreements, onboarding
from mvne.provisioning.errors import (
    LaunchIncomplete,
    NetworkAgreementUnavailable,
    TenantAlreadyLive,
    UnknownNetworkAgreement,
)
from mvne.provisioning.models import NetworkAgreement
from mvne.provisioning.schemas import (
    HostNetworkInputSchema,
    HostNetworkSchema,
    NetworkAgreementListSchema,
    OnboardingSchema,
    SandboxSchema,
)
from mvne.tenants.schemas import TenantSchema
from mvne.tenants.service import get_tenant

onboarding_blp = Blueprint(
    "onboarding",
    __name__,
    url_prefix="/v1/onboarding",
    description="The checklist that takes a sandbox tenant live.",
)
launch_blp = Blueprint(
    "tenant_launch", __name__, url_prefix="/v1/tenant/launch", description="Taking a sandbox tenant live."
)
agreements_blp = Blueprint(
    "network_agreements",
    __name__,
    url_prefix="/v1/network-agreements",
    description="The host networks (MNOs) a tenant of a country may choose.",
)
host_network_blp = Blueprint(
    "host_network",
    __name__,
    url_prefix="/v1/tenant/host-network",
    description="The calling tenant's choice of host network.",
)
sandbox_blp = Blueprint(
    "sandbox",
    __name__,
    url_prefix="/v1/sandbox/test-numbers",
    description="The sandbox's published test numbers, test devices and scenarios.",
)


@onboarding_blp.get("")
@require("tenant:read")
@onboarding_blp.response(200, OnboardingSchema)
def get_onboarding() -> dict[str, Any]:
    """The onboarding checklist: each step, what it misses and the call that completes it.

    Steps: brand, legal_profile, market, host_network, number_range, billing, offer. `ready_to_launch`
    is true when the tenant is onboarding and every step is done.
    """
    session = db_session()
    view = onboarding.checklist(session, get_tenant(session, tenant_id()))
    return {**view, "steps": [asdict(step) for step in view["steps"]]}


@launch_blp.post("")
@require("tenant:write")
@problems(LaunchIncomplete, TenantAlreadyLive)
@launch_blp.response(200, TenantSchema)
def launch_tenant() -> dict[str, Any]:
    """Take the tenant live: it leaves its sandbox and becomes `active`, with a `tenant.launched` event.

    409 `launch_incomplete` names each step left and what to do (`errors`, per step); 409
    `tenant_already_live` when the tenant is not in onboarding. Test scenarios are refused from then on.
    """
    session = db_session()
    return onboarding.tenant_view(session, onboarding.launch(session, tenant_id()))


@agreements_blp.get("")
@require("tenant:read")
@agreements_blp.response(200, NetworkAgreementListSchema)
def list_network_agreements() -> dict[str, Any]:
    """The active agreements of the tenant's country, any of which it may choose as its host network."""
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    stmt = network_agreements.agreements_query(country=tenant.country, only_active=True)
    return {"data": list(session.scalars(stmt.order_by(NetworkAgreement.id)))}


@host_network_blp.get("")
@require("tenant:read")
@host_network_blp.response(200, HostNetworkSchema)
def get_host_network() -> dict[str, Any]:
    """The host network the tenant chose (null until it chooses), and the network its lines run on now."""
    session = db_session()
    return network_agreements.host_network_view(session, get_tenant(session, tenant_id()))


@host_network_blp.put("")
@require("tenant:write")
@problems(UnknownNetworkAgreement, NetworkAgreementUnavailable)
@host_network_blp.arguments(HostNetworkInputSchema, example={"agreement_id": "nag_sim_fr"})
@host_network_blp.response(200, HostNetworkSchema)
def put_host_network(body: dict[str, Any]) -> dict[str, Any]:
    """Choose the host network: one of the active agreements of the tenant's country.

    A sandbox tenant's lines run on the platform's simulated network whatever it chooses; so do every
    tenant's today, the simulator being the only network the platform reaches.
    """
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    network_agreements.choose_host_network(session, tenant, body["agreement_id"])
    return network_agreements.host_network_view(session, tenant)


@sandbox_blp.get("")
@require("tenant:read")
@sandbox_blp.response(200, SandboxSchema)
def get_test_numbers() -> dict[str, Any]:
    """The sandbox's test numbers and test devices, and what each test scenario of a line does.

    Order a line with `"test_scenario"` in POST /v1/subscriptions while the tenant is onboarding; a
    live tenant is refused (422 `sandbox_only`). `sandbox` says whether the tenant is still in its sandbox.
    """
    session = db_session()
    tenant = get_tenant(session, tenant_id())
    return onboarding.sandbox_view(session, tenant, smdp_url=runtime().settings.smdp_url)
