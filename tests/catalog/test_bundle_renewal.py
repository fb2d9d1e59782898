"""A bundle renews at the end of each term until it is cancelled or its line ends; each term is billed once."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from mvne.catalog.models import OfferPurchase
from mvne.charging.billing import invoice_customer, invoice_lines
from mvne.charging.models import BalanceBucket
from mvne.charging.purchases import purchase_offer, queue_due_renewals, renew_purchase
from mvne.charging.usage import period_of, period_window
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Event, Tenant
from tests.platform.problems import assert_problem
from tests.support.api import OFFER, TenantHandle, active_subscription, customer, published_offer, wait_for

MB = 1_000_000
BUNDLE = {
    **OFFER,
    "code": "TRAVEL",
    "name": "Travel bundle",
    "kind": "bundle",
    "price": "9.00",
    "allowances": {"data_mb": 2000},
}
ADDON = {**OFFER, "code": "ONCE", "name": "One week", "kind": "addon", "price": "3.00", "validity_days": 7}


def bought(runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], offer_id: str, at: dt.datetime) -> str:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        return purchase_offer(session, subscription_id=line["id"], offer_id=offer_id, now=at).id


def purchases(tenant: TenantHandle, line: dict[str, Any]) -> list[dict[str, Any]]:
    listed = tenant.api.get(f"/v1/subscriptions/{line['id']}/purchases")
    assert listed.status_code == 200, listed.json
    return list(listed.json)


def zone_of_tenant(runtime: Runtime, tenant: TenantHandle) -> ZoneInfo:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        return ZoneInfo(session.get_one(Tenant, tenant.id).timezone)


def this_period(runtime: Runtime, tenant: TenantHandle) -> tuple[dt.datetime, dt.datetime]:
    """Where the tenant's current billing period starts and ends."""
    timezone = zone_of_tenant(runtime, tenant).key
    return period_window(period_of(dt.datetime.now(dt.UTC), timezone), timezone)


def term_buckets(runtime: Runtime, tenant: TenantHandle, purchase_id: str) -> list[tuple[int | None, dt.datetime]]:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        rows = session.execute(
            select(BalanceBucket.granted, BalanceBucket.valid_from).where(BalanceBucket.purchase_id == purchase_id)
        )
        return [(granted, valid_from) for granted, valid_from in rows]


