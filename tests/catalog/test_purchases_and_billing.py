"""Purchases make their buckets at once; invoices bill fees by version, one-time charges, purchases, discounts
and tax categories, with exact totals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from mvne.charging.billing import invoice_customer, invoice_lines
from mvne.charging.models import BalanceBucket
from mvne.infra.runtime import Runtime
from tests.platform.problems import assert_problem
from tests.support.api import OFFER, ApiCaller, TenantHandle, active_subscription, customer, published_offer, wait_for

MB = 1_000_000
ADDON = {
    **OFFER,
    "code": "EXTRA",
    "name": "Extra data",
    "kind": "addon",
    "price": "5.00",
    "allowances": {"data_mb": 1000},
    "zone_allowances": [{"service": "data", "zone": "eu", "amount": 500, "priority": 10}],
    "validity_days": 7,
    "tax_category": "zero",
}


def buckets(runtime: Runtime, tenant: TenantHandle, sub_id: str) -> list[BalanceBucket]:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        found = session.scalars(
            select(BalanceBucket).where(BalanceBucket.subscription_id == sub_id).order_by(BalanceBucket.zone)
        ).all()
        session.expunge_all()
        return list(found)


def promotion(api: ApiCaller, **body: Any) -> dict[str, Any]:
    created = api.post("/v1/promotions", body)
    assert created.status_code == 201, created.json
    return dict(created.json)


def test_a_purchase_makes_its_buckets_for_its_validity_and_is_idempotent(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    plan = published_offer(tenant.api)
    addon = published_offer(tenant.api, **ADDON)
    line = active_subscription(tenant.api, customer(tenant.api)["id"], plan["id"])
    path = f"/v1/subscriptions/{line['id']}/purchases"

    first = tenant.api.post(path, {"offer_id": addon["id"]}, key="buy-1")
    again = tenant.api.post(path, {"offer_id": addon["id"]}, key="buy-1")

    assert first.status_code == 201, first.json
    assert again.json["id"] == first.json["id"]
    assert [p["id"] for p in tenant.api.get(path).json] == [first.json["id"]]
    made = buckets(runtime, tenant, line["id"])
    purchased = [b for b in made if b.origin == "addon"]
    assert [(b.zone, b.granted, b.priority) for b in purchased] == [("eu", 500 * MB, 10), ("home", 1000 * MB, 100)]
    assert {b.origin_key for b in purchased} == {
        f"purchase:{first.json['id']}:data:eu",
        f"purchase:{first.json['id']}:data:home",
    }
    assert all(b.valid_to - b.valid_from == dt.timedelta(days=7) for b in purchased)
    assert_problem(tenant.api.post(path, {"offer_id": plan["id"]}), 409, "offer_kind_mismatch")
    assert tenant.api.post(path, {"offer_id": "x\u0000"}).status_code == 422


def test_an_invoice_bills_fee_one_time_charges_purchases_and_discounts_with_exact_tax(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    plan = published_offer(
        tenant.api,
        code="CHARGED",
        charges=[
            {"code": "activation", "name": "Activation", "amount": "10.00"},
            {"code": "sim", "name": "SIM card", "amount": "4.99", "tax_category": "exempt"},
        ],
    )
    addon = published_offer(tenant.api, **ADDON)
    promotion(tenant.api, code="Welcome10", kind="percent", value="10", cycles=2)
    promotion(tenant.api, code="ADDON150", kind="amount", value="1.50", offer_ids=[addon["id"]])
    account = customer(tenant.api)
    ordered = tenant.api.post(
        "/v1/subscriptions",
        {"customer": account["id"], "offer": plan["id"], "sim_type": "esim", "promotion_code": "welcome10"},
    )
    assert ordered.status_code == 202, ordered.json
    wait_for(
        lambda: tenant.api.get(f"/v1/subscriptions/{ordered.json['id']}").json["status"] == "active" or None,
        what="the line to activate",
    )
    bought = tenant.api.post(
        f"/v1/subscriptions/{ordered.json['id']}/purchases", {"offer_id": addon["id"], "promotion_code": "addon150"}
    )
    assert (bought.status_code, bought.json["discount"]) == (201, "1.50"), bought.json

    preview = tenant.api.get(f"/v1/customers/{account['id']}/upcoming-invoice").json
    period = preview["period"]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        invoice = invoice_customer(session, tenant_id=tenant.id, customer_id=account["id"], period=period)
        assert invoice is not None
        lines = [(line.kind, line.amount) for line in invoice_lines(session, invoice.id)]
        totals = (invoice.subtotal, invoice.tax, invoice.total)

    assert lines == [
        ("recurring", Decimal("20.00")),
        ("discount", Decimal("-2.00")),
        ("one_time", Decimal("10.00")),
        ("one_time", Decimal("4.99")),
        ("purchase", Decimal("5.00")),
        ("discount", Decimal("-1.50")),
        ("tax", Decimal("5.60")),  # 20% of the standard lines only: 20.00 - 2.00 + 10.00
    ]
    assert totals == (Decimal("36.49"), Decimal("5.60"), Decimal("42.09"))
    assert preview["total"] == "42.09", preview
    # The purchase and this cycle of the promotion are claimed: a preview no longer counts the purchase.
    assert tenant.api.get(f"/v1/subscriptions/{ordered.json['id']}/purchases").json[0]["invoice_id"] == invoice.id
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert invoice_customer(session, tenant_id=tenant.id, customer_id=account["id"], period=period) is None
