"""The onboarding checklist that takes a sandbox tenant live, and the launch itself.

A tenant in `onboarding` is a sandbox: its lines run on the simulators and it may use test scenarios.
Its founder completes each step through the API, then launches: the tenant becomes `active`. The
checklist reads what the tenant set (brand, legal profile, market, host network, billing settings,
offers) and what the platform gave it (its number block); it changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mvne.catalog.models import Offer
from mvne.esim.identifiers import TEST_DEVICE_EID_INSTALL_FAILS, TEST_DEVICE_EID_INSTALLS
from mvne.esim.service import pool_summary
from mvne.infra.db import utcnow
from mvne.provisioning import sandbox
from mvne.provisioning.errors import LaunchIncomplete, TenantAlreadyLive
from mvne.provisioning.models import NumberBlock
from mvne.provisioning.network_agreements import chosen_agreement
from mvne.provisioning.service import number_block_of
from mvne.tenants.branding import find_brand
from mvne.tenants.errors import TenantNotFound
from mvne.tenants.legal import find_legal_profile
from mvne.tenants.models import Tenant
from mvne.tenants.service import record_event
from mvne.tenants.settings import find_settings

ONBOARDING = "onboarding"
ACTIVE = "active"
LEGAL_FIELDS = ("legal_name", "address", "registration_number", "vat_id", "iban")


@dataclass(frozen=True)
class Step:
    """One step of the checklist: done or not, what is missing, and the call that completes it."""

    step: str
    done: bool
    missing: list[str]
    how: str
    details: dict[str, Any] = field(default_factory=dict)


def number_range(block: NumberBlock | None) -> dict[str, Any] | None:
    """The block's first and last number and its size, as the API shows it."""
    if block is None:
        return None
    return {
        "first": f"{block.prefix}{1:0{len(str(block.size))}d}",
        "last": f"{block.prefix}{block.size}",
        "size": block.size,
    }


def tenant_view(session: Session, tenant: Tenant) -> dict[str, Any]:
    """A tenant with its number range and eSIM pool counts, as the API shows it."""
    pool = pool_summary(session, tenant.id)
    view = {c.key: getattr(tenant, c.key) for c in Tenant.__table__.columns}
    view["number_range"] = number_range(number_block_of(session, tenant.id))
    view["esim_pool"] = {"available": pool.available, "reserved": pool.reserved, "in_use": pool.in_use}
    return view


def _brand_step(session: Session) -> Step:
    brand = find_brand(session)
    missing = [] if brand is not None else ["display_name", "primary_color", "accent_color"]
    if brand is None or brand.logo_key is None:
        missing.append("logo")
    if brand is None or not (brand.support_email or brand.support_phone):
        missing.append("support_email or support_phone")
    return Step("brand", not missing, missing, "PUT /v1/tenant/brand, then PUT /v1/tenant/brand/logo with the image")


def _legal_step(session: Session) -> Step:
    profile = find_legal_profile(session)
    missing = [name for name in LEGAL_FIELDS if profile is None or not getattr(profile, name)]
    return Step("legal_profile", not missing, missing, "PUT /v1/tenant/legal-profile")


def _market_step(session: Session) -> Step:
    row = find_settings(session)
    missing = []
    if row is None or not row.languages:
        missing.append("languages")
    if row is None or row.tax_rate is None:
        missing.append("tax_rate")
    return Step("market", not missing, missing, "PUT /v1/tenant/market")


def _host_network_step(session: Session) -> Step:
    agreement = chosen_agreement(session)
    details = (
        {} if agreement is None else {"agreement_id": agreement.id, "name": agreement.name, "kind": agreement.kind}
    )
    return Step(
        "host_network",
        agreement is not None,
        [] if agreement is not None else ["agreement_id"],
        "PUT /v1/tenant/host-network with one of GET /v1/network-agreements",
        details,
    )


def _number_range_step(session: Session, tenant: Tenant) -> Step:
    shown = number_range(number_block_of(session, tenant.id))
    return Step(
        "number_range",
        shown is not None,
        [] if shown else ["A number block: the platform assigns one at sign-up; ask platform support for it."],
        "Nothing to call: the platform assigns the number block when the tenant is created",
        shown or {},
    )


