"""Two tenants with one object of every kind, built once through the public API and shared by the folder.

Each tenant gets a webhook endpoint (with deliveries to a local receiver), a legal profile, a brand and its logo,
billing settings and a host network, a published offer (its version, its lines' terms), an add-on bought on its
line with a promotion code (the purchase, its buckets and the redemption), a rate card with a published version of
lines, a customer, an active eSIM line, rated usage, a completed billing run for the last period and its invoice, a
rejected usage record, a re-rating run of that period and an adjustment, carrier billing (the policy, the line's
own setting, a merchant, its charge on the prepaid line and a refund), staff (one joined by invitation and logged
in, one invited, one waiting for its e-mail verification), and an app its customer signed in through (a subscriber
account, its sign-in code and tokens), so every tenant-owned table holds rows of both tenants.
Both tenants own objects: a list that leaks or an endpoint that answers nothing at all would both show.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask

from mvne.charging.models import UsageAdjustment, UsageFile, UsageRecord
from mvne.infra.ids import new_id
from mvne.infra.jobs import DeadLetter
from mvne.infra.runtime import Runtime
from tests.support.api import (
    ApiCaller,
    Operator,
    TenantHandle,
    active_subscription,
    backdate_line,
    customer,
    last_period,
    make_tenant,
    published_offer,
    token_for,
    wait_for,
)
from tests.support.servers import live_server
from tests.support.staff import PASSWORD, StaffHandle, console_for, make_staff_user, token_in, wait_for_mail
from tests.support.subscribers import register_app, subscriber_api

PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class World:
    """One tenant and the ids of the objects it owns, one of each kind."""

    tenant: TenantHandle
    offer_id: str
    offer_code: str
    customer_id: str
    customer_email: str
    subscription_id: str
    msisdn: str
    iccid: str
    period: str
    billing_run_id: str
    invoice_id: str
    usage_record_id: str
    usage_rejection_id: str
    webhook_endpoint_id: str
    webhook_url: str
    webhook_delivery_id: str
    dead_letter_id: str
    usage_file_id: str
    staff_user_id: str
    staff_email: str
    staff_invitation_id: str
    app_id: str
    account_id: str
    subscriber: ApiCaller
    rate_card_id: str
    rate_card_version_id: str  # the customer, signed in through the app
    offer_version_id: str
    promotion_id: str
    promotion_code: str
    purchase_id: str
    rerating_run_id: str
    merchant_id: str
    carrier_charge_id: str
    voucher_batch_id: str

    def object_ids(self) -> dict[str, str]:
        """Every identifier of this tenant's objects that another tenant must never see (line number and SIM too)."""
        return {
            "tenant": self.tenant.id,
            "offer": self.offer_id,
            "customer": self.customer_id,
            "subscription": self.subscription_id,
            "billing_run": self.billing_run_id,
            "invoice": self.invoice_id,
            "usage_record": self.usage_record_id,
            "usage_rejection": self.usage_rejection_id,
            "webhook_endpoint": self.webhook_endpoint_id,
            "webhook_delivery": self.webhook_delivery_id,
            "dead_letter": self.dead_letter_id,
            "usage_file": self.usage_file_id,
            "staff_user": self.staff_user_id,
            "staff_invitation": self.staff_invitation_id,
            "api_client": self.tenant.client_id,
            "msisdn": self.msisdn,
            "iccid": self.iccid,
            "app": self.app_id,
            "account": self.account_id,
            "rate_card": self.rate_card_id,
            "rate_card_version": self.rate_card_version_id,
            "offer_version": self.offer_version_id,
            "promotion": self.promotion_id,
            "purchase": self.purchase_id,
            "rerating_run": self.rerating_run_id,
            "merchant": self.merchant_id,
            "carrier_charge": self.carrier_charge_id,
            "voucher_batch": self.voucher_batch_id,
        }

    def subscriber_ids(self) -> dict[str, str]:
        """What is the subscriber's own: another subscriber, even of this tenant, must never see it."""
        ids = self.object_ids()
        return {name: ids[name] for name in ("customer", "subscription", "invoice", "msisdn", "iccid", "account")}


@dataclass(frozen=True)
class TwoTenants:
    a: World
    b: World


