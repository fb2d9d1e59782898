"""Nchf_ConvergedCharging over HTTP: a 5G core's create, update and release, and the refusals it gets."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import time
from decimal import Decimal
from typing import Any

from flask import Flask
from joserfc.jwk import RSAKey
from prometheus_client import REGISTRY

from mvne.charging.online.api import SCOPE, STANDING_TTL_S
from mvne.charging.online.ledger import drain
from mvne.charging.online.service import online_charging
from mvne.infra.runtime import Runtime
from mvne.platform.auth import OPERATOR_SCOPES
from mvne.tenants.service import issue_api_client
from tests.charging.test_online_charging import balance_of, prepaid, records_of
from tests.charging.test_rating_scenarios import NOTHING_INCLUDED, line_on
from tests.platform.test_auth import decoded, resigned
from tests.support.api import ApiCaller, Operator, TenantHandle, token_for

MB = 1_000_000
BASE = "/nchf-convergedcharging/v3/chargingdata"


def body(sequence: int, sub: dict[str, Any] | None = None, **units: Any) -> dict[str, Any]:
    usage = []
    for group, (want, used) in units.items():
        entry: dict[str, Any] = {"ratingGroup": int(group.removeprefix("rg"))}
        if want is not None:
            entry["requestedUnit"] = {"totalVolume": want}
        if used:
            entry["usedUnitContainer"] = [{"totalVolume": used, "localSequenceNumber": 1}]
        usage.append(entry)
    found: dict[str, Any] = {
        "nfConsumerIdentification": {
            "nodeFunctionality": "SMF",
            "nFName": "smf-test",
            "nFPLMNID": {"mcc": "001", "mnc": "01"},
        },
        "invocationTimeStamp": dt.datetime.now(dt.UTC).isoformat(),
        "invocationSequenceNumber": sequence,
        "multipleUnitUsage": usage,
        "someFieldOfALaterRelease": {"ignored": True},
    }
    if sub is not None:
        found["subscriberIdentifier"] = f"msisdn-{sub['msisdn'].lstrip('+')}"
        found["pDUSessionChargingInformation"] = {"chargingId": secrets.randbelow(2**31)}
    return found


def rg(units: dict[str, Any], group: str) -> dict[str, Any]:
    return next(u for u in units["multipleUnitInformation"] if u["ratingGroup"] == int(group.removeprefix("rg")))


def test_a_core_opens_updates_and_releases_a_session_and_the_use_is_charged(
    runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    sub = line_on(tenant.api, allowances=NOTHING_INCLUDED)
    prepaid(runtime, tenant, sub, "0.50")  # 50 MB
    api = operator.api

    created = api.post(BASE, body(0, sub, rg1=(30 * MB, None), rg2=(30 * MB, None)))
    assert created.status_code == 201, created.json
    location = created.headers["Location"]
    reference = location.rsplit("/", 1)[-1]
    assert location.endswith(f"{BASE}/{reference}")
    assert rg(created.json, "rg1") == {
        "resultCode": "SUCCESS",
        "ratingGroup": 1,
        "grantedUnit": {"totalVolume": 30 * MB},
        "validityTime": 3600,
    }
    assert rg(created.json, "rg2")["grantedUnit"] == {"totalVolume": 20 * MB}
    assert rg(created.json, "rg2")["finalUnitIndication"] == {"finalUnitAction": "TERMINATE"}
    assert created.json["invocationResult"] == {"failureHandling": "TERMINATE"}

    updated = api.post(f"{BASE}/{reference}/update", body(1, rg1=(10 * MB, 30 * MB), rg2=(MB, 20 * MB)))
    assert updated.status_code == 200, updated.json
    assert rg(updated.json, "rg1")["resultCode"] == "QUOTA_LIMIT_REACHED"
    assert rg(updated.json, "rg2")["resultCode"] == "QUOTA_LIMIT_REACHED"

    released = api.post(f"{BASE}/{reference}/release", body(2))
    assert released.status_code == 204
    again = api.post(f"{BASE}/{reference}/release", body(2))
    assert again.status_code == 204
    drain(runtime.db, online_charging(runtime).store)
    assert balance_of(runtime, tenant, sub) == Decimal("0")
    assert sorted(r.quantity for r in records_of(runtime, tenant, sub)) == [20 * MB, 30 * MB]


def test_refusals_are_problems_with_the_specifications_cause(
    app: Flask, runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    api = operator.api
    stranger = body(0, {"msisdn": "+99912345678"}, rg1=(MB, None))
    unknown = api.post(BASE, stranger)
    gone = api.post(f"{BASE}/{secrets.token_hex(16)}/update", body(1, rg1=(MB, 0)))
    no_subscriber = api.post(BASE, body(0, rg1=(MB, None)))
    hostile = body(0, {"msisdn": "+33600000000"}, rg1=(MB, None))
    hostile["invocationSequenceNumber"] = "1\x00"

    assert (unknown.status_code, unknown.json["cause"], unknown.json["code"]) == (
        403,
        "USER_UNKNOWN",
        "charging_user_unknown",
    )
    assert (gone.status_code, gone.json["cause"]) == (404, "SESSION_NOT_FOUND")
    assert (no_subscriber.status_code, no_subscriber.json["code"]) == (400, "charging_request_invalid")
    assert api.post(BASE, hostile).status_code == 422
    assert api.post(BASE, {"nfConsumerIdentification": "x"}).status_code == 422


def test_only_a_network_client_may_charge(tenant: TenantHandle, api: ApiCaller) -> None:
    as_tenant = tenant.api.post(BASE, body(0, {"msisdn": "+33600000000"}, rg1=(MB, None)))
    anonymous = api.post(BASE, body(0, {"msisdn": "+33600000000"}, rg1=(MB, None)))
    assert as_tenant.status_code == 403
    assert anonymous.status_code == 401


def test_a_revoked_network_client_is_refused_within_a_second(
    app: Flask, runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    with runtime.db.transaction(platform=True) as session:
        core = issue_api_client(session, tenant_id=None, name="core", scopes=[SCOPE], allowed=OPERATOR_SCOPES)
    client = app.test_client()
    network = ApiCaller(client, token_for(client, core.client_id, core.client_secret))
    sub = line_on(tenant.api)
    assert network.post(BASE, body(0, sub, rg1=(MB, None))).status_code == 201

    revoked = operator.api.post(f"/v1/operator/api-clients/{core.client_id}/revoke")
    assert revoked.status_code == 200, revoked.json
    time.sleep(STANDING_TTL_S + 0.1)

    refused = network.post(BASE, body(0, sub, rg1=(MB, None)))
    assert refused.status_code == 401


def test_a_network_token_the_process_remembers_is_refused_once_expired_and_never_when_altered(
    api: ApiCaller, runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    now = int(time.time())
    ours = RSAKey.import_key(runtime.settings.jwt_private_key)
    short = resigned(decoded(api, operator.api.token or ""), ours, iat=now, exp=now + 2)
    assert short is not None
    sub = line_on(tenant.api)

    first = api.with_token(short).post(BASE, body(0, sub, rg1=(MB, None)))
    altered = api.with_token(short[:-2] + ("AA" if not short.endswith("AA") else "BB")).post(
        BASE, body(0, sub, rg1=(MB, None))
    )
    time.sleep(2.5)
    late = api.with_token(short).post(BASE, body(0, sub, rg1=(MB, None)))

    assert first.status_code == 201, first.json
    assert altered.status_code == 401
    assert late.status_code == 401


def test_the_front_refuses_what_it_cannot_serve_with_problems_and_counts_each_request(
    app: Flask, runtime: Runtime, tenant: TenantHandle, operator: Operator
) -> None:
    client = app.test_client()
    auth = {"Authorization": f"Bearer {operator.api.token}"}
    sub = line_on(tenant.api)
    good = body(0, sub, rg1=(MB, None))
    limit = runtime.settings.max_body_bytes

    def sent(method: str, path: str, data: bytes | str = b"", **headers: str) -> Any:
        return client.open(path, method=method, data=data, headers={**auth, **headers})

    as_text = sent("POST", BASE, json.dumps(good), **{"Content-Type": "text/plain"})
    fetched = sent("GET", BASE)
    elsewhere = sent("POST", "/nchf-convergedcharging/v3/other", json.dumps(good), **{"Content-Type": JSON})
    not_json = sent("POST", BASE, b'{"invocationSequenceNumber": ', **{"Content-Type": JSON})
    deep = sent("POST", BASE, "[" * 40 + "]" * 40, **{"Content-Type": JSON})
    large = sent("POST", BASE, b" " * (limit + 1), **{"Content-Type": JSON})
    odd_reference = sent("POST", f"{BASE}/a%20b/update", json.dumps(body(1, rg1=(MB, 0))), **{"Content-Type": JSON})
    before = _counted("/nchf-convergedcharging/v3/chargingdata", "201")
    created = sent("POST", BASE, json.dumps(good), **{"Content-Type": JSON, "X-Request-Id": "core-4711"})

    answers = [(r.status_code, r.json["code"]) for r in (as_text, fetched, elsewhere, not_json, deep, large)]
    assert answers == [
        (415, "unsupported_media_type"),
        (405, "method_not_allowed"),
        (404, "not_found"),
        (400, "malformed_body"),
        (422, "json_too_deep"),
        (413, "payload_too_large"),
    ]
    assert all(r.mimetype == "application/problem+json" and r.json["request_id"] for r in (as_text, deep, large))
    assert fetched.headers["Allow"] == "POST"
    assert (odd_reference.status_code, odd_reference.json["cause"]) == (404, "SESSION_NOT_FOUND")
    assert created.status_code == 201, created.json
    assert created.headers["X-Request-Id"] == "core-4711"
    reference = created.headers["Location"].rsplit("/", 1)[-1]
    assert created.headers["Location"] == f"http://localhost{BASE}/{reference}"
    assert _counted("/nchf-convergedcharging/v3/chargingdata", "201") == before + 1
    released = sent(
        "POST", f"{BASE}/{reference}/release", json.dumps(body(1, rg1=(None, MB // 2))), **{"Content-Type": JSON}
    )
    assert released.status_code == 204, released.data


JSON = "application/json"


def _counted(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value("mvne_http_requests_total", {"route": route, "method": "POST", "status": status})
    return value or 0.0