def test_an_ended_term_is_renewed_by_the_worker_once_from_its_end_and_both_terms_are_billed(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    bundle = published_offer(tenant.api, **BUNDLE)
    account = customer(tenant.api)
    line = active_subscription(tenant.api, account["id"], published_offer(tenant.api)["id"])
    start, end = this_period(runtime, tenant)
    # Bought during the last period: its term ended with it; the renewal's is this period.
    first_id = bought(runtime, tenant, line, bundle["id"], start - dt.timedelta(days=3))

    assert queue_due_renewals(runtime.db) >= 1
    renewed = wait_for(lambda: (found := purchases(tenant, line)) and len(found) == 2 and found, what="the renewal")
    first, second = sorted(renewed, key=lambda p: p["valid_from"])

    assert first["id"] == first_id
    assert (first["renews"], second["renews"], second["renewed_from_id"]) == (False, True, first_id)
    assert [dt.datetime.fromisoformat(second[k]) for k in ("valid_from", "valid_to")] == [start, end]
    assert dt.datetime.fromisoformat(first["valid_to"]) == start
    assert term_buckets(runtime, tenant, second["id"]) == [(2000 * MB, start)]
    # Asked again (the periodic look, a job delivered twice): nothing more.
    queue_due_renewals(runtime.db)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert renew_purchase(session, first_id) is None
        assert renew_purchase(session, second["id"]) is None  # not ended yet
        renewed_events = session.scalars(select(Event.object_id).where(Event.type == "purchase.renewed")).all()
    assert renewed_events == [second["id"]]
    assert len(purchases(tenant, line)) == 2

    period = tenant.api.get(f"/v1/customers/{account['id']}/upcoming-invoice").json["period"]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        invoice = invoice_customer(session, tenant_id=tenant.id, customer_id=account["id"], period=period)
        assert invoice is not None
        billed = [line.amount for line in invoice_lines(session, invoice.id) if line.kind == "purchase"]
    assert billed == [Decimal("9.00"), Decimal("9.00")]


def test_a_renewal_takes_the_version_on_sale_when_the_term_ends(runtime: Runtime, tenant: TenantHandle) -> None:
    bundle = published_offer(tenant.api, **BUNDLE)
    line = active_subscription(tenant.api, customer(tenant.api)["id"], published_offer(tenant.api)["id"])
    first_id = bought(runtime, tenant, line, bundle["id"], dt.datetime.now(dt.UTC))
    # From tomorrow in the tenant's time zone: in force when this term ends, at the latest at the next period.
    starts = dt.datetime.now(zone_of_tenant(runtime, tenant)).date() + dt.timedelta(days=1)
    version = tenant.api.post(
        f"/v1/offers/{bundle['id']}/versions",
        {
            "price": "11.00",
            "allowances": [{"service": "data", "zone": "home", "amount": 3000}],
            "usage_prices": {"home": {"data": "0.01", "voice": "0.20", "sms": "0.10"}},
            "effective_from": starts.isoformat(),
        },
    )
    assert version.status_code == 201, version.json
    assert tenant.api.post(f"/v1/offers/{bundle['id']}/versions/{version.json['id']}/publish").status_code == 200

    first = tenant.api.get(f"/v1/subscriptions/{line['id']}/purchases/{first_id}").json
    ended = dt.datetime.fromisoformat(first["valid_to"]) + dt.timedelta(minutes=1)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert renew_purchase(session, first_id, now=ended - dt.timedelta(minutes=2)) is None  # not ended yet
        renewal = renew_purchase(session, first_id, now=ended)
        assert renewal is not None
        terms = (renewal.offer_version_id, renewal.price, renewal.renewed_from_id)
    assert terms == (version.json["id"], Decimal("11.00"), first_id)
    assert term_buckets(runtime, tenant, renewal.id) == [(3000 * MB, dt.datetime.fromisoformat(first["valid_to"]))]


def test_a_cancelled_bundle_runs_to_the_end_of_its_term_and_is_not_renewed(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    bundle = published_offer(tenant.api, **BUNDLE)
    addon = published_offer(tenant.api, **ADDON)
    line = active_subscription(tenant.api, customer(tenant.api)["id"], published_offer(tenant.api)["id"])
    first_id = bought(runtime, tenant, line, bundle["id"], dt.datetime.now(dt.UTC))
    addon_id = bought(runtime, tenant, line, addon["id"], dt.datetime.now(dt.UTC))
    path = f"/v1/subscriptions/{line['id']}/purchases"

    cancelled = tenant.api.post(f"{path}/{first_id}/cancel")
    again = tenant.api.post(f"{path}/{first_id}/cancel")

    assert cancelled.status_code == 200, cancelled.json
    assert (cancelled.json["renews"], cancelled.json["renewal_stopped"]) == (False, "cancelled")
    assert again.json == cancelled.json
    ended = dt.datetime.fromisoformat(cancelled.json["valid_to"]) + dt.timedelta(minutes=1)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert renew_purchase(session, first_id, now=ended) is None
    assert sorted(p["id"] for p in purchases(tenant, line)) == sorted([first_id, addon_id])
    assert_problem(tenant.api.post(f"{path}/{addon_id}/cancel"), 409, "purchase_not_renewing")
    assert_problem(tenant.api.post(f"{path}/pur_01J00000000000000000000000/cancel"), 404, "purchase_not_found")
    assert_problem(tenant.api.get(f"{path}/pur_01J00000000000000000000000"), 404, "purchase_not_found")


def test_a_bundle_whose_line_ended_stops_renewing_and_says_why(runtime: Runtime, tenant: TenantHandle) -> None:
    bundle = published_offer(tenant.api, **BUNDLE)
    line = active_subscription(tenant.api, customer(tenant.api)["id"], published_offer(tenant.api)["id"])
    first_id = bought(runtime, tenant, line, bundle["id"], dt.datetime.now(dt.UTC))
    # No route ends a line yet: the line is marked ended the way its row would say so.
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        ended = session.get_one(Subscription, line["id"])
        ended.status, ended.terminated_at = "terminated", dt.datetime.now(dt.UTC)

    with runtime.db.transaction(tenant_id=tenant.id) as session:
        stopped = session.get_one(OfferPurchase, first_id)
        assert renew_purchase(session, first_id, now=stopped.valid_to + dt.timedelta(minutes=1)) is None
        state = (stopped.renews, stopped.renewal_stopped)
    assert state == (False, "line_ended")
    assert_problem(
        tenant.api.post(f"/v1/subscriptions/{line['id']}/purchases/{first_id}/cancel"), 409, "purchase_not_renewing"
    )
