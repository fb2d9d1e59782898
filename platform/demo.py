"""The demo tenant: a live-looking MVNO seeded through the same services the API uses.

Seeding is idempotent: every object is looked up by its natural key (slug, code, email, record id)
before it is made, so running it again completes what is missing and duplicates nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from mvne.catalog.models import Promotion
from mvne.catalog.promotions import PromotionTerms, create_promotion
from mvne.catalog.service import (
    Allowance,
    OfferTerms,
    OneTimeCharge,
    VersionTerms,
    create_offer,
    create_version,
    get_offer_by_code,
    list_versions,
    publish_offer,
    publish_version,
)
from mvne.charging import billing, usage
from mvne.charging.models import BillingRun, Invoice
from mvne.charging.rating import Service
from mvne.infra.db import utcnow
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.platform.auth import OPERATOR_SCOPES, TENANT_SCOPES
from mvne.platform.wiring import build_runtime
from mvne.provisioning.actors import secret_box
from mvne.provisioning.models import Subscription
from mvne.provisioning.service import onboard_tenant, request_subscription
from mvne.tenants.legal import find_legal_profile, set_legal_profile
from mvne.tenants.models import ApiClient, Customer
from mvne.tenants.service import create_customer, get_tenant_by_slug, issue_api_client
from mvne.tenants.staff import create_staff_user, find_staff_user

log = logging.getLogger("mvne.demo")

DEMO_SLUG = "demo"
DEMO_CLIENT_ID = "cli_demo"
DEMO_OPERATOR_ID = "cli_demo_operator"
DEMO_OWNER_EMAIL = "owner@demo-mobile.example"
DEMO_ADDON = "EU-2GB"
DEMO_PROMOTION = "WELCOME10"

OFFERS = (
    ("FLEX-5", "Flex 5 GB", "9.99", 5_000, 120, 100, "0.010", "0.20", "0.10"),
    ("FLEX-50", "Flex 50 GB", "19.99", 50_000, 600, 500, "0.005", "0.15", "0.08"),
    ("UNLIMITED", "Unlimited Talk + 150 GB", "29.99", 150_000, 100_000, 100_000, "0.002", "0.00", "0.00"),
)
# Made-up but well-formed identifiers (their check digits hold), so the demo invoice reads like a real one.
DEMO_LEGAL_PROFILE: dict[str, Any] = {
    "legal_name": "Demo Mobile",
    "legal_form": "SAS",
    "address": {"line1": "10 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
    "registration_number": "732 829 320",
    "rcs_city": "Paris",
    "share_capital": Decimal("10000.00"),
    "vat_id": "FR 44 732 829 320",
    "iban": "FR14 2004 1010 0505 0001 3M02 606",
    "bic": "PSSTFRPPPAR",
    "support_email": "support@demo-mobile.example",
}
CUSTOMERS = (
    ("Camille Martin", "camille.martin@example.com", "FLEX-5", "12 rue de la Paix", "75002", "Paris"),
    ("Hugo Bernard", "hugo.bernard@example.com", "FLEX-50", "4 quai Saint-Antoine", "69002", "Lyon"),
    ("Léa Dubois", "lea.dubois@example.com", "UNLIMITED", "9 cours Mirabeau", "13100", "Aix-en-Provence"),
)


def seed_demo(rt: Runtime, *, wait_s: float = 90.0) -> dict[str, Any]:
    """Create or complete the demo tenant; the runtime's worker must be consuming jobs."""
    settings = rt.settings
    with rt.db.transaction(platform=True) as session:
        tenant = get_tenant_by_slug(session, DEMO_SLUG)
        if tenant is None:
            tenant = onboard_tenant(
                session,
                name="Demo Mobile",
                slug=DEMO_SLUG,
                country="FR",
                currency="EUR",
                timezone="Europe/Paris",
                box=secret_box(settings),
            )
        tenant_id, timezone = tenant.id, tenant.timezone
        _seed_clients(session, tenant_id, settings)

    with rt.db.transaction(tenant_id=tenant_id) as session:
        _seed_identity(session, tenant_id, settings)
        offer_ids = {}
        for code, name, price, data_mb, minutes, sms, per_mb, per_min, per_sms in OFFERS:
            offer = get_offer_by_code(session, code)
            if offer is None:
                offer = create_offer(
                    session,
                    code=code,
                    name=name,
                    currency="EUR",
                    terms=OfferTerms(
                        price=Decimal(price),
                        data_mb=data_mb,
                        voice_minutes=minutes,
                        sms=sms,
                        overage_data_per_mb=Decimal(per_mb),
                        overage_voice_per_minute=Decimal(per_min),
                        overage_sms_per_message=Decimal(per_sms),
                    ),
                    public=True,
                )
            publish_offer(session, offer.id)
            offer_ids[code] = offer.id
        _seed_catalog(session, timezone, offer_ids)
        for name, email, offer_code, line1, postal_code, city in CUSTOMERS:
            customer = session.scalar(select(Customer).where(Customer.email == email))
            if customer is None:
                customer = create_customer(
                    session,
                    name=name,
                    email=email,
                    address={"line1": line1, "postal_code": postal_code, "city": city, "country": "FR"},
                )
            has_line = session.scalar(
                select(Subscription.id).where(Subscription.customer_id == customer.id, Subscription.status != "failed")
            )
            if has_line is None:
                request_subscription(
                    session,
                    tenant_id=tenant_id,
                    customer_id=customer.id,
                    offer_id=offer_ids[offer_code],
                    sim_type="esim",
                )
    rt.poke_relay()
    _wait(lambda: _pending_lines(rt, tenant_id) == 0, wait_s, "demo lines to activate")

    with rt.db.transaction(tenant_id=tenant_id) as session:
        tenant = get_tenant_by_slug(session, DEMO_SLUG)
        assert tenant is not None
        # The demo's customers joined at the start of the last period, which has ended and is billed;
        # this period, still open, has a little usage to preview.
        period, joined = billing.last_ended_period(tenant.timezone)
        lines = session.scalars(
            select(Subscription).where(Subscription.status == "active").order_by(Subscription.id)
        ).all()
        records = []
        for n, line in enumerate(lines):
            if line.activated_at is not None and line.activated_at > joined:
                line.activated_at = joined
            moment = joined + dt.timedelta(days=3 + n)
            # The first line overruns its data allowance, so the demo invoice shows an overage line.
            data_bytes = (5_750 if n == 0 else 2_300 + 700 * n) * 1_000_000
            recent = max(utcnow() - dt.timedelta(hours=2), joined)
            records += [
                usage.UsageInput(f"demo-{line.id}-data", Service.DATA, moment, data_bytes, subscription_id=line.id),
                usage.UsageInput(
                    f"demo-{line.id}-voice", Service.VOICE, moment, 1_860 + 300 * n, subscription_id=line.id
                ),
                usage.UsageInput(f"demo-{line.id}-sms", Service.SMS, moment, 1, subscription_id=line.id),
                usage.UsageInput(
                    f"demo-{line.id}-data-now", Service.DATA, recent, 400_000_000, subscription_id=line.id
                ),
            ]
        session.flush()
        window = usage.UsageWindow.of(settings.usage_clock_skew_s, settings.usage_retention_days)
        usage.ingest_usage(session, tenant, records, source="demo", window=window)
        has_invoice = session.scalar(select(Invoice.id).where(Invoice.period == period))
        running = session.scalar(
            select(BillingRun.id).where(BillingRun.period == period, BillingRun.status.in_(("pending", "running")))
        )
        if has_invoice is None and running is None and lines:
            billing.start_billing_run(session, tenant_id=tenant_id, period=period)
    rt.poke_relay()
    _wait(lambda: _invoice_count(rt, tenant_id, period) > 0 or not lines, wait_s, "the demo invoice")
    return {
        "tenant_id": tenant_id,
        "tenant_client": {"client_id": DEMO_CLIENT_ID, "client_secret": settings.demo_client_secret},
        "operator_client": {"client_id": DEMO_OPERATOR_ID, "client_secret": settings.demo_client_secret},
        "owner": {"tenant": DEMO_SLUG, "email": DEMO_OWNER_EMAIL, "password": settings.demo_staff_password},
        "active_lines": len(lines),
        "period": period,
    }


