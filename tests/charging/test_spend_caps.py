"""Spend caps of a line and of a customer: online charging stops or throttles at exactly the cap."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

import pytest

from mvne.charging.online.credit import OnlineCharging
from mvne.charging.online.ledger import drain
from mvne.charging.online.messages import Result, UnitRequest
from mvne.charging.online.service import online_charging
from mvne.infra.runtime import Runtime
from tests.charging.test_online_charging import MB, Session, grant, records_of
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on
from tests.support.api import TenantHandle, active_subscription, customer, published_offer


@pytest.fixture
def charging(runtime: Runtime) -> OnlineCharging:
    return online_charging(runtime)


def capped(tenant: TenantHandle, path: str, amount: str, action: str = "stop") -> dict[str, Any]:
    response = tenant.api.request("PUT", f"{path}/spend-cap", {"amount": amount, "action": action})
    assert response.status_code == 200, response.json
    return dict(response.json)


def test_a_line_s_cap_stops_online_charging_at_exactly_the_cap(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)  # postpaid, 0.01 per MB
    set_cap = capped(tenant, f"/v1/subscriptions/{sub['id']}", "0.50")
    first, second, third = Session(charging, sub), Session(charging, sub), Session(charging, sub)

    a = first.open(UnitRequest(1, requested=30 * MB))
    b = second.open(UnitRequest(1, requested=30 * MB))
    c = third.open(UnitRequest(1, requested=MB))
    first.release(UnitRequest(1, used=30 * MB))
    second.release(UnitRequest(1, used=20 * MB))
    drain(runtime.db, charging.store)
    shown = tenant.api.get(f"/v1/subscriptions/{sub['id']}/spend-cap").json

    assert (set_cap["amount"], set_cap["action"], set_cap["spent"], set_cap["remaining"]) == (
        "0.50",
        "stop",
        "0.00",
        "0.50",
    )
    assert (grant(a).granted, grant(a).final_unit) == (30 * MB, None)
    assert grant(b).granted == 20 * MB
    assert grant(b).final_unit is not None
    assert grant(b).final_unit.action == "terminate"
    assert grant(c).result == Result.CREDIT_LIMIT_REACHED
    assert sum(r.amount for r in records_of(runtime, tenant, sub)) == Decimal("0.50")
    assert (shown["spent"], shown["remaining"]) == ("0.50", "0.00")


def test_a_customer_s_cap_over_two_lines_throttles_the_one_that_reaches_it(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    offer = published_offer(tenant.api, code=f"CAP-{secrets.token_hex(3)}", allowances=NOTHING_INCLUDED)
    owner = customer(tenant.api)
    one = active_subscription(tenant.api, owner["id"], offer["id"])
    two = active_subscription(tenant.api, owner["id"], offer["id"])
    capped(tenant, f"/v1/customers/{owner['id']}", "0.30", "throttle")

    on_one = Session(charging, one).open(UnitRequest(1, requested=20 * MB))
    on_two = Session(charging, two).open(UnitRequest(1, requested=20 * MB))
    again = Session(charging, two).open(UnitRequest(1, requested=MB))

    assert grant(on_one).granted == 20 * MB
    assert grant(on_two).granted == 10 * MB
    assert grant(on_two).final_unit is not None
    assert grant(on_two).final_unit.action == "restrict_access"
    assert grant(again).result == Result.CREDIT_LIMIT_REACHED
    assert grant(again).final_unit is not None
    assert grant(again).final_unit.action == "restrict_access"


def test_what_the_period_already_spent_counts_against_a_cap(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    posted = tenant.api.post(
        "/v1/usage-records",
        {
            "records": [
                {
                    "record_id": f"r-{secrets.token_hex(4)}",
                    "subscription": sub["id"],
                    "service": "data",
                    "started_at": sub["activated_at"],
                    "volume": 40 * MB,
                }
            ]
        },
    )
    assert posted.status_code == 200, posted.json
    assert capped(tenant, f"/v1/subscriptions/{sub['id']}", "0.50")["remaining"] == "0.10"

    opened = Session(charging, sub).open(UnitRequest(1, requested=30 * MB))

    assert grant(opened).granted == 10 * MB


def test_a_cap_set_during_a_session_bounds_its_next_grant(
    runtime: Runtime, tenant: TenantHandle, charging: OnlineCharging
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    session = Session(charging, sub)
    assert grant(session.open(UnitRequest(1, requested=30 * MB))).granted == 30 * MB

    capped(tenant, f"/v1/subscriptions/{sub['id']}", "0.45")
    more = session.update(UnitRequest(1, used=30 * MB, requested=30 * MB))
    removed = tenant.api.request("DELETE", f"/v1/subscriptions/{sub['id']}/spend-cap")
    freed = session.update(UnitRequest(1, used=15 * MB, requested=30 * MB))

    assert grant(more).granted == 15 * MB
    assert removed.status_code == 204
    assert tenant.api.get(f"/v1/subscriptions/{sub['id']}/spend-cap").json["amount"] is None
    assert grant(freed).granted == 30 * MB


def test_a_bad_cap_is_refused_with_a_reason(tenant: TenantHandle) -> None:
    sub = line_on(tenant.api)
    for body in (
        {"amount": "-1"},
        {"amount": 5},
        {"amount": "5", "action": "slow"},
        {"amount": "2000000"},
        {"amount": "5\x00"},
    ):
        refused = tenant.api.request("PUT", f"/v1/subscriptions/{sub['id']}/spend-cap", body)
        assert refused.status_code == 422, (body, refused.json)
    missing = tenant.api.request("PUT", "/v1/subscriptions/sub_nothing/spend-cap", {"amount": "5"})
    assert (missing.status_code, missing.json["code"]) == (404, "subscription_not_found")