def _completed_run(handle: TenantHandle, period: str) -> dict[str, Any]:
    started = handle.api.post("/v1/billing-runs", {"period": period})
    assert started.status_code == 202, started.json
    run_id = started.json["id"]

    def done() -> dict[str, Any] | None:
        run = handle.api.get(f"/v1/billing-runs/{run_id}").json
        return run if run["status"] not in ("pending", "running") else None

    run: dict[str, Any] = wait_for(done, what=f"billing run {run_id}")
    assert run["status"] == "completed", run
    return run


def _usage_file(runtime: Runtime) -> str:
    """A host network's usage file as operators see it (a platform object: no tenant's)."""
    file_id = new_id("ufl")
    with runtime.db.transaction(platform=True) as session:
        key = f"usage/incoming/isolation-{secrets.token_hex(4)}.csv"
        session.add(UsageFile(id=file_id, key=key, status="processed", errors=[], created_at=dt.datetime.now(dt.UTC)))
    return file_id


def _dead_letter(runtime: Runtime, tenant_id: str, invoice_id: str) -> str:
    """A dead-lettered job of the tenant, already replayed, so replaying it again would do nothing."""
    letter_id = new_id("dlq")
    with runtime.db.transaction(platform=True) as session:
        session.add(
            DeadLetter(
                id=letter_id,
                tenant_id=tenant_id,
                message_id=new_id("msg"),
                actor="charging.render_invoice_pdf",
                queue="default",
                payload={"tenant_id": tenant_id, "invoice_id": invoice_id},
                attempts=3,
                error="RuntimeError: isolation test fixture",
                traceback="",
                replayed_at=dt.datetime.now(dt.UTC),
            )
        )
    return letter_id


def _rerating_run(runtime: Runtime, handle: TenantHandle, period: str, usage_record_id: str, invoice_id: str) -> str:
    """A completed re-rating run of the billed period, and an adjustment of the billed record (already invoiced)."""
    started = handle.api.post("/v1/rerating-runs", {"period": period})
    assert started.status_code == 202, started.json
    run_id = started.json["id"]

    def done() -> dict[str, Any] | None:
        run = handle.api.get(f"/v1/rerating-runs/{run_id}").json
        return run if run["status"] not in ("pending", "running") else None

    run: dict[str, Any] = wait_for(done, what=f"re-rating run {run_id}")
    assert run["status"] == "completed", run
    with runtime.db.transaction(tenant_id=handle.id) as session:
        record = session.get(UsageRecord, usage_record_id)
        assert record is not None
        session.add(
            UsageAdjustment(
                id=new_id("uad"),
                tenant_id=handle.id,
                usage_record_id=usage_record_id,
                rerating_run_id=run_id,
                subscription_id=record.subscription_id,
                period=period,
                service=record.service,
                amount=Decimal("0.01"),
                wholesale_amount=Decimal(0),
                invoice_id=invoice_id,
            )
        )
    return str(run_id)


def _webhook_endpoint(handle: TenantHandle, receiver_url: str) -> dict[str, Any]:
    created = handle.api.post("/v1/webhook-endpoints", {"url": f"{receiver_url}/{handle.slug}"})
    assert created.status_code == 201, created.json
    return dict(created.json)


def _first_delivery(handle: TenantHandle, endpoint_id: str) -> str:
    listed = handle.api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", limit=1)
    assert listed.status_code == 200, listed.json
    assert listed.json["data"], f"no webhook delivery for {endpoint_id}"
    return str(listed.json["data"][0]["id"])


def legal_profile_body(handle: TenantHandle) -> dict[str, Any]:
    """A valid French legal profile, named after the tenant."""
    return {
        "legal_name": f"Legal {handle.slug}",
        "legal_form": "SAS",
        "address": {"line1": "12 rue de la Paix", "postal_code": "75002", "city": "Paris", "country": "FR"},
        "registration_number": "732829320",
        "vat_id": "FR44732829320",
        "iban": "FR1420041010050500013M02606",
    }


def _legal_profile(handle: TenantHandle) -> None:
    stored = handle.api.request("PUT", "/v1/tenant/legal-profile", legal_profile_body(handle))
    assert stored.status_code == 200, stored.json


def brand_body(handle: TenantHandle) -> dict[str, Any]:
    """A brand named after the tenant."""
    return {
        "display_name": f"Brand {handle.slug}",
        "primary_color": "#1f4fd1",
        "accent_color": "#f5a623",
        "support_email": f"help@{handle.slug}.example",
    }


