"""A sandbox tenant's test scenarios, each driven end to end: API, worker, network and SM-DP+ simulators."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest
from flask import Flask
from sqlalchemy import update

from mvne.infra.runtime import Runtime
from mvne.tenants.models import Counter
from tests.support.api import (
    ApiCaller,
    Operator,
    TenantHandle,
    customer,
    make_tenant,
    published_offer,
    wait_for,
)


@pytest.fixture
def sandbox(app: Flask, operator: Operator, live_url: str) -> TenantHandle:
    return make_tenant(app.test_client(), operator, status="onboarding")


def order(api: ApiCaller, scenario: str | None) -> dict[str, Any]:
    """A line ordered with the test scenario, followed until its activation ends (active or failed)."""
    offer = published_offer(api, code=f"S-{secrets.token_hex(3)}")
    buyer = customer(api)
    body = {"customer": buyer["id"], "offer": offer["id"], "sim_type": "esim"}
    if scenario is not None:
        body["test_scenario"] = scenario
    ordered = api.post("/v1/subscriptions", body)
    assert ordered.status_code == 202, ordered.json
    assert ordered.json["test_scenario"] == scenario

    def settled() -> dict[str, Any] | None:
        sub: dict[str, Any] = api.get(f"/v1/subscriptions/{ordered.json['id']}").json
        return sub if sub["status"] != "pending" else None

    return wait_for(settled, what=f"the activation of {ordered.json['id']}")


def download(live_url: str, iccid: str) -> dict[str, Any]:
    """Play the subscriber's phone downloading the eSIM, on the sandbox's SM-DP+ simulator."""
    response = httpx.post(f"{live_url}/sim/smdp/sim-admin/profiles/{iccid}/download", json={}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def esim_state(api: ApiCaller, sub_id: str, wanted: str) -> str:
    return wait_for(
        lambda: (state := api.get(f"/v1/subscriptions/{sub_id}").json["esim"]["state"]) == wanted and state,
        what=f"the eSIM of {sub_id} to be {wanted}",
    )


def events_of(api: ApiCaller, kind: str) -> list[dict[str, Any]]:
    return [e for e in api.get("/v1/events", limit=100).json["data"] if e["type"] == kind]


def test_the_sandbox_publishes_its_test_numbers_devices_and_scenarios(
    sandbox: TenantHandle, operator: Operator
) -> None:
    published = sandbox.api.get("/v1/sandbox/test-numbers")

    assert published.status_code == 200, published.json
    block = operator.api.get(f"/v1/tenants/{sandbox.id}").json["number_range"]
    prefix = block["first"][:-4]
    assert published.json["sandbox"] is True
    assert published.json["test_msisdns"] == {"first": f"{prefix}9900", "last": f"{prefix}9999", "size": 100}
    scenarios = {s["name"]: s for s in published.json["scenarios"]}
    assert list(scenarios) == ["always_succeeds", "provisioning_fails", "esim_download_fails"]
    assert scenarios["provisioning_fails"]["msisdns"] == published.json["test_msisdns"]
    devices = [d["eid"] for d in published.json["test_devices"]]
    assert scenarios["always_succeeds"]["device_eid"] == devices[0]
    assert scenarios["esim_download_fails"]["device_eid"] == devices[1]
    assert "/sim-admin/profiles/{iccid}/download" in published.json["device_download"]


def test_always_succeeds_activates_the_line_and_the_test_device_installs_it(
    sandbox: TenantHandle, live_url: str
) -> None:
    api = sandbox.api
    sub = order(api, "always_succeeds")

    assert sub["status"] == "active", sub
    assert int(sub["msisdn"][-4:]) < 9900
    assert sub["esim"]["state"] == "released"
    device = api.get("/v1/sandbox/test-numbers").json["test_devices"][0]["eid"]
    downloaded = download(live_url, sub["iccid"])
    assert (downloaded["eid"], downloaded["state"]) == (device, "Installed")
    assert esim_state(api, sub["id"], "installed") == "installed"
    assert [e["data"]["eid"] for e in events_of(api, "esim.installed")] == [device]


def test_provisioning_fails_ends_the_line_failed_on_a_test_number(sandbox: TenantHandle) -> None:
    api = sandbox.api
    sub = order(api, "provisioning_fails")

    assert sub["status"] == "failed", sub
    assert sub["failure_code"] == "network_test_msisdn_refused"
    assert "test_msisdn_refused" in sub["failure_reason"]
    assert sub["msisdn"] == api.get("/v1/sandbox/test-numbers").json["test_msisdns"]["first"]
    assert sub["activated_at"] is None
    [failed] = events_of(api, "subscription.failed")
    assert (failed["object_id"], failed["data"]["code"]) == (sub["id"], "network_test_msisdn_refused")

    # The next test line takes the next test number; an ordinary line, an ordinary one.
    second = order(api, "provisioning_fails")
    assert (second["status"], second["msisdn"][-4:]) == ("failed", "9901")
    ordinary = order(api, None)
    assert ordinary["status"] == "active", ordinary
    assert ordinary["msisdn"][-4:] == "0001"


def test_esim_download_fails_reports_the_failed_download_of_an_active_line(
    sandbox: TenantHandle, live_url: str
) -> None:
    api = sandbox.api
    sub = order(api, "esim_download_fails")
    assert sub["status"] == "active", sub

    # Whatever the caller asks of the simulated phone, the failing test device does not install the profile.
    response = httpx.post(
        f"{live_url}/sim/smdp/sim-admin/profiles/{sub['iccid']}/download", json={"outcome": "installed"}, timeout=30
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "Error"

    assert esim_state(api, sub["id"], "error") == "error"
    [failed] = events_of(api, "esim.download_failed")
    assert failed["data"]["iccid"] == sub["iccid"]
    assert (failed["data"]["subject_code"], failed["data"]["reason_code"]) == ("8.2.10", "4.2")
    assert not events_of(api, "esim.installed")


def test_a_live_tenant_may_not_use_test_scenarios(tenant: TenantHandle) -> None:
    api = tenant.api
    offer = published_offer(api)
    buyer = customer(api)
    body = {"customer": buyer["id"], "offer": offer["id"], "sim_type": "esim", "test_scenario": "always_succeeds"}

    refused = api.post("/v1/subscriptions", body)

    assert (refused.status_code, refused.json["code"]) == (422, "sandbox_only"), refused.json
    assert list(refused.json["errors"]) == ["test_scenario"]
    assert api.get("/v1/subscriptions").json["data"] == []
    assert api.get("/v1/sandbox/test-numbers").json["sandbox"] is False


def test_an_unknown_scenario_is_refused(sandbox: TenantHandle) -> None:
    offer = published_offer(sandbox.api)
    buyer = customer(sandbox.api)
    body = {"customer": buyer["id"], "offer": offer["id"], "sim_type": "esim", "test_scenario": "always_fails"}
    refused = sandbox.api.post("/v1/subscriptions", body)
    assert refused.status_code == 422, refused.json
    assert list(refused.json["errors"]) == ["test_scenario"]


def test_ordinary_lines_never_take_a_test_number(tenant: TenantHandle, runtime: Runtime) -> None:
    # As if 9,899 lines had been handed out already: the next ordinary line finds the block full.
    first = order(tenant.api, None)
    assert first["status"] == "active", first
    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(Counter).where(Counter.tenant_id == tenant.id, Counter.name.startswith("msisdn:")).values(value=9899)
        )

    full = order(tenant.api, None)

    assert (full["status"], full["failure_code"]) == ("failed", "number_range_exhausted"), full
    assert full["msisdn"] is None