def _billing_step(session: Session) -> Step:
    row = find_settings(session)
    done = row is not None and row.invoice_series is not None
    details = (
        {} if row is None else {"payment_terms_days": row.payment_terms_days, "invoice_series": row.invoice_series}
    )
    return Step("billing", done, [] if done else ["invoice_series"], "PUT /v1/tenant/billing-settings", details)


def _offer_step(session: Session) -> Step:
    published = session.scalar(select(func.count(Offer.id)).where(Offer.status == "published")) or 0
    return Step(
        "offer",
        published > 0,
        [] if published else ["a published offer"],
        "POST /v1/offers, then POST /v1/offers/{offer_id}/publish",
        {"published_offers": published},
    )


def checklist(session: Session, tenant: Tenant) -> dict[str, Any]:
    """Each step of the session's tenant's onboarding, and whether it can launch."""
    steps = [
        _brand_step(session),
        _legal_step(session),
        _market_step(session),
        _host_network_step(session),
        _number_range_step(session, tenant),
        _billing_step(session),
        _offer_step(session),
    ]
    return {
        "status": tenant.status,
        "ready_to_launch": tenant.status == ONBOARDING and all(step.done for step in steps),
        "launched_at": tenant.launched_at,
        "steps": steps,
    }


def launch(session: Session, tenant_id: str) -> Tenant:
    """Take a sandbox tenant live once every step is done; LaunchIncomplete names the steps left.

    The tenant's row is locked, so two launches at once make one `tenant.launched` event.
    """
    tenant = session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
    if tenant is None:
        raise TenantNotFound(f"No tenant {tenant_id}.")
    if tenant.status != ONBOARDING:
        since = f" since {tenant.launched_at:%Y-%m-%dT%H:%M:%SZ}" if tenant.launched_at else ""
        raise TenantAlreadyLive(f"This tenant is {tenant.status}{since}: only a sandbox (onboarding) tenant launches.")
    left = [step for step in checklist(session, tenant)["steps"] if not step.done]
    if left:
        raise LaunchIncomplete(
            f"{len(left)} onboarding step(s) left: {', '.join(step.step for step in left)}. See GET /v1/onboarding.",
            errors={step.step: [f"Missing: {'; '.join(step.missing)}.", f"To do: {step.how}."] for step in left},
        )
    tenant.status = ACTIVE
    tenant.launched_at = utcnow()
    session.flush()
    record_event(
        session, "tenant.launched", tenant.id, {"launched_at": tenant.launched_at.isoformat()}, tenant_id=tenant.id
    )
    return tenant


def sandbox_view(session: Session, tenant: Tenant, *, smdp_url: str) -> dict[str, Any]:
    """The published test numbers, test devices and scenarios, with this tenant's own test range."""
    block = number_block_of(session, tenant.id)
    test_range = None
    if block is not None:
        digits = len(str(block.size))
        last = min(block.size, sandbox.FIRST_TEST_LINE + sandbox.TEST_LINES - 1)
        test_range = {
            "first": f"{block.prefix}{sandbox.FIRST_TEST_LINE:0{digits}d}",
            "last": f"{block.prefix}{last:0{digits}d}",
            "size": last - sandbox.FIRST_TEST_LINE + 1,
        }
    return {
        "sandbox": tenant.status == ONBOARDING,
        "test_msisdns": test_range,
        "test_devices": [
            {"eid": TEST_DEVICE_EID_INSTALLS, "behaviour": "Installs every profile it downloads."},
            {"eid": TEST_DEVICE_EID_INSTALL_FAILS, "behaviour": "Fails to install every profile it downloads."},
        ],
        "scenarios": [
            {
                "name": doc.name,
                "behaviour": doc.behaviour,
                "outcome": doc.outcome,
                "msisdns": test_range if doc.name == sandbox.PROVISIONING_FAILS else None,
                "device_eid": sandbox.SCENARIO_EIDS.get(doc.name),
            }
            for doc in sandbox.SCENARIO_DOCS
        ],
        "device_download": (
            f"POST {smdp_url.rstrip('/')}/sim-admin/profiles/{{iccid}}/download on the sandbox's SM-DP+ "
            "simulator plays the subscriber's phone downloading the line's eSIM."
        ),
    }