# A 1x1 PNG: each tenant uploads one as its logo, so the logo route has something to serve each.
LOGO = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


def _brand(handle: TenantHandle) -> None:
    stored = handle.api.request("PUT", "/v1/tenant/brand", brand_body(handle))
    assert stored.status_code == 200, stored.json
    headers = handle.api.headers({"Content-Type": "image/png"})
    uploaded = handle.api.client.put("/v1/tenant/brand/logo", data=LOGO, headers=headers)
    assert uploaded.status_code == 200, uploaded.json


BILLING_SETTINGS = {"payment_terms_days": 14, "invoice_series": "ISO-"}


def _settings(handle: TenantHandle) -> None:
    """The tenant's settings row: billing settings and its host network."""
    stored = handle.api.request("PUT", "/v1/tenant/billing-settings", BILLING_SETTINGS)
    assert stored.status_code == 200, stored.json
    chosen = handle.api.request("PUT", "/v1/tenant/host-network", {"agreement_id": "nag_sim_fr"})
    assert chosen.status_code == 200, chosen.json


def _rate_card(handle: TenantHandle) -> tuple[str, str]:
    """A rate card with one published version of lines, for the tenant's host network."""
    card = handle.api.post("/v1/rate-cards", {"name": f"Rates of {handle.slug}", "network_agreement_id": "nag_sim_fr"})
    assert card.status_code == 201, card.json
    line = {"prefix": "33", "zone": "France", "service": "voice", "price": "0.10", "first_increment": 60,
            "next_increment": 60}  # fmt: skip
    version = handle.api.post(
        f"/v1/rate-cards/{card.json['id']}/versions", {"effective_from": "2026-01-01", "lines": [line]}
    )
    assert version.status_code == 201, version.json
    published = handle.api.post(f"/v1/rate-cards/{card.json['id']}/versions/{version.json['id']}/publish")
    assert published.status_code == 200, published.json
    return card.json["id"], version.json["id"]


ISO_ADDON = {
    "name": "Isolation add-on",
    "kind": "addon",
    "price": "3.00",
    "allowances": {"data_mb": 100},
    "overage": {"data_per_mb": "0", "voice_per_minute": "0", "sms_per_message": "0"},
    "validity_days": 30,
}


def _promotion(handle: TenantHandle) -> dict[str, Any]:
    made = handle.api.post("/v1/promotions", {"code": f"ISO-{secrets.token_hex(3)}", "kind": "amount", "value": "1"})
    assert made.status_code == 201, made.json
    return dict(made.json)


def _purchase(handle: TenantHandle, subscription_id: str, addon_id: str, code: str) -> str:
    """An add-on bought on the line with the tenant's promotion: a purchase, its bucket and a redemption."""
    bought = handle.api.post(
        f"/v1/subscriptions/{subscription_id}/purchases", {"offer_id": addon_id, "promotion_code": code}
    )
    assert bought.status_code == 201, bought.json
    return str(bought.json["id"])


def _carrier_billing(app: Flask, handle: TenantHandle, subscription_id: str) -> tuple[str, str]:
    """Carrier billing allowed, the line's own setting, a merchant, and its charge on the line, partly refunded."""
    allowed = handle.api.request("PUT", "/v1/tenant/carrier-billing", {"mode": "allowed"})
    assert allowed.status_code == 200, allowed.json
    line = handle.api.request("PUT", f"/v1/subscriptions/{subscription_id}/carrier-billing", {"barred": False})
    assert line.status_code == 200, line.json
    made = handle.api.post("/v1/merchants", {"name": f"Merchant of {handle.slug}"})
    assert made.status_code == 201, made.json
    client = app.test_client()
    merchant = ApiCaller(client, token_for(client, made.json["client_id"], made.json["client_secret"]))
    charged = merchant.post(
        "/v1/carrier-charges", {"subscription": subscription_id, "amount": "1.00", "description": "Isolation"}
    )
    assert charged.status_code == 201, charged.json
    refunded = merchant.post(f"/v1/carrier-charges/{charged.json['id']}/refunds", {"amount": "0.10"})
    assert refunded.status_code == 201, refunded.json
    return made.json["id"], charged.json["id"]


