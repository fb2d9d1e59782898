"""Prepaid money balances: top-ups through the API, usage paid from them, never invoiced, and online grants."""

from __future__ import annotations

import secrets
from decimal import Decimal

from mvne.charging.online.messages import UnitRequest
from mvne.charging.online.service import online_charging
from mvne.infra.runtime import Runtime
from tests.charging.test_online_charging import MB, Session, grant, records_of
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on
from tests.support.api import TenantHandle


def test_a_top_up_makes_the_line_prepaid_and_is_made_once_per_idempotency_key(tenant: TenantHandle) -> None:
    sub = line_on(tenant.api)
    before = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances")
    key = secrets.token_hex(8)

    first = tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "10.00"}, key=key)
    again = tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "10.00"}, key=key)
    second = tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "2.5", "description": "Voucher"})
    after = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances")
    movements = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balance-movements")

    assert before.json["money"] is None
    assert first.status_code == 201, first.json
    assert again.json == first.json
    assert (first.json["kind"], first.json["amount"], first.json["balance_after"]) == ("top_up", "10.00", "10.00")
    assert second.json["balance_after"] == "12.50"
    assert after.json["money"] == {"amount": "12.50", "currency": "EUR"}
    assert [m["description"] for m in movements.json["data"]] == ["Top-up", "Voucher"]


def test_a_top_up_is_refused_with_a_reason(tenant: TenantHandle) -> None:
    sub = line_on(tenant.api)
    for amount in ("0", "-5.00", "1e3", 12, "100000.01", "1\x00"):
        refused = tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": amount})
        assert refused.status_code == 422, (amount, refused.json)
        assert refused.json["code"] in ("validation_failed", "invalid_top_up")
    missing = tenant.api.post("/v1/subscriptions/sub_nothing/top-ups", {"amount": "5.00"})
    assert (missing.status_code, missing.json["code"]) == (404, "subscription_not_found")


def test_usage_reported_as_records_is_paid_from_the_balance_and_never_invoiced(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "1.00"})
    posted = tenant.api.post(
        "/v1/usage-records",
        {
            "records": [
                {
                    "record_id": f"r-{secrets.token_hex(4)}",
                    "subscription": sub["id"],
                    "service": "data",
                    "started_at": sub["activated_at"],
                    "volume": volume,
                }
                for volume in (30 * MB, 150 * MB)
            ]
        },
    )
    assert posted.status_code == 200, posted.json
    balances = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances").json
    movements = tenant.api.get(f"/v1/subscriptions/{sub['id']}/balance-movements").json["data"]
    upcoming = tenant.api.get(f"/v1/customers/{sub['customer']}/upcoming-invoice")

    # Reported without asking first, the usage is charged in full: the balance goes below zero.
    assert balances["money"]["amount"] == "-0.80"
    assert [(m["kind"], m["amount"], m["records"]) for m in movements] == [("top_up", "1.00", 0), ("usage", "-1.80", 2)]
    assert all(r.prepaid for r in records_of(runtime, tenant, sub))
    events = tenant.api.get("/v1/events", limit=100).json["data"]
    exhausted = [e["data"] for e in events if e["type"] == "balance.money_exhausted"]
    assert exhausted == [{"subscription": sub["id"], "balance": "-0.80", "currency": "EUR"}]
    assert upcoming.status_code == 200, upcoming.json
    assert [line["kind"] for line in upcoming.json["lines"] if line["kind"].startswith("overage")] == []


def test_a_top_up_during_a_session_is_granted_at_its_next_update(runtime: Runtime, tenant: TenantHandle) -> None:
    charging = online_charging(runtime)
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "0.10"})
    session = Session(charging, sub)
    opened = session.open(UnitRequest(1, requested=20 * MB))
    assert (grant(opened).granted, grant(opened).final_unit is not None) == (10 * MB, True)

    tenant.api.post(f"/v1/subscriptions/{sub['id']}/top-ups", {"amount": "0.20"})
    more = session.update(UnitRequest(1, used=10 * MB, requested=20 * MB))

    assert (grant(more).granted, grant(more).final_unit) == (20 * MB, None)
    assert Decimal(tenant.api.get(f"/v1/subscriptions/{sub['id']}/balances").json["money"]["amount"]) == Decimal("0.30")
