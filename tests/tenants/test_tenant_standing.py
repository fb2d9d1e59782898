"""Operators suspend, resume and offboard tenants: the API refuses a suspended tenant's clients while its
subscribers keep service; offboarding exports every row and object of the tenant, then erases them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

import httpx
from sqlalchemy import func, select, update

from mvne.charging.models import UsageRecord
from mvne.infra.db import tenant_owned_tables
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.provisioning.models import Subscription
from mvne.tenants import offboarding
from mvne.tenants.models import Customer, Tenant
from mvne.tenants.offboarding import export_prefix, tenant_tables
from tests.platform.problems import assert_problem
from tests.support.api import (
    Operator,
    TenantHandle,
    active_subscription,
    customer,
    make_tenant,
    published_offer,
    token_for,
    wait_for,
)


def _rows_of(runtime: Runtime, tenant_id: str) -> dict[str, int]:
    """How many rows of the tenant each table holds (the tenant row itself under `tenants`)."""
    with runtime.db.transaction(platform=True) as session:
        counts = {
            entry.table.name: int(
                session.scalar(
                    select(func.count()).select_from(entry.table).where(entry.table.c.tenant_id == tenant_id)
                )
                or 0
            )
            for entry in tenant_tables()
        }
        counts["tenants"] = int(session.scalar(select(func.count()).where(Tenant.id == tenant_id)) or 0)
    return counts


def _populated(tenant: TenantHandle) -> dict[str, Any]:
    """A tenant with an offer, two customers, an active eSIM line (its QR code stored), usage and a webhook."""
    offer = published_offer(tenant.api)
    sub = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    customer(tenant.api, name="Grace Hopper")
    usage = tenant.api.post(
        "/v1/usage-records",
        {
            "records": [
                {"record_id": f"u-{n}", "subscription": sub["id"], "service": "sms", "started_at": sub["activated_at"]}
                for n in range(3)
            ]
        },
    )
    assert usage.status_code == 200, usage.json
    assert usage.json["accepted"] == 3, usage.json
    hook = tenant.api.post("/v1/webhook-endpoints", {"url": "http://127.0.0.1:9/hooks"})
    assert hook.status_code == 201, hook.json
    return sub


def _suspend(operator: Operator, tenant_id: str, reason: str | None = None) -> Any:
    return operator.api.post(f"/v1/tenants/{tenant_id}/suspend", {"reason": reason} if reason else None)


def test_a_suspended_tenant_is_refused_by_its_api_until_resumed_while_others_are_served(
    operator: Operator, tenant: TenantHandle, other_tenant: TenantHandle, app: Any
) -> None:
    assert tenant.api.get("/v1/customers").status_code == 200

    suspended = _suspend(operator, tenant.id, "Unpaid platform fees")
    assert suspended.status_code == 200, suspended.json
    assert (suspended.json["status"], suspended.json["suspension_reason"]) == ("suspended", "Unpaid platform fees")
    since = suspended.json["suspended_at"]
    assert since is not None

    for method, path, body in (
        ("GET", "/v1/customers", None),
        ("GET", "/v1/offers", None),
        ("POST", "/v1/offers", {"code": "X"}),
        ("GET", "/v1/events", None),
    ):
        refused = tenant.api.request(method, path, body)
        problem = assert_problem(refused, 403, "tenant_suspended")
        assert since[:19] in problem["detail"], problem
        assert "support" in problem["detail"], problem
    # Its clients may still get tokens (the API refuses them); the other tenant is not affected.
    fresh = tenant.api.with_token(token_for(app.test_client(), tenant.client_id, tenant.secret))
    assert_problem(fresh.get("/v1/customers"), 403, "tenant_suspended")
    assert other_tenant.api.get("/v1/customers").status_code == 200
    # Operators see the standing.
    assert operator.api.get(f"/v1/tenants/{tenant.id}").json["status"] == "suspended"
    assert operator.api.get(f"/v1/tenants/{other_tenant.id}").json["status"] == "active"

    assert_problem(_suspend(operator, tenant.id), 409, "tenant_already_suspended")

    resumed = operator.api.post(f"/v1/tenants/{tenant.id}/resume")
    assert resumed.status_code == 200, resumed.json
    assert (resumed.json["status"], resumed.json["suspended_at"], resumed.json["suspension_reason"]) == (
        "active",
        None,
        None,
    )
    assert tenant.api.get("/v1/customers").status_code == 200
    assert_problem(operator.api.post(f"/v1/tenants/{tenant.id}/resume"), 409, "tenant_not_suspended")
    assert_problem(operator.api.post(f"/v1/tenants/{tenant.id}/offboard"), 409, "tenant_not_suspended")
    assert_problem(operator.api.post("/v1/tenants/ten_missing/suspend"), 404, "tenant_not_found")

    events = [e["type"] for e in tenant.api.get("/v1/events", limit=100).json["data"]]
    assert sorted(e for e in events if e in ("tenant.suspended", "tenant.resumed")) == [
        "tenant.resumed",
        "tenant.suspended",
    ]
    others = [e["type"] for e in other_tenant.api.get("/v1/events", limit=100).json["data"]]
    assert not {"tenant.suspended", "tenant.resumed"} & set(others), others


def test_a_sandbox_suspended_before_its_launch_resumes_as_a_sandbox(operator: Operator, app: Any) -> None:
    sandbox = make_tenant(app.test_client(), operator, status="onboarding")
    assert _suspend(operator, sandbox.id, "Checking the founder's identity").status_code == 200

    resumed = operator.api.post(f"/v1/tenants/{sandbox.id}/resume")

    assert resumed.status_code == 200, resumed.json
    assert resumed.json["status"] == "onboarding"
    assert resumed.json["launched_at"] is None
    assert sandbox.api.get("/v1/onboarding").json["status"] == "onboarding"
    events = {e["type"]: e["data"] for e in sandbox.api.get("/v1/events", limit=100).json["data"]}
    assert events["tenant.suspended"]["from"] == "onboarding"
    assert events["tenant.resumed"] == {"to": "onboarding"}


def test_a_tenant_client_cannot_suspend_any_tenant(operator: Operator, tenant: TenantHandle) -> None:
    refused = tenant.api.post(f"/v1/tenants/{tenant.id}/suspend", {"reason": "a rival"})
    assert refused.status_code == 403, refused.json
    assert operator.api.get(f"/v1/tenants/{tenant.id}").json["status"] == "active"


def test_a_suspended_tenants_lines_stay_active_and_network_usage_is_still_rated(
    runtime: Runtime, settings: Settings, operator: Operator, tenant: TenantHandle
) -> None:
    offer = published_offer(tenant.api)
    sub = active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])
    assert _suspend(operator, tenant.id, "review").status_code == 200

    emitted = httpx.post(
        f"{settings.network_url}/usage/emit",
        json={
            "msisdns": [sub["msisdn"]],
            "sms": 4,
            "voice_minutes": 2,
            "start": sub["activated_at"],
            "interval_minutes": 0,
        },
        timeout=30,
    )
    assert emitted.status_code == 201, emitted.text

    def rated() -> list[tuple[str, int]] | None:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            rows = session.execute(
                select(UsageRecord.service, func.sum(UsageRecord.quantity))
                .where(UsageRecord.subscription_id == sub["id"])
                .group_by(UsageRecord.service)
                .order_by(UsageRecord.service)
            ).all()
        totals = [(service, int(total)) for service, total in rows]
        return totals if totals == [("sms", 4), ("voice", 120)] else None

    wait_for(rated, what="the network's usage file to be rated")
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        assert session.scalar(select(Subscription.status).where(Subscription.id == sub["id"])) == "active"
    assert_problem(tenant.api.get(f"/v1/subscriptions/{sub['id']}/usage"), 403, "tenant_suspended")


def test_offboarding_exports_every_tenant_row_then_erases_them_and_leaves_a_tombstone(
    runtime: Runtime, operator: Operator, tenant: TenantHandle, other_tenant: TenantHandle, app: Any
) -> None:
    _populated(tenant)
    customer(other_tenant.api)
    assert _suspend(operator, tenant.id, "contract ended").status_code == 200
    before = _rows_of(runtime, tenant.id)
    others_before = _rows_of(runtime, other_tenant.id)
    objects = runtime.storage.list(f"tenants/{tenant.id}/")
    for table in (
        "customers",
        "offers",
        "subscriptions",
        "sims",
        "phone_numbers",
        "usage_records",
        "events",
        "balance_buckets",
        "webhook_endpoints",
        "api_clients",
        "number_blocks",
        "sim_batches",
    ):
        assert before[table] > 0, (table, before)  # fmt: skip
    assert any(key.endswith(".svg") for key in objects), objects

    asked = operator.api.post(f"/v1/tenants/{tenant.id}/offboard")
    assert asked.status_code == 202, asked.json
    assert asked.json["status"] in ("offboarding", "offboarded")
    done = wait_for(
        lambda: (t := operator.api.get(f"/v1/tenants/{tenant.id}").json)["status"] == "offboarded" and t,
        what="the offboarding job",
    )
    assert done["offboarded_at"] is not None
    assert done["export_location"] == f"exports/tenants/{tenant.id}/manifest.json"

    # The export: one file per table, every table holding tenant rows, each with the rows counted before.
    manifest = json.loads(runtime.storage.get(done["export_location"]))
    files = {f["table"]: f for f in manifest["files"]}
    platform_tables = {e.table.name for e in tenant_tables() if not e.owned}
    assert set(files) == set(tenant_owned_tables()) | platform_tables | {"tenants"}
    # The job ledger (the offboarding job's own row) and the audit log (the operator's reads of the tenant
    # while waiting) move on; every other table was still.
    ledger = {"outbox_messages", "dead_letters", "audit_events"}
    assert {name: f["rows"] for name, f in files.items() if name not in ledger} == {
        name: n for name, n in before.items() if name not in ledger
    }
    for name, entry in files.items():
        if name in ledger:
            continue
        data = runtime.storage.get(entry["key"])
        assert entry["key"] == f"exports/tenants/{tenant.id}/{name}.jsonl"
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        lines = data.decode().splitlines()
        assert len(lines) == before[name], name
        assert all(json.loads(line).get("tenant_id", tenant.id) == tenant.id for line in lines), name
    assert json.loads(runtime.storage.get(files["tenants"]["key"]))["id"] == tenant.id
    assert "secret_hash" not in runtime.storage.get(files["api_clients"]["key"]).decode()
    assert "ki_encrypted" not in runtime.storage.get(files["sims"]["key"]).decode()
    assert "secret_encrypted" not in runtime.storage.get(files["webhook_endpoints"]["key"]).decode()
    exported_objects = {o["source"]: o["key"] for o in manifest["objects"]}
    assert set(exported_objects) == set(objects)
    for source, key in exported_objects.items():
        assert key == f"{export_prefix(tenant.id)}objects/{source.removeprefix(f'tenants/{tenant.id}/')}"
        assert runtime.storage.exists(key)

    # The erasure: nothing of the tenant is left but its tombstone, the retired number and SIM ranges and
    # the append-only audit log.
    after = _rows_of(runtime, tenant.id)
    kept = {"tenants", "number_blocks", "sim_batches", "outbox_messages", "dead_letters", "audit_events"}
    assert {name: n for name, n in after.items() if name not in kept and n} == {}
    assert (after["tenants"], after["number_blocks"], after["sim_batches"]) == (
        1,
        before["number_blocks"],
        before["sim_batches"],
    )
    assert runtime.storage.list(f"tenants/{tenant.id}/") == []
    others_after = _rows_of(runtime, other_tenant.id)
    assert {k: v for k, v in others_after.items() if k not in {"outbox_messages", "events"}} == {
        k: v for k, v in others_before.items() if k not in {"outbox_messages", "events"}
    }
    assert other_tenant.api.get("/v1/customers").status_code == 200
    # Its clients are gone: no token, and a token issued before is refused.
    refused = app.test_client().post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_id": tenant.client_id, "client_secret": tenant.secret},
    )
    assert refused.status_code in (400, 401), refused.json
    # A token issued before: refused, as its client is gone (401) or its tenant offboarded (403).
    stale = tenant.api.get("/v1/customers")
    assert (stale.status_code, stale.json["code"]) in ((401, "unauthenticated"), (403, "tenant_suspended")), stale.json
    for path in ("suspend", "resume", "offboard"):
        assert_problem(operator.api.post(f"/v1/tenants/{tenant.id}/{path}"), 409, "tenant_offboarded")

    # The job run again (a delivery after it finished) changes nothing.
    offboarding.offboard_tenant(runtime.db, runtime.storage, tenant.id)
    assert _rows_of(runtime, tenant.id) == after
    assert json.loads(runtime.storage.get(done["export_location"])) == manifest


def _mark_offboarding(runtime: Runtime, tenant_id: str) -> None:
    """The state the offboarding request leaves, without queueing the job (the test runs it in its place)."""
    with runtime.db.transaction(platform=True) as session:
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(status="offboarding"))


def test_offboarding_resumed_after_a_killed_worker_finishes_without_loss_or_duplicates(
    runtime: Runtime, operator: Operator, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    _populated(tenant)
    assert _suspend(operator, tenant.id).status_code == 200
    _mark_offboarding(runtime, tenant.id)
    others_before = _rows_of(runtime, other_tenant.id)

    # A first worker exported half the tables, then died: nothing was erased, no export recorded.
    half = tenant_tables()[: len(tenant_tables()) // 2]
    for entry in half:
        runtime.storage.put(f"{export_prefix(tenant.id)}{entry.table.name}.jsonl", b'{"stale":true}\n' * 7)
    # A second one finished the export and recorded it, then died before erasing anything; meanwhile
    # rows kept arriving for the tenant (its usage is still rated): a customer the export lacks.
    offboarding.export_tenant(runtime.db, runtime.storage, tenant.id)
    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(Tenant)
            .where(Tenant.id == tenant.id)
            .values(export_location=f"{export_prefix(tenant.id)}manifest.json")
        )
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        session.add(
            Customer(
                id=f"cus_late{secrets.token_hex(4)}",
                name="Late",
                email="late@example.com",
                address={"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "FR"},
            )
        )
    before = _rows_of(runtime, tenant.id)

    finished = offboarding.offboard_tenant(runtime.db, runtime.storage, tenant.id)
    again = offboarding.offboard_tenant(runtime.db, runtime.storage, tenant.id)

    assert finished is not None
    assert again is not None
    assert (finished.status, again.offboarded_at) == ("offboarded", finished.offboarded_at)
    manifest = json.loads(runtime.storage.get(f"{export_prefix(tenant.id)}manifest.json"))
    assert {f["table"]: f["rows"] for f in manifest["files"]} == before
    customers = runtime.storage.get(f"{export_prefix(tenant.id)}customers.jsonl").decode().splitlines()
    assert len(customers) == before["customers"] == 3
    assert sum(json.loads(c)["name"] == "Late" for c in customers) == 1
    for entry in half:
        assert b"stale" not in runtime.storage.get(f"{export_prefix(tenant.id)}{entry.table.name}.jsonl")
    after = _rows_of(runtime, tenant.id)
    assert after["customers"] == after["subscriptions"] == after["usage_records"] == after["api_clients"] == 0
    assert _rows_of(runtime, other_tenant.id) == others_before