def _voucher_batch(handle: TenantHandle, subscription_id: str) -> str:
    """A batch of two top-up vouchers, one redeemed on the line."""
    made = handle.api.post("/v1/voucher-batches", {"name": f"Cards of {handle.slug}", "amount": "2.00", "count": 2})
    assert made.status_code == 201, made.json
    redeemed = handle.api.post(
        f"/v1/subscriptions/{subscription_id}/voucher-redemptions", {"code": made.json["codes"][0]}
    )
    assert redeemed.status_code == 201, redeemed.json
    return str(made.json["id"])


@dataclass(frozen=True)
class Staff:
    user_id: str
    email: str
    invitation_id: str


def _staff(app: Flask, runtime: Runtime, handle: TenantHandle) -> Staff:
    """A staff user who joined by invitation and logged in, a pending invitation, and a verification link."""
    joined = handle.api.post("/v1/staff/invitations", {"email": f"staff@{handle.slug}.example", "role": "support"})
    assert joined.status_code == 201, joined.json
    token = token_in(wait_for_mail(app, joined.json["email"], "staff_invitation"))
    user = app.test_client().post(
        "/v1/staff/invitations/accept", json={"token": token, "name": f"Staff of {handle.slug}", "password": PASSWORD}
    )
    assert user.status_code == 201, user.get_json()
    console_for(app, handle.slug, StaffHandle(user.get_json()["id"], joined.json["email"], "support", PASSWORD))
    pending = handle.api.post("/v1/staff/invitations", {"email": f"later@{handle.slug}.example", "role": "finance"})
    assert pending.status_code == 201, pending.json
    unverified = make_staff_user(runtime, handle.id, "read_only", verified=False)
    resent = app.test_client().post(
        "/v1/signup/resend-verification", json={"email": unverified.email, "tenant": handle.slug}
    )
    assert resent.status_code == 202, resent.get_json()
    return Staff(user.get_json()["id"], joined.json["email"], pending.json["id"])


