"""Every change made through the API is recorded in the append-only audit log, secrets never."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import ProgrammingError

from mvne.infra.settings import Settings
from tests.support.api import OFFER, ApiCaller, Operator, TenantHandle


def audit_log(api: ApiCaller, path: str = "/v1/audit-events", **params: Any) -> list[dict[str, Any]]:
    """Every page of an audit log (onboarding alone records the tenant's SIM pool)."""
    rows: list[dict[str, Any]] = []
    while True:
        response = api.get(path, limit=100, **params, **({"starting_after": rows[-1]["id"]} if rows else {}))
        assert response.status_code == 200, response.json
        rows.extend(response.json["data"])
        if not response.json["has_more"]:
            return rows


def test_creating_and_publishing_an_offer_records_who_what_before_and_after(tenant: TenantHandle) -> None:
    created = tenant.api.client.post(
        "/v1/offers", json=OFFER, headers=tenant.api.headers({"X-Request-Id": "req-audit-create"})
    )
    assert created.status_code == 201, created.json
    offer_id = created.json["id"]
    published = tenant.api.client.post(
        f"/v1/offers/{offer_id}/publish", headers=tenant.api.headers({"X-Request-Id": "req-audit-publish"})
    )
    assert published.status_code == 200, published.json

    changes = [e for e in audit_log(tenant.api) if e["object_id"] == offer_id]

    assert [(e["action"], e["object_type"]) for e in changes] == [("create", "offers"), ("update", "offers")]
    create, update = changes
    assert create["before"] is None
    assert create["after"]["code"] == OFFER["code"]
    # The terms are the offer's version 1, a row of its own.
    version = [e for e in audit_log(tenant.api) if e["object_id"] == created.json["current_version"]["id"]]
    assert [(e["action"], e["object_type"]) for e in version] == [
        ("create", "offer_versions"),
        ("update", "offer_versions"),
    ]
    assert version[0]["after"]["price"].startswith("20.00")
    assert create["after"]["status"] == "draft"
    assert create["request_id"] == "req-audit-create"
    assert update["before"]["status"] == "draft"
    assert update["after"]["status"] == "published"
    assert "code" not in update["after"]  # changed columns only
    assert update["request_id"] == "req-audit-publish"
    for change in changes:
        assert change["client_id"] == tenant.client_id
        assert change["actor_type"] == "client"
        assert change["tenant_id"] == tenant.id
        assert change["id"].startswith("aud_")
        assert change["created_at"]


def test_a_failed_request_records_nothing(tenant: TenantHandle) -> None:
    before = audit_log(tenant.api)
    refused = tenant.api.post("/v1/offers", {**OFFER, "price": "not money"})
    assert refused.status_code == 422, refused.json

    assert audit_log(tenant.api) == before


def test_another_tenant_never_sees_the_changes(tenant: TenantHandle, other_tenant: TenantHandle) -> None:
    offer = tenant.api.post("/v1/offers", OFFER)
    assert offer.status_code == 201, offer.json

    theirs = audit_log(other_tenant.api)

    assert offer.json["id"] not in {e["object_id"] for e in theirs}
    assert {e["tenant_id"] for e in theirs} <= {other_tenant.id}


def test_operators_read_every_change_and_filter_by_tenant(
    operator: Operator, tenant: TenantHandle, other_tenant: TenantHandle
) -> None:
    ours = tenant.api.post("/v1/offers", OFFER).json["id"]
    theirs = other_tenant.api.post("/v1/offers", OFFER).json["id"]

    only_ours = audit_log(operator.api, "/v1/operator/audit-events", tenant=tenant.id)

    assert ours in {e["object_id"] for e in only_ours}
    assert theirs not in {e["object_id"] for e in only_ours}
    assert {e["tenant_id"] for e in only_ours} == {tenant.id}
    # The operator's own onboarding of the tenant is in its log, as the operator's change.
    onboarded = [e for e in only_ours if e["object_id"] == tenant.client_id and e["action"] == "create"]
    assert onboarded
    assert onboarded[0]["actor_type"] == "operator"
    assert onboarded[0]["client_id"] == operator.client_id
    assert tenant.api.get("/v1/operator/audit-events").status_code == 403


def test_secrets_never_reach_the_audit_log(operator: Operator, tenant: TenantHandle) -> None:
    endpoint = tenant.api.post("/v1/webhook-endpoints", {"url": "https://hooks.example.com/mvne"})
    assert endpoint.status_code == 201, endpoint.json
    client = tenant.api.post("/v1/api-clients", {"name": "reports", "scopes": ["customers:read"]})
    assert client.status_code == 201, client.json
    rotated = tenant.api.post(f"/v1/api-clients/{client.json['id']}/rotate-secret", {"overlap_seconds": 0})
    assert rotated.status_code in (200, 201), rotated.json
    secrets = {endpoint.json["secret"], client.json["client_secret"], rotated.json["client_secret"], tenant.secret}

    everything = audit_log(tenant.api) + audit_log(operator.api, "/v1/operator/audit-events", tenant=tenant.id)
    assert {endpoint.json["id"], client.json["id"]} <= {e["object_id"] for e in everything}
    assert [e for e in everything if e["object_type"] == "sims"]  # the SIM pool, its keys left out
    for change in everything:
        for values in (change["before"] or {}, change["after"] or {}):
            assert not [name for name in values if any(part in name for part in ("secret", "hash", "key", "opc"))]
            assert not {"ki_encrypted", "opc_encrypted"} & set(values)
            # A value may name a secret (the event type `api_client.secret_rotated`), never hold one.
            dumped = json.dumps(values)
            assert not [s for s in secrets if s in dumped]


def test_the_application_cannot_change_or_erase_the_audit_log(
    postgres_settings: Settings, tenant: TenantHandle
) -> None:
    assert tenant.api.post("/v1/offers", OFFER).status_code == 201
    engine = create_engine(postgres_settings.database_url)
    try:
        with engine.begin() as conn:
            assert conn.scalar(text("SELECT count(*) FROM audit_events WHERE tenant_id = :t"), {"t": tenant.id})
        for statement in (
            "UPDATE audit_events SET action = 'delete' WHERE tenant_id = :t",
            "DELETE FROM audit_events WHERE tenant_id = :t",
        ):
            with pytest.raises(ProgrammingError, match="permission denied"), engine.begin() as conn:
                conn.execute(text(statement), {"t": tenant.id})
    finally:
        engine.dispose()


def test_an_operators_read_of_a_tenant_is_in_that_tenants_audit_log(operator: Operator, tenant: TenantHandle) -> None:
    read = operator.api.client.get(
        f"/v1/tenants/{tenant.id}", headers=operator.api.headers({"X-Request-Id": "req-operator-look"})
    )
    assert read.status_code == 200, read.json
    listed = operator.api.get("/v1/operator/api-clients", tenant=tenant.id)
    assert listed.status_code == 200, listed.json

    reads = [e for e in audit_log(tenant.api) if e["action"] == "read"]

    assert [(e["object_type"], e["object_id"]) for e in reads] == [
        ("/v1/tenants/<tenant_id>", tenant.id),
        ("/v1/operator/api-clients", "*"),
    ]
    assert reads[0]["actor_type"] == "operator"
    assert reads[0]["client_id"] == operator.client_id
    assert reads[0]["request_id"] == "req-operator-look"
    assert reads[0]["before"] is None
    assert reads[0]["after"] is None


def test_a_refused_operator_read_is_not_recorded(operator: Operator, tenant: TenantHandle) -> None:
    missing = operator.api.get("/v1/tenants/ten_doesnotexist")
    assert missing.status_code == 404

    everything = audit_log(operator.api, "/v1/operator/audit-events")

    assert not [e for e in everything if e["object_id"] == "ten_doesnotexist"]