def _seed_catalog(session: Session, timezone: str, offer_ids: dict[str, str]) -> None:
    """A second version of FLEX-5 (more data, roaming in the EU), an EU add-on and a welcome promotion."""
    flex = offer_ids["FLEX-5"]
    if len(list_versions(session, flex)) == 1:
        today = dt.datetime.now(ZoneInfo(timezone)).date()
        renewal = dt.date(today.year + today.month // 12, today.month % 12 + 1, 1)
        version = create_version(
            session,
            flex,
            terms=VersionTerms(
                price=Decimal("10.99"),
                allowances=(
                    Allowance("data", "home", 8_000, roam_like_at_home=True, eu_fair_use_amount=6_000),
                    Allowance("voice", "home", 180, roam_like_at_home=True),
                    Allowance("sms", "home", 100, roam_like_at_home=True),
                ),
                usage_prices={
                    "home": {"data": Decimal("0.010"), "voice": Decimal("0.20"), "sms": Decimal("0.10")},
                    "world": {"data": Decimal("0.50"), "voice": Decimal("1.50"), "sms": Decimal("0.40")},
                },
                charges=(OneTimeCharge("activation", "Activation", Decimal("9.99")),),
            ),
            effective_from=renewal,
            existing_subscribers="at_renewal",
        )
        publish_version(session, flex, version.id)
    if get_offer_by_code(session, DEMO_ADDON) is None:
        addon = create_offer(
            session,
            code=DEMO_ADDON,
            name="EU roaming 2 GB",
            currency="EUR",
            kind="addon",
            public=True,
            description="2 GB to use in the EU for 30 days.",
            terms=VersionTerms(
                price=Decimal("4.99"),
                allowances=(Allowance("data", "eu", 2_000),),
                usage_prices={"home": {"data": Decimal(0), "voice": Decimal(0), "sms": Decimal(0)}},
                validity_days=30,
            ),
        )
        publish_offer(session, addon.id)
    if session.scalar(select(Promotion.id).where(Promotion.code_key == DEMO_PROMOTION.lower())) is None:
        create_promotion(
            session,
            PromotionTerms(
                code=DEMO_PROMOTION, name="10% off for 3 months", kind="percent", value=Decimal(10), cycles=3
            ),
        )


def _seed_clients(session: Session, tenant_id: str, settings: Settings) -> None:
    """The demo tenant's back-end client (holding every tenant scope, old demos included) and an operator."""
    demo_client = session.get(ApiClient, DEMO_CLIENT_ID)
    if demo_client is not None:
        # A demo seeded by an older version gets the scopes added since: the demo client holds them all.
        demo_client.scopes = " ".join(TENANT_SCOPES)
    else:
        issue_api_client(
            session,
            tenant_id=tenant_id,
            name="Demo back end",
            scopes=list(TENANT_SCOPES),
            allowed=TENANT_SCOPES,
            secret=settings.demo_client_secret,
            client_id=DEMO_CLIENT_ID,
        )
    if session.get(ApiClient, DEMO_OPERATOR_ID) is None:
        issue_api_client(
            session,
            tenant_id=None,
            name="Demo operator",
            scopes=list(OPERATOR_SCOPES),
            allowed=OPERATOR_SCOPES,
            secret=settings.demo_client_secret,
            client_id=DEMO_OPERATOR_ID,
        )


def _seed_identity(session: Session, tenant_id: str, settings: Settings) -> None:
    """The demo tenant's legal profile and its owner's console account."""
    if find_legal_profile(session) is None:
        set_legal_profile(session, DEMO_LEGAL_PROFILE)
    if find_staff_user(session, tenant_id, DEMO_OWNER_EMAIL) is None:
        create_staff_user(
            session,
            tenant_id=tenant_id,
            email=DEMO_OWNER_EMAIL,
            name="Demo owner",
            role="owner",
            password=settings.demo_staff_password,
            verified=True,
        )


def _pending_lines(rt: Runtime, tenant_id: str) -> int:
    with rt.db.transaction(tenant_id=tenant_id) as session:
        return len(session.scalars(select(Subscription.id).where(Subscription.status == "pending")).all())


def _invoice_count(rt: Runtime, tenant_id: str, period: str) -> int:
    with rt.db.transaction(tenant_id=tenant_id) as session:
        return len(session.scalars(select(Invoice.id).where(Invoice.period == period)).all())


def _wait(done: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((host, port)) == 0


def seed_standalone(settings: Settings) -> dict[str, Any]:
    """`mvne demo seed`: use the running platform if it is up, else run one briefly to seed."""
    from mvne.infra.migrate import upgrade
    from mvne.platform.embedded import EmbeddedServer

    upgrade(settings)
    if _port_in_use(settings.host, settings.port):
        rt = build_runtime(settings)
        try:
            return seed_demo(rt)
        finally:
            rt.stop()
    with EmbeddedServer(settings) as server:
        return seed_demo(server.runtime)
