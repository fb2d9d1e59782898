"""Promotions: codes unique whatever their case, refused with a reason, and a last slot redeemed once."""

from __future__ import annotations

import threading
from typing import Any

from mvne.catalog.errors import PromotionExhausted
from mvne.catalog.promotions import redeem
from mvne.infra.runtime import Runtime
from tests.platform.problems import assert_problem
from tests.support.api import TenantHandle, customer, published_offer


def order(tenant: TenantHandle, offer_id: str, **extra: Any) -> Any:
    account = customer(tenant.api)
    return tenant.api.post(
        "/v1/subscriptions", {"customer": account["id"], "offer": offer_id, "sim_type": "esim", **extra}
    )


def test_codes_are_unique_whatever_their_case_and_bad_codes_are_refused_with_a_reason(tenant: TenantHandle) -> None:
    offer = published_offer(tenant.api)
    other = published_offer(tenant.api, code="OTHER")
    made = tenant.api.post("/v1/promotions", {"code": "Spring", "kind": "percent", "value": "15", "cycles": 3})
    assert made.status_code == 201, made.json
    assert_problem(
        tenant.api.post("/v1/promotions", {"code": "SPRING", "kind": "amount", "value": "1"}),
        409,
        "promotion_code_taken",
    )
    assert_problem(
        tenant.api.post("/v1/promotions", {"code": "BIG", "kind": "percent", "value": "150"}), 422, "invalid_promotion"
    )
    assert tenant.api.post("/v1/promotions", {"code": "N\u0000", "kind": "amount", "value": "1"}).status_code == 422
    tenant.api.post(
        "/v1/promotions",
        {"code": "ONLY-OTHER", "kind": "amount", "value": "1", "offer_ids": [other["id"]]},
    )
    tenant.api.post(
        "/v1/promotions",
        {"code": "OVER", "kind": "amount", "value": "1", "valid_until": "2001-01-01T00:00:00Z"},
    )

    assert_problem(order(tenant, offer["id"], promotion_code="NOPE"), 422, "promotion_unknown")
    assert_problem(order(tenant, offer["id"], promotion_code="only-other"), 422, "promotion_not_applicable")
    assert_problem(order(tenant, offer["id"], promotion_code="over"), 422, "promotion_expired")
    assert order(tenant, offer["id"], promotion_code="spring").status_code == 202
    assert tenant.api.get(f"/v1/promotions/{made.json['id']}").json["redemptions"] == 1

    disabled = tenant.api.post(f"/v1/promotions/{made.json['id']}/disable")
    assert disabled.json["status"] == "disabled"
    assert_problem(order(tenant, offer["id"], promotion_code="spring"), 422, "promotion_expired")
    assert [p["code"] for p in tenant.api.get("/v1/promotions").json["data"]] == ["Spring", "ONLY-OTHER", "OVER"]


def test_two_redemptions_racing_for_the_last_slot_give_one_success(runtime: Runtime, tenant: TenantHandle) -> None:
    offer = published_offer(tenant.api)
    promo = tenant.api.post("/v1/promotions", {"code": "LAST", "kind": "amount", "value": "1", "max_redemptions": 2})
    assert order(tenant, offer["id"], promotion_code="LAST").status_code == 202
    lines = [order(tenant, offer["id"]).json["id"] for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def redeem_for(line_id: str) -> None:
        try:
            with runtime.db.transaction(tenant_id=tenant.id) as session:
                barrier.wait(timeout=10)
                redeem(session, code="last", offer_id=offer["id"], subscription_id=line_id)
            outcomes.append("redeemed")
        except PromotionExhausted:
            outcomes.append("exhausted")

    threads = [threading.Thread(target=redeem_for, args=(line_id,)) for line_id in lines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["exhausted", "redeemed"]
    assert tenant.api.get(f"/v1/promotions/{promo.json['id']}").json["redemptions"] == 2
    assert_problem(order(tenant, offer["id"], promotion_code="LAST"), 422, "promotion_exhausted")
