"""A tenant's eSIM pool grows: operators add profiles (API and CLI), and sandbox pools top themselves up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import func, select

from mvne.esim import service as esim
from mvne.esim.models import Sim, SimBatch
from mvne.infra.crypto import SecretBox
from mvne.infra.runtime import Runtime
from mvne.tenants.models import Event
from tests.support.api import Operator, TenantHandle, wait_for

MVNE = Path(sys.executable).with_name("mvne")


def box(runtime: Runtime) -> SecretBox:
    return SecretBox.from_setting(runtime.settings.sim_key)


def replenished_events(runtime: Runtime, tenant_id: str) -> list[dict[str, object]]:
    with runtime.db.transaction(platform=True) as session:
        rows = session.scalars(
            select(Event).where(Event.tenant_id == tenant_id, Event.type == "esim_pool.replenished").order_by(Event.id)
        ).all()
        return [dict(row.data) for row in rows]


def smdp_knows(live_url: str, iccid: str) -> bool:
    return httpx.get(f"{live_url}/sim/smdp/sim-admin/profiles/{iccid}", timeout=10).status_code == 200


def test_an_operator_grows_a_tenant_pool_and_the_sandbox_smdp_gets_the_profiles(
    operator: Operator, tenant: TenantHandle, runtime: Runtime, live_url: str
) -> None:
    before = operator.api.get(f"/v1/tenants/{tenant.id}").json["esim_pool"]

    grown = operator.api.post(f"/v1/tenants/{tenant.id}/esim-pool", {"count": 25})

    assert grown.status_code == 201, grown.json
    assert grown.json["added"] == 25
    assert grown.json["available"] == before["available"] + 25
    assert operator.api.get(f"/v1/tenants/{tenant.id}").json["esim_pool"]["available"] == before["available"] + 25
    [event] = replenished_events(runtime, tenant.id)
    assert (event["batch"], event["added"], event["reason"]) == (grown.json["batch"], 25, "operator")
    with runtime.db.transaction(platform=True) as session:
        batch = session.get(SimBatch, grown.json["batch"])
        assert batch is not None
        last = session.scalars(select(Sim.iccid).where(Sim.batch_id == batch.id).order_by(Sim.iccid.desc())).first()
    assert last is not None
    wait_for(lambda: smdp_knows(live_url, last), what="the new profiles in the sandbox SM-DP+")


def test_growing_a_pool_is_bounded_scoped_and_needs_a_known_tenant(
    operator: Operator, tenant: TenantHandle, runtime: Runtime
) -> None:
    for count in (0, -1, 10_001, "many"):
        refused = operator.api.post(f"/v1/tenants/{tenant.id}/esim-pool", {"count": count})
        assert refused.status_code == 422, (count, refused.json)
        assert "count" in refused.json["errors"]
    assert operator.api.post("/v1/tenants/ten_unknown/esim-pool", {"count": 5}).status_code == 404
    assert tenant.api.post(f"/v1/tenants/{tenant.id}/esim-pool", {"count": 5}).status_code in (401, 403)
    assert replenished_events(runtime, tenant.id) == []


def test_the_hundred_and_first_reservation_succeeds_once_the_sandbox_pool_topped_itself_up(
    tenant: TenantHandle, runtime: Runtime, live_url: str
) -> None:
    reserved: list[str] = []
    for _ in range(100):
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            reserved.append(esim.reserve_sim(session).iccid)
    assert len(set(reserved)) == 100

    # Under the low-water mark each reservation asked for a top-up; the worker ran it.
    topped = wait_for(lambda: replenished_events(runtime, tenant.id), what="the sandbox top-up")
    assert [(e["reason"], e["added"]) for e in topped] == [("sandbox_top_up", esim.SANDBOX_TOP_UP)]
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        hundred_and_first = esim.reserve_sim(session)
        assert hundred_and_first.iccid not in reserved
        assert hundred_and_first.batch_id == topped[0]["batch"]
    wait_for(lambda: smdp_knows(live_url, hundred_and_first.iccid), what="the top-up in the sandbox SM-DP+")
    with runtime.db.transaction(platform=True) as session:
        summary = esim.pool_summary(session, tenant.id)
    assert (summary.available, summary.reserved) == (esim.SANDBOX_TOP_UP - 1, 101)


def test_a_pool_is_topped_up_only_below_its_low_water_mark_and_once(tenant: TenantHandle, runtime: Runtime) -> None:
    with runtime.db.transaction(platform=True) as session:
        assert esim.replenish_pool(session, tenant_id=tenant.id, box=box(runtime), low_water=100, top_up=5) is None
        assert tenant.id not in esim.tenants_below(session, low_water=100)
        assert tenant.id in esim.tenants_below(session, low_water=101)
        batch = esim.replenish_pool(session, tenant_id=tenant.id, box=box(runtime), low_water=101, top_up=5)
        assert batch is not None
        assert batch.size == 5
        # Now 105 are available: the same check asks for nothing more.
        assert esim.replenish_pool(session, tenant_id=tenant.id, box=box(runtime), low_water=101, top_up=5) is None
        assert esim.pool_summary(session, tenant.id).available == 105
    assert [e["added"] for e in replenished_events(runtime, tenant.id)] == [5]


def test_the_grow_pool_command_adds_profiles_to_a_tenant_named_by_slug(
    tenant: TenantHandle, runtime: Runtime, tmp_path: Path
) -> None:
    settings = runtime.settings
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MVNE_")}
    environ.update(
        MVNE_VAR_DIR=str(settings.var_dir),
        MVNE_DATABASE_URL=settings.database_url,
        MVNE_PORT=str(settings.port),
        MVNE_SIM_KEY=settings.sim_key,
        MVNE_LOG_LEVEL="WARNING",
    )
    if settings.platform_database_url:
        environ["MVNE_PLATFORM_DATABASE_URL"] = settings.platform_database_url

    done = subprocess.run(
        [str(MVNE), "operator", "grow-pool", "--tenant", tenant.slug, "--count", "7"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    unknown = subprocess.run(
        [str(MVNE), "operator", "grow-pool", "--tenant", "no-such-brand", "--count", "7"],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert (printed["tenant"], printed["added"], printed["esim_pool"]["available"]) == (tenant.id, 7, 107)
    with runtime.db.transaction(platform=True) as session:
        count = session.scalar(select(func.count(Sim.id)).where(Sim.tenant_id == tenant.id))
    assert count == 107
    assert [e["added"] for e in replenished_events(runtime, tenant.id)] == [7]
    assert unknown.returncode != 0
    assert "Traceback" not in unknown.stderr
