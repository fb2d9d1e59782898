"""Every usage record ends exactly once as rated, duplicate or rejected; rejections are kept, fixed and re-rated."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import threading
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from mvne.charging import usage_files as usage_files_module
from mvne.charging.models import BalanceBucket, UsageFile, UsageRecord, UsageRejection
from mvne.charging.usage import UsageInput, ingest_usage
from mvne.charging.usage_files import discover_usage_files, ingest_usage_file
from mvne.esim.models import Sim
from mvne.infra.runtime import Runtime
from mvne.provisioning.models import Subscription
from mvne.provisioning.simulator import emit_usage_file
from mvne.provisioning.usage_files import UsageFileRecord
from mvne.tenants.models import Event, Tenant
from tests.support.api import ApiCaller, TenantHandle, active_subscription, customer, published_offer, wait_for

MB = 1_000_000


@pytest.fixture
def line(tenant: TenantHandle) -> dict[str, Any]:
    """An active line on an offer of 1000 MB, 60 min and 10 SMS; 0.01 per MB, 0.20 per minute beyond."""
    offer = published_offer(tenant.api, code=f"OUT-{secrets.token_hex(3)}")
    return active_subscription(tenant.api, customer(tenant.api)["id"], offer["id"])


def at(sub: dict[str, Any], seconds: int = 60) -> str:
    return (dt.datetime.fromisoformat(sub["activated_at"]) + dt.timedelta(seconds=seconds)).isoformat()


def data(record_id: str, sub: dict[str, Any], mb: int = 10, **changes: Any) -> dict[str, Any]:
    record = {"record_id": record_id, "subscription": sub["id"], "service": "data", "started_at": at(sub)}
    return {**record, "volume": mb * MB, **changes}


def send(api: ApiCaller, *records: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/usage-records", {"records": list(records)})
    assert response.status_code == 200, response.json
    return dict(response.json)


def outcomes(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["record_id"], r["outcome"]) for r in result["records"]]


def stored(runtime: Runtime, tenant_id: str) -> tuple[int, int, int]:
    """Usage records, rejections and balance units used, as the database holds them."""
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        records = session.scalar(select(func.count()).select_from(UsageRecord)) or 0
        rejections = session.scalar(select(func.count()).select_from(UsageRejection)) or 0
        used = session.scalar(select(func.coalesce(func.sum(BalanceBucket.used), 0))) or 0
    return records, rejections, used


def events(runtime: Runtime, tenant_id: str, type_: str) -> list[dict[str, Any]]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        return [e.data for e in session.scalars(select(Event).where(Event.type == type_).order_by(Event.id))]


def test_duplicates_in_one_batch_and_across_batches_are_counted_once_and_name_the_accepted_record(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    first = send(tenant.api, data("d1", line), data("d1", line), data("d2", line))
    again = send(tenant.api, data("d2", line), data("d3", line))

    assert outcomes(first) == [("d1", "rated"), ("d1", "duplicate"), ("d2", "rated")]
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (2, 1, [])
    assert first["records"][1]["usage_record"] == first["records"][0]["usage_record"]
    assert outcomes(again) == [("d2", "duplicate"), ("d3", "rated")]
    assert again["records"][0]["usage_record"] == first["records"][2]["usage_record"]
    assert stored(runtime, tenant.id) == (3, 0, 30 * MB)
    listed = tenant.api.get("/v1/usage-records", subscription=line["id"], service="data").json["data"]
    assert sorted(r["record_id"] for r in listed) == ["d1", "d2", "d3"]


def test_each_bad_record_gets_its_reason_code_and_is_kept_while_the_good_ones_are_rated(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    now = dt.datetime.now(dt.UTC)
    batch = [
        data("ok", line),
        {**data("ghost", line), "subscription": None, "msisdn": "+33780009998"},
        data("early", line, started_at=at(line, seconds=-3600)),
        data("negative", line, volume=-5),
        data("huge", line, volume=11 * 10**12),
        {**data("long-call", line), "service": "voice", "volume": None, "duration": 25 * 3600},
        {**data("no-sms", line), "service": "sms", "volume": None, "count": 0},
        {**data("spam", line), "service": "sms", "volume": None, "count": 101},
        {**data("ussd", line), "service": "ussd"},
        data("later", line, started_at=(now + dt.timedelta(days=1)).isoformat()),
        data("ancient", line, started_at=(now - dt.timedelta(days=400)).isoformat()),
    ]

    result = send(tenant.api, *batch)

    assert result["accepted"] == 1
    assert [(r["record_id"], r["code"]) for r in result["rejected"]] == [
        ("ghost", "unknown_line"),
        ("early", "line_not_active_then"),
        ("negative", "invalid_quantity"),
        ("huge", "invalid_quantity"),
        ("long-call", "invalid_quantity"),
        ("no-sms", "invalid_quantity"),
        ("spam", "invalid_quantity"),
        ("ussd", "unknown_service"),
        ("later", "in_the_future"),
        ("ancient", "too_old"),
    ]
    assert stored(runtime, tenant.id) == (1, 10, 10 * MB)
    listed = tenant.api.get("/v1/usage-rejections", limit=100).json
    assert sorted(r["record_id"] for r in listed["data"]) == sorted(r["record_id"] for r in result["rejected"])
    invalid = tenant.api.get("/v1/usage-rejections", reason="invalid_quantity", source="api").json["data"]
    assert {r["record_id"] for r in invalid} == {"negative", "huge", "long-call", "no-sms", "spam"}
    one = tenant.api.get(f"/v1/usage-rejections/{result['rejected'][3]['rejection']}").json
    assert (one["status"], one["raw"]["quantity"], one["position"]) == ("open", 11 * 10**12, 4)
    assert "10000000000000" in one["reason_detail"]
    # One event for the batch, not one per record.
    reasons = {"unknown_line": 1, "line_not_active_then": 1, "invalid_quantity": 5, "unknown_service": 1}
    reasons |= {"in_the_future": 1, "too_old": 1}
    assert events(runtime, tenant.id, "usage.rejected") == [{"count": 10, "source": "api", "reasons": reasons}]


def test_a_record_sent_again_still_wrong_updates_its_open_rejection_instead_of_adding_one(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    first = send(tenant.api, data("bad", line, volume=-1))
    again = send(tenant.api, data("bad", line, service="ussd"), data("bad", line, volume=-2))

    assert first["rejected"][0]["rejection"] == again["rejected"][0]["rejection"] == again["rejected"][1]["rejection"]
    assert stored(runtime, tenant.id) == (0, 1, 0)
    kept = tenant.api.get(f"/v1/usage-rejections/{first['rejected'][0]['rejection']}").json
    assert (kept["reason_code"], kept["raw"]["quantity"]) == ("invalid_quantity", -2)


def test_a_rejected_record_is_fixed_and_re_rated_exactly_once_and_explains_itself(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    # 61 minutes of voice against 60 included: 60 seconds of overage at 0.20 a minute, then 7 seconds more.
    send(tenant.api, {**data("call-1", line), "service": "voice", "volume": None, "duration": 3660})
    rejected = send(tenant.api, {**data("call-2", line), "service": "voice", "volume": None, "duration": -7})
    rejection_id = rejected["rejected"][0]["rejection"]

    still_wrong = tenant.api.post(f"/v1/usage-rejections/{rejection_id}/rerate")
    assert still_wrong.status_code == 422, still_wrong.json
    assert still_wrong.json["code"] == "usage_still_rejected"
    assert still_wrong.json["errors"] == {"reason_code": ["invalid_quantity"]}

    fixed = tenant.api.request("PATCH", f"/v1/usage-rejections/{rejection_id}", {"quantity": 7})
    assert fixed.status_code == 200, fixed.json
    assert (fixed.json["status"], fixed.json["record"]["quantity"], fixed.json["raw"]["quantity"]) == ("open", 7, -7)
    rerated = tenant.api.post(f"/v1/usage-rejections/{rejection_id}/rerate")
    twice = tenant.api.post(f"/v1/usage-rejections/{rejection_id}/rerate")
    resent = send(tenant.api, {**data("call-2", line), "service": "voice", "volume": None, "duration": 7})

    assert rerated.status_code == 200, rerated.json
    assert (twice.status_code, twice.json["code"]) == (409, "usage_rejection_resolved")
    assert outcomes(resent) == [("call-2", "duplicate")]
    assert resent["records"][0]["usage_record"] == rerated.json["id"]
    explained = tenant.api.get(f"/v1/usage-records/{rerated.json['id']}").json
    assert explained == rerated.json
    assert explained["record_id"] == "call-2"
    assert explained["offer"]["overage_price"] == "0.20"
    assert explained["offer"]["priced_unit"] == "minute"
    assert explained["allowance"] == {"before": 0, "used": 0, "after": 0}
    assert (explained["overage_quantity"], explained["overage_unit_price"]) == (7, "0.20")
    assert explained["amount_exact"] == "0.02333333333333333333"
    assert explained["amount"] == "0.023333"
    resolved = tenant.api.get(f"/v1/usage-rejections/{rejection_id}").json
    assert (resolved["status"], resolved["usage_record"]) == ("fixed", rerated.json["id"])
    assert tenant.api.get("/v1/usage-rejections").json["data"] == []
    assert [r["id"] for r in tenant.api.get("/v1/usage-rejections", status="fixed").json["data"]] == [rejection_id]
    assert events(runtime, tenant.id, "usage.rerated") == [{"record_id": "call-2", "usage_record": rerated.json["id"]}]
    assert stored(runtime, tenant.id)[0] == 2


def test_the_allowance_before_and_after_a_record_are_kept_with_it(tenant: TenantHandle, line: dict[str, Any]) -> None:
    result = send(tenant.api, data("a", line, mb=600), data("b", line, mb=600))

    first, second = (tenant.api.get(f"/v1/usage-records/{r['usage_record']}").json for r in result["records"])
    assert first["allowance"] == {"before": 1000 * MB, "used": 600 * MB, "after": 400 * MB}
    assert second["allowance"] == {"before": 400 * MB, "used": 400 * MB, "after": 0}
    assert (second["overage_quantity"], second["amount_exact"], second["amount"]) == (200 * MB, "2", "2.00")
    assert second["offer"]["code"].startswith("OUT-")
    assert (second["period"], second["invoice"]) == (first["period"], None)


def test_a_record_accepted_meanwhile_resolves_its_rejection_as_a_duplicate(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    rejection_id = send(tenant.api, data("late-fix", line, volume=-1))["rejected"][0]["rejection"]
    accepted = send(tenant.api, data("late-fix", line))

    resolved = tenant.api.get(f"/v1/usage-rejections/{rejection_id}").json
    assert (resolved["status"], resolved["usage_record"]) == ("duplicate", accepted["records"][0]["usage_record"])
    rerated = tenant.api.post(f"/v1/usage-rejections/{rejection_id}/rerate")
    assert (rerated.status_code, rerated.json["code"]) == (409, "usage_rejection_resolved")
    assert stored(runtime, tenant.id) == (1, 1, 10 * MB)


def test_re_rates_racing_the_same_records_sent_again_charge_each_record_once(
    app: Flask, runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    ids = [f"race-{n}" for n in range(6)]
    rejected = send(tenant.api, *(data(i, line, volume=-1) for i in ids))
    rejection_ids = [r["rejection"] for r in rejected["rejected"]]
    for rejection_id in rejection_ids:
        fixed = tenant.api.request("PATCH", f"/v1/usage-rejections/{rejection_id}", {"quantity": 100 * MB})
        assert fixed.status_code == 200, fixed.json
    answers: list[int] = []
    errors: list[BaseException] = []

    def rerate_all() -> None:
        try:
            api = ApiCaller(app.test_client(), tenant.api.token)
            answers.extend(api.post(f"/v1/usage-rejections/{r}/rerate").status_code for r in rejection_ids)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def send_again() -> None:
        try:
            api = ApiCaller(app.test_client(), tenant.api.token)
            answers.append(api.post("/v1/usage-records", {"records": [data(i, line, mb=100) for i in ids]}).status_code)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=rerate_all), threading.Thread(target=send_again)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert set(answers) <= {200, 409}, answers
    assert stored(runtime, tenant.id) == (6, 6, 600 * MB)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        records = dict(session.execute(select(UsageRecord.record_id, UsageRecord.id)).all())
        kept = session.execute(select(UsageRejection.record_id, UsageRejection.status, UsageRejection.usage_record_id))
        for record_id, status, usage_record_id in kept:
            assert status in ("fixed", "duplicate"), (record_id, status)
            assert usage_record_id == records[record_id]


def test_a_failed_batch_writes_neither_its_records_nor_its_rejections(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    started = dt.datetime.fromisoformat(line["activated_at"]) + dt.timedelta(minutes=1)
    batch = [
        UsageInput("good", "data", started, 10 * MB, subscription_id=line["id"]),
        UsageInput("bad", "data", started, -1, subscription_id=line["id"]),
    ]

    seen: list[tuple[int, int]] = []

    def rate_then_fail() -> None:
        with runtime.db.transaction(tenant_id=tenant.id) as session:
            owner = session.get(Tenant, tenant.id)
            assert owner is not None
            result = ingest_usage(session, owner, batch, source="test")
            seen.append((result.accepted, len(result.rejected)))
            raise RuntimeError("the batch fails after rating")

    with pytest.raises(RuntimeError):
        rate_then_fail()

    assert seen == [(1, 1)]

    assert stored(runtime, tenant.id) == (0, 0, 0)
    assert events(runtime, tenant.id, "usage.rejected") == []


def test_a_rejection_is_discarded_once_and_cannot_be_changed_after(tenant: TenantHandle, line: dict[str, Any]) -> None:
    rejection_id = send(tenant.api, data("drop-me", line, volume=-1))["rejected"][0]["rejection"]

    discarded = tenant.api.post(f"/v1/usage-rejections/{rejection_id}/discard")
    assert (discarded.status_code, discarded.json["status"]) == (200, "discarded")
    for method, path, body in [
        ("POST", f"/v1/usage-rejections/{rejection_id}/discard", None),
        ("POST", f"/v1/usage-rejections/{rejection_id}/rerate", None),
        ("PATCH", f"/v1/usage-rejections/{rejection_id}", {"quantity": 1}),
    ]:
        answer = tenant.api.request(method, path, body)
        assert (answer.status_code, answer.json["code"]) == (409, "usage_rejection_resolved"), (method, path)
    assert [r["id"] for r in tenant.api.get("/v1/usage-rejections", status="all").json["data"]] == [rejection_id]


def test_another_tenant_sees_none_of_the_rejections_or_records(
    tenant: TenantHandle, other_tenant: TenantHandle, line: dict[str, Any]
) -> None:
    result = send(tenant.api, data("mine", line), data("mine-bad", line, volume=-1))
    usage_id, rejection_id = result["records"][0]["usage_record"], result["records"][1]["rejection"]

    for path in (f"/v1/usage-records/{usage_id}", f"/v1/usage-rejections/{rejection_id}"):
        assert other_tenant.api.get(path).status_code == 404
    assert other_tenant.api.post(f"/v1/usage-rejections/{rejection_id}/rerate").status_code == 404
    assert other_tenant.api.get("/v1/usage-rejections", status="all").json["data"] == []
    assert other_tenant.api.get("/v1/usage-records").json["data"] == []


def test_a_usage_file_keeps_its_tenants_rejections_and_dropped_twice_charges_nothing_twice(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any]
) -> None:
    started = dt.datetime.fromisoformat(line["activated_at"]) + dt.timedelta(minutes=1)
    imsi = "208019999999999"
    tag = secrets.token_hex(3)
    cdr = {"msisdn": line["msisdn"], "imsi": imsi, "service": "sms", "started_at": started, "quantity": 1}
    records = [
        UsageFileRecord(**{**cdr, "service": "data", "quantity": 5 * MB}, record_id=f"f-{tag}-ok"),
        UsageFileRecord(**{**cdr, "started_at": started - dt.timedelta(days=1)}, record_id=f"f-{tag}-early"),
        UsageFileRecord(**{**cdr, "msisdn": "+33780009997"}, record_id=f"f-{tag}-nobody"),
    ]

    def ingested(key: str) -> UsageFile:
        discover_usage_files(runtime.db, runtime.storage)

        def processed() -> UsageFile | None:
            with runtime.db.transaction(platform=True) as session:
                found = session.scalar(select(UsageFile).where(UsageFile.key == key))
                return found if found is not None and found.status == "processed" else None

        usage_file = wait_for(processed, what=f"usage file {key}")
        # The job run again changes nothing.
        ingest_usage_file(runtime.db, runtime.storage, usage_file.id)
        return usage_file

    first = ingested(emit_usage_file(runtime.storage, "outcomes", records))
    kept = tenant.api.get("/v1/usage-rejections", source=f"file:{first.key}").json["data"]
    again = ingested(emit_usage_file(runtime.storage, "outcomes", records))

    assert (first.accepted, first.duplicates, first.rejected) == (1, 0, 2)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1, 2)
    # The line no tenant owns stays on the file's own report.
    assert any("+33780009997" in error["reason"] for error in first.errors)
    assert [(r["record_id"], r["reason_code"], r["raw"]["imsi"]) for r in kept] == [
        (f"f-{tag}-early", "line_not_active_then", imsi)
    ]
    # Seen again in the second file, the same record still has one open rejection, now from that file.
    assert [r["source"] for r in tenant.api.get("/v1/usage-rejections", limit=100).json["data"]] == [
        f"file:{again.key}"
    ]
    assert stored(runtime, tenant.id) == (1, 1, 5 * MB)


def test_usage_files_of_the_documented_cdr_schema_in_csv_and_json_lines_are_rated_chunk_by_chunk(
    runtime: Runtime, tenant: TenantHandle, line: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage_files_module, "FILE_CHUNK", 2)  # a small file then spans several chunks
    started = at(line)
    tag = secrets.token_hex(3)
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        imsi = session.scalar(
            select(Sim.imsi).join(Subscription, Subscription.sim_id == Sim.id).where(Subscription.id == line["id"])
        )
    csv_file = "\n".join(
        [
            "record_id,imsi,msisdn,service,started_at,duration_s,volume_bytes,called_number,visited_plmn,rating_group",
            f"c-{tag}-1,,{line['msisdn']},voice,{started},61,,+33612345678,20801,",
            f"c-{tag}-2,{imsi},,data,{started},,{3 * MB},,20810,32",
            f"c-{tag}-3,,{line['msisdn']},data,{started},,lots,,,",
            f"c-{tag}-4,,{line['msisdn']},sms,{started},,,+33612345678,,",
            f"c-{tag}-1,,{line['msisdn']},voice,{started},61,,+33612345678,20801,",
            "not,a,record",
        ]
    )
    json_lines = "\n".join(
        [
            json.dumps({"record_id": f"j-{tag}-1", "msisdn": line["msisdn"], "service": "data", "started_at": started}
                       | {"volume_bytes": MB}),
            json.dumps({"record_id": f"j-{tag}-2", "imsi": imsi, "service": "voice", "started_at": started}
                       | {"duration_s": -4}),
            "[1, 2]",
        ]
    )  # fmt: skip
    runtime.storage.put(f"usage/incoming/cdrnet/{tag}.csv", csv_file.encode())
    runtime.storage.put(f"usage/incoming/cdrnet/{tag}.jsonl", json_lines.encode())

    def processed() -> list[UsageFile] | None:
        discover_usage_files(runtime.db, runtime.storage)
        with runtime.db.transaction(platform=True) as session:
            files = list(
                session.scalars(
                    select(UsageFile)
                    .where(UsageFile.key.like(f"usage/incoming/cdrnet/{tag}.%"))
                    .order_by(UsageFile.key)
                )
            )
        return files if len(files) == 2 and all(f.status == "processed" for f in files) else None

    csv_report, json_report = wait_for(processed, what="the two usage files")

    assert (csv_report.records, csv_report.accepted, csv_report.duplicates, csv_report.rejected) == (6, 3, 1, 2)
    assert (json_report.records, json_report.accepted, json_report.rejected) == (3, 1, 2)
    kept = {r["record_id"]: r for r in tenant.api.get("/v1/usage-rejections", limit=100).json["data"]}
    assert sorted(kept) == [f"c-{tag}-3", f"j-{tag}-2"]
    malformed = kept[f"c-{tag}-3"]
    assert (malformed["reason_code"], malformed["position"], malformed["raw"]["volume_bytes"]) == (
        "malformed",
        4,
        "lots",
    )
    assert kept[f"j-{tag}-2"]["reason_code"] == "invalid_quantity"
    assert kept[f"j-{tag}-2"]["raw"]["subscription"] == line["id"]  # found by its IMSI
    rated = tenant.api.get("/v1/usage-records", subscription=line["id"], limit=100).json["data"]
    assert sorted((r["record_id"], r["quantity"]) for r in rated) == [
        (f"c-{tag}-1", 61), (f"c-{tag}-2", 3 * MB), (f"c-{tag}-4", 1), (f"j-{tag}-1", MB)
    ]  # fmt: skip

    fixed = tenant.api.request("PATCH", f"/v1/usage-rejections/{malformed['id']}", {"quantity": 2 * MB})
    assert fixed.status_code == 200, fixed.json
    rerated = tenant.api.post(f"/v1/usage-rejections/{malformed['id']}/rerate")
    assert (rerated.status_code, rerated.json["record_id"], rerated.json["quantity"]) == (200, f"c-{tag}-3", 2 * MB)