def _build_worlds(app: Flask, runtime: Runtime, operator: Operator, receiver_url: str) -> TwoTenants:
    handles = [make_tenant(app.test_client(), operator) for _ in range(2)]
    # First, so every event that follows is delivered to it (deliveries are written with the events).
    endpoints = [_webhook_endpoint(h, receiver_url) for h in handles]
    for handle in handles:
        _legal_profile(handle)
        _brand(handle)
        _settings(handle)
    offers = [published_offer(h.api, code=f"ISO-{secrets.token_hex(3)}") for h in handles]
    rate_cards = [_rate_card(h) for h in handles]
    addons = [published_offer(h.api, code=f"ISO-ADD-{secrets.token_hex(3)}", **ISO_ADDON) for h in handles]
    promotions = [_promotion(h) for h in handles]
    customers = [customer(h.api, name=f"Customer of {h.slug}") for h in handles]
    subs = [active_subscription(h.api, c["id"], o["id"]) for h, c, o in zip(handles, customers, offers, strict=True)]

    periods = []
    usage_ids: list[tuple[str, str]] = []
    # Billing runs bill ended periods: the lines joined at the start of the last one, where their usage lies.
    period, period_start = last_period()
    for handle, sub in zip(handles, subs, strict=True):
        backdate_line(runtime, sub["id"], period_start)
        started_at = period_start + dt.timedelta(days=1)
        batch = {
            "records": [
                {
                    "record_id": f"iso-{secrets.token_hex(4)}",
                    "subscription": sub["id"],
                    "service": "data",
                    "started_at": started_at.isoformat(),
                    "volume": 5_000_000,
                },
                # Before the line was active: kept as the tenant's rejection, open.
                {
                    "record_id": f"iso-early-{secrets.token_hex(4)}",
                    "subscription": sub["id"],
                    "service": "sms",
                    "started_at": (period_start - dt.timedelta(days=1)).isoformat(),
                },
            ]
        }
        rated = handle.api.post("/v1/usage-records", batch)
        assert rated.status_code == 200, rated.json
        assert rated.json["accepted"] == 1, rated.json
        assert [r["outcome"] for r in rated.json["records"]] == ["rated", "rejected"], rated.json
        usage_ids.append((rated.json["records"][0]["usage_record"], rated.json["records"][1]["rejection"]))
        periods.append(period)

    runs = [_completed_run(h, p) for h, p in zip(handles, periods, strict=True)]
    # Bought now, after the run: billed on a later invoice, so the run's invoices stay as they are.
    purchases = [
        _purchase(h, s["id"], addon["id"], promo["code"])
        for h, s, addon, promo in zip(handles, subs, addons, promotions, strict=True)
    ]
    staffs = [_staff(app, runtime, h) for h in handles]
    # A top-up after the run: the line is prepaid from now on (a money balance and its first movement).
    for handle, sub in zip(handles, subs, strict=True):
        topped = handle.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "5.00"})
        assert topped.status_code == 201, topped.json
        cap = handle.api.request("PUT", f"/v1/subscriptions/{sub['id']}/spend-cap", {"amount": "50.00"})
        assert cap.status_code == 200, cap.json
    voucher_batches = [_voucher_batch(h, s["id"]) for h, s in zip(handles, subs, strict=True)]
    carrier = [_carrier_billing(app, h, s["id"]) for h, s in zip(handles, subs, strict=True)]
    worlds = []
    extras = list(zip(promotions, purchases, carrier, voucher_batches, strict=True))
    for handle, offer, cust, sub, period, run, endpoint, staff, (card_id, version_id), (
        usage_record_id,
        usage_rejection_id,
    ), (promo, purchase_id, (merchant_id, carrier_charge_id), voucher_batch_id) in zip(
        handles, offers, customers, subs, periods, runs, endpoints, staffs, rate_cards, usage_ids, extras, strict=True
    ):
        assert run["invoices_created"] == 1, run
        listed = handle.api.get("/v1/invoices", customer=cust["id"]).json["data"]
        assert len(listed) == 1, listed
        invoice_id = listed[0]["id"]
        self_care = register_app(handle.api, name=f"App of {handle.slug}")
        subscriber = subscriber_api(app.test_client(), self_care["id"], cust["email"])
        me = subscriber.get("/v1/me")
        assert me.status_code == 200, me.json
        worlds.append(
            World(
                tenant=handle,
                offer_id=offer["id"],
                offer_code=offer["code"],
                customer_id=cust["id"],
                customer_email=cust["email"],
                subscription_id=sub["id"],
                msisdn=sub["msisdn"],
                iccid=sub["iccid"],
                period=period,
                billing_run_id=run["id"],
                invoice_id=invoice_id,
                usage_record_id=usage_record_id,
                usage_rejection_id=usage_rejection_id,
                webhook_endpoint_id=endpoint["id"],
                webhook_url=endpoint["url"],
                webhook_delivery_id=_first_delivery(handle, endpoint["id"]),
                dead_letter_id=_dead_letter(runtime, handle.id, invoice_id),
                usage_file_id=_usage_file(runtime),
                staff_user_id=staff.user_id,
                staff_email=staff.email,
                staff_invitation_id=staff.invitation_id,
                app_id=self_care["id"],
                account_id=me.json["account"],
                subscriber=subscriber,
                rate_card_id=card_id,
                rate_card_version_id=version_id,
                offer_version_id=offer["current_version"]["id"],
                promotion_id=promo["id"],
                promotion_code=promo["code"],
                purchase_id=purchase_id,
                rerating_run_id=_rerating_run(runtime, handle, period, usage_record_id, invoice_id),
                merchant_id=merchant_id,
                carrier_charge_id=carrier_charge_id,
                voucher_batch_id=voucher_batch_id,
            )
        )
    return TwoTenants(worlds[0], worlds[1])


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[str]:
    """A local endpoint that accepts every webhook (so deliveries succeed and leave no retries behind)."""
    receiver = Flask("isolation-webhook-receiver")

    @receiver.post("/hook/<slug>")
    def hook(slug: str) -> tuple[str, int]:
        return "", 204

    with live_server(receiver) as url:
        yield f"{url}/hook"


@pytest.fixture(scope="session")
def two_tenants(app: Flask, runtime: Runtime, operator: Operator, live_url: str, webhook_receiver: str) -> TwoTenants:
    """Tenants A and B, each with one object of every kind (the live server runs the activations)."""
    return _build_worlds(app, runtime, operator, webhook_receiver)


def contains_any(text: str, ids: dict[str, str]) -> list[str]:
    """The names of the ids that occur in `text`."""
    return sorted(name for name, value in ids.items() if value in text)
