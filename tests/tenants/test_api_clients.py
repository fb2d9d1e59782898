"""API clients: argon2id secrets, tenants managing their own clients, rotation with overlap, revocation
that ends live tokens at once, last use, operators' view of every client, and the operator commands."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from mvne.infra.ids import new_id
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.tenants.models import ApiClient, Event
from tests.platform.problems import assert_problem
from tests.support.api import ApiCaller, Operator, TenantHandle, make_tenant

MVNE = Path(sys.executable).with_name("mvne")
DAY = 24 * 3600


def token_response(api: ApiCaller, client_id: str, secret: str) -> Any:
    return api.client.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret))


def token(api: ApiCaller, client_id: str, secret: str) -> str:
    response = token_response(api, client_id, secret)
    assert response.status_code == 200, response.json
    return str(response.json["access_token"])


def refused(api: ApiCaller, client_id: str, secret: str) -> bool:
    response = token_response(api, client_id, secret)
    return response.status_code == 401 and response.json["error"] == "invalid_client"


def stored(runtime: Runtime, client_id: str) -> ApiClient:
    with runtime.db.transaction(platform=True) as session:
        client = session.get(ApiClient, client_id)
        assert client is not None
        session.expunge(client)
        return client


def events_of(runtime: Runtime, tenant_id: str, object_id: str) -> list[Event]:
    with runtime.db.transaction(tenant_id=tenant_id) as session:
        rows = session.scalars(select(Event).where(Event.object_id == object_id).order_by(Event.id)).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def new_client(tenant: TenantHandle, scopes: list[str] | None = None, name: str = "billing") -> dict[str, Any]:
    response = tenant.api.post("/v1/api-clients", {"name": name, "scopes": scopes or ["customers:read"]})
    assert response.status_code == 201, response.json
    return dict(response.json)


def assert_invalid_token(response: Any) -> None:
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="mvne", error="invalid_token"'


def test_a_tenant_creates_a_client_whose_secret_is_shown_once_and_stored_as_argon2id(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    created = new_client(tenant, ["customers:read", "invoices:read"], name="billing back end")

    assert created["id"].startswith("cli_")
    assert created["tenant_id"] == tenant.id
    assert created["scopes"] == ["customers:read", "invoices:read"]
    assert created["status"] == "active"
    assert created["last_used_at"] is None
    assert created["previous_secret_expires_at"] is None
    secret = created["client_secret"]
    row = stored(runtime, created["id"])
    assert row.secret_hash.startswith("$argon2id$")
    assert secret not in row.secret_hash
    # Shown once: no read answers it again.
    listed = tenant.api.get("/v1/api-clients", limit=100)
    one = tenant.api.get(f"/v1/api-clients/{created['id']}")
    assert listed.status_code == 200
    assert one.status_code == 200
    for response in (listed, one):
        assert secret not in response.get_data(as_text=True)
        assert "client_secret" not in response.get_data(as_text=True)
    assert {c["id"] for c in listed.json["data"]} == {tenant.client_id, created["id"]}
    assert one.json["name"] == "billing back end"
    # The new client works, with its own scopes only.
    api = tenant.api.with_token(token(tenant.api, created["id"], secret))
    assert api.get("/v1/customers").status_code == 200
    assert_problem(api.get("/v1/offers"), 403, "insufficient_scope")
    [event] = events_of(runtime, tenant.id, created["id"])
    assert (event.type, event.data["scopes"]) == ("api_client.created", ["customers:read", "invoices:read"])


def test_a_legacy_sha256_client_still_gets_a_token_and_is_rehashed_to_argon2id(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    client_id, secret = new_id("cli"), secrets.token_urlsafe(32)
    digest = hashlib.sha256(secret.encode()).hexdigest()
    with runtime.db.transaction(platform=True) as session:
        session.add(
            ApiClient(id=client_id, tenant_id=tenant.id, name="old", secret_hash=digest, scopes="customers:read")
        )

    assert refused(tenant.api, client_id, secret + "x")
    assert stored(runtime, client_id).secret_hash == digest
    first = token(tenant.api, client_id, secret)

    rehashed = stored(runtime, client_id).secret_hash
    assert rehashed.startswith("$argon2id$")
    assert tenant.api.with_token(first).get("/v1/customers").status_code == 200
    token(tenant.api, client_id, secret)
    assert stored(runtime, client_id).secret_hash == rehashed
    assert refused(tenant.api, client_id, digest)


def test_last_used_at_is_set_when_the_client_obtains_a_token(tenant: TenantHandle, runtime: Runtime) -> None:
    created = new_client(tenant)
    assert stored(runtime, created["id"]).last_used_at is None

    before = dt.datetime.now(dt.UTC)
    token(tenant.api, created["id"], created["client_secret"])

    last_used = stored(runtime, created["id"]).last_used_at
    assert last_used is not None
    assert before - dt.timedelta(seconds=1) <= last_used <= dt.datetime.now(dt.UTC)
    shown = tenant.api.get(f"/v1/api-clients/{created['id']}").json["last_used_at"]
    assert dt.datetime.fromisoformat(shown) == last_used


def test_after_a_rotation_the_old_secret_works_until_the_overlap_ends_then_is_refused(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    created = new_client(tenant)
    old_secret = created["client_secret"]
    old_token = token(tenant.api, created["id"], old_secret)

    rotated = tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {"overlap_seconds": 3600})

    assert rotated.status_code == 200, rotated.json
    new_secret = rotated.json["client_secret"]
    assert new_secret != old_secret
    expires = dt.datetime.fromisoformat(rotated.json["previous_secret_expires_at"])
    assert dt.timedelta(minutes=59) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(hours=1)
    assert stored(runtime, created["id"]).secret_hash.startswith("$argon2id$")
    # Inside the window both secrets get tokens; a token issued before the rotation still works.
    token(tenant.api, created["id"], old_secret)
    token(tenant.api, created["id"], new_secret)
    assert tenant.api.with_token(old_token).get("/v1/customers").status_code == 200
    listed = tenant.api.get("/v1/api-clients", limit=100).json["data"]
    assert [c["previous_secret_expires_at"] for c in listed if c["id"] == created["id"]] == [
        rotated.json["previous_secret_expires_at"]
    ]

    # The window ends.
    with runtime.db.transaction(platform=True) as session:
        session.execute(
            update(ApiClient)
            .where(ApiClient.id == created["id"])
            .values(previous_secret_expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )

    assert refused(tenant.api, created["id"], old_secret)
    token(tenant.api, created["id"], new_secret)
    assert tenant.api.get(f"/v1/api-clients/{created['id']}").json["previous_secret_expires_at"] is None
    [event] = [e for e in events_of(runtime, tenant.id, created["id"]) if e.type == "api_client.secret_rotated"]
    assert event.data["previous_secret_expires_at"] == rotated.json["previous_secret_expires_at"]


def test_a_rotation_without_overlap_refuses_the_old_secret_at_once_and_the_default_overlap_is_a_day(
    tenant: TenantHandle,
) -> None:
    created = new_client(tenant)

    at_once = tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {"overlap_seconds": 0})
    assert at_once.status_code == 200, at_once.json
    assert at_once.json["previous_secret_expires_at"] is None
    assert refused(tenant.api, created["id"], created["client_secret"])
    token(tenant.api, created["id"], at_once.json["client_secret"])

    default = tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {})
    assert default.status_code == 200, default.json
    left = dt.datetime.fromisoformat(default.json["previous_secret_expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=23, minutes=59) < left <= dt.timedelta(hours=24)
    token(tenant.api, created["id"], at_once.json["client_secret"])
    token(tenant.api, created["id"], default.json["client_secret"])


@pytest.mark.parametrize("overlap", [-1, 7 * DAY + 1, "3600", 1.5])
def test_an_overlap_out_of_range_is_refused_and_changes_nothing(
    tenant: TenantHandle, runtime: Runtime, overlap: Any
) -> None:
    created = new_client(tenant)
    before = stored(runtime, created["id"])

    response = tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {"overlap_seconds": overlap})

    body = assert_problem(response, 422, "validation_failed")
    assert "overlap_seconds" in body["errors"]
    after = stored(runtime, created["id"])
    assert (after.secret_hash, after.previous_secret_hash) == (before.secret_hash, None)
    token(tenant.api, created["id"], created["client_secret"])
    assert [e.type for e in events_of(runtime, tenant.id, created["id"])] == ["api_client.created"]


def test_the_longest_overlap_is_seven_days(tenant: TenantHandle) -> None:
    created = new_client(tenant)

    response = tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {"overlap_seconds": 7 * DAY})

    assert response.status_code == 200, response.json
    left = dt.datetime.fromisoformat(response.json["previous_secret_expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(days=7) - dt.timedelta(minutes=1) < left <= dt.timedelta(days=7)


def test_unknown_scopes_and_scopes_the_caller_lacks_are_refused_by_name_and_nothing_is_created(
    tenant: TenantHandle, operator: Operator, runtime: Runtime
) -> None:
    before = [c["id"] for c in tenant.api.get("/v1/api-clients", limit=100).json["data"]]

    unknown = tenant.api.post(
        "/v1/api-clients", {"name": "x", "scopes": ["customers:read", "tenants:write", "nothing:here"]}
    )
    body = assert_problem(unknown, 422, "invalid_scopes")
    assert "nothing:here" in body["detail"]
    assert "tenants:write" in body["detail"]
    assert "customers:read" not in body["detail"]

    # A client grants no more than the token that asks holds.
    narrow = tenant.api.with_token(
        tenant.api.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "scope": "api_clients:write api_clients:read"},
            auth=(tenant.client_id, tenant.secret),
        ).json["access_token"]
    )
    escalation = narrow.post("/v1/api-clients", {"name": "y", "scopes": ["api_clients:write", "offers:write"]})
    body = assert_problem(escalation, 422, "invalid_scopes")
    assert "offers:write" in body["detail"]
    assert "api_clients:write" not in body["detail"]

    assert [c["id"] for c in tenant.api.get("/v1/api-clients", limit=100).json["data"]] == before
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        types = session.scalars(select(Event.type)).all()
    assert types.count("api_client.created") == 1  # the client the tenant was given at onboarding


def test_revocation_refuses_the_clients_live_tokens_at_once_and_any_new_token(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    created = new_client(tenant, ["customers:read"])
    live = tenant.api.with_token(token(tenant.api, created["id"], created["client_secret"]))
    assert live.get("/v1/customers").status_code == 200

    revoked = tenant.api.post(f"/v1/api-clients/{created['id']}/revoke")

    assert revoked.status_code == 200, revoked.json
    assert revoked.json["status"] == "revoked"
    assert revoked.json["revoked_at"]
    assert_invalid_token(live.get("/v1/customers"))
    # Revoked is 401 whatever the scope: the token is no longer good at all.
    assert_invalid_token(live.get("/v1/offers"))
    assert refused(tenant.api, created["id"], created["client_secret"])
    # The tenant's other client is untouched.
    assert tenant.api.get("/v1/customers").status_code == 200
    [event] = [e for e in events_of(runtime, tenant.id, created["id"]) if e.type == "api_client.revoked"]
    assert event.data["by"] == "tenant"
    # Revoking again changes nothing; rotating a revoked client is a conflict.
    again = tenant.api.post(f"/v1/api-clients/{created['id']}/revoke")
    assert again.status_code == 200
    assert again.json["revoked_at"] == revoked.json["revoked_at"]
    assert_problem(tenant.api.post(f"/v1/api-clients/{created['id']}/rotate-secret", {}), 409, "api_client_revoked")
    assert refused(tenant.api, created["id"], created["client_secret"])
    types = [e.type for e in events_of(runtime, tenant.id, created["id"])]
    assert types == ["api_client.created", "api_client.revoked"]


def test_a_client_may_revoke_itself_and_its_token_stops_working_after(tenant: TenantHandle) -> None:
    created = new_client(tenant, ["api_clients:write", "api_clients:read"])
    own = tenant.api.with_token(token(tenant.api, created["id"], created["client_secret"]))

    response = own.post(f"/v1/api-clients/{created['id']}/revoke")

    assert response.status_code == 200, response.json
    assert_invalid_token(own.get(f"/v1/api-clients/{created['id']}"))
    assert tenant.api.get(f"/v1/api-clients/{created['id']}").json["status"] == "revoked"


def test_another_tenants_clients_and_operator_clients_are_not_found(
    tenant: TenantHandle, other_tenant: TenantHandle, operator: Operator
) -> None:
    theirs = new_client(other_tenant)
    missing = new_id("cli")

    for client_id in (theirs["id"], other_tenant.client_id, operator.client_id, missing):
        assert_problem(tenant.api.get(f"/v1/api-clients/{client_id}"), 404, "api_client_not_found")
        rotate = tenant.api.post(f"/v1/api-clients/{client_id}/rotate-secret", {"overlap_seconds": 60})
        assert_problem(rotate, 404, "api_client_not_found")
        assert_problem(tenant.api.post(f"/v1/api-clients/{client_id}/revoke"), 404, "api_client_not_found")

    listed = tenant.api.get("/v1/api-clients", limit=100).json["data"]
    assert {c["tenant_id"] for c in listed} == {tenant.id}
    token(other_tenant.api, theirs["id"], theirs["client_secret"])
    assert other_tenant.api.get(f"/v1/api-clients/{theirs['id']}").json["status"] == "active"


def test_operators_list_every_client_by_tenant_and_revoke_any(
    tenant: TenantHandle, other_tenant: TenantHandle, operator: Operator, runtime: Runtime
) -> None:
    created = new_client(tenant)
    live = tenant.api.with_token(token(tenant.api, created["id"], created["client_secret"]))

    mine = operator.api.get("/v1/operator/api-clients", tenant=tenant.id, limit=100)
    assert mine.status_code == 200, mine.json
    assert {c["id"] for c in mine.json["data"]} == {tenant.client_id, created["id"]}
    assert created["client_secret"] not in mine.get_data(as_text=True)
    everyone: set[str] = set()
    after = None
    while True:
        page = operator.api.get("/v1/operator/api-clients", limit=100, **({"starting_after": after} if after else {}))
        assert page.status_code == 200, page.json
        everyone |= {c["id"] for c in page.json["data"]}
        if not page.json["has_more"]:
            break
        after = page.json["data"][-1]["id"]
    assert {tenant.client_id, created["id"], other_tenant.client_id, operator.client_id} <= everyone
    # Tenants cannot use the operators' routes.
    assert_problem(tenant.api.get("/v1/operator/api-clients"), 403, "insufficient_scope")

    revoked = operator.api.post(f"/v1/operator/api-clients/{created['id']}/revoke")

    assert revoked.status_code == 200, revoked.json
    assert revoked.json["status"] == "revoked"
    assert_invalid_token(live.get("/v1/customers"))
    [event] = [e for e in events_of(runtime, tenant.id, created["id"]) if e.type == "api_client.revoked"]
    assert event.data["by"] == "operator"
    assert_problem(operator.api.post(f"/v1/operator/api-clients/{new_id('cli')}/revoke"), 404, "api_client_not_found")
    assert tenant.api.get("/v1/customers").status_code == 200


def test_an_operator_client_can_be_revoked_and_its_token_is_refused(
    app: Any, operator: Operator, runtime: Runtime
) -> None:
    from tests.support.api import make_operator

    other = make_operator(app.test_client(), runtime)
    assert other.api.get("/v1/tenants").status_code == 200

    response = operator.api.post(f"/v1/operator/api-clients/{other.client_id}/revoke")

    assert response.status_code == 200, response.json
    assert response.json["tenant_id"] is None
    assert_invalid_token(other.api.get("/v1/tenants"))
    assert operator.api.get("/v1/tenants").status_code == 200


def _cli_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVNE_")}
    env.update(
        MVNE_VAR_DIR=str(settings.var_dir),
        MVNE_DATABASE_URL=settings.database_url,
        MVNE_LOG_LEVEL="WARNING",
        MVNE_LOG_FORMAT="console",
    )
    if settings.platform_database_url:
        env["MVNE_PLATFORM_DATABASE_URL"] = settings.platform_database_url
    if settings.migration_database_url:
        env["MVNE_MIGRATION_DATABASE_URL"] = settings.migration_database_url
    return env


def _mvne(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MVNE), *args],
        env=_cli_env(settings),
        cwd=settings.var_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_operator_commands_list_a_tenants_clients_and_revoke_one(
    tenant: TenantHandle, operator: Operator, settings: Settings, runtime: Runtime
) -> None:
    created = new_client(tenant)
    live = tenant.api.with_token(token(tenant.api, created["id"], created["client_secret"]))

    listed = _mvne(settings, "operator", "list-clients", "--tenant", tenant.slug)

    assert listed.returncode == 0, listed.stderr[-3000:]
    clients = json.loads(listed.stdout)
    assert {c["id"] for c in clients} == {tenant.client_id, created["id"]}
    assert all(c["status"] == "active" and c["tenant_id"] == tenant.id for c in clients)
    assert created["client_secret"] not in listed.stdout
    by_id = json.loads(_mvne(settings, "operator", "list-clients", "--tenant", tenant.id).stdout)
    assert [c["id"] for c in by_id] == [c["id"] for c in clients]

    done = _mvne(settings, "operator", "revoke-client", created["id"])

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "revoked"
    assert_invalid_token(live.get("/v1/customers"))
    assert refused(tenant.api, created["id"], created["client_secret"])
    assert tenant.api.get(f"/v1/api-clients/{created['id']}").json["status"] == "revoked"
    unknown = _mvne(settings, "operator", "revoke-client", new_id("cli"))
    assert unknown.returncode != 0
    assert "api_client_not_found" in unknown.stderr
    no_tenant = _mvne(settings, "operator", "list-clients", "--tenant", "no-such-tenant")
    assert no_tenant.returncode != 0
    assert "tenant_not_found" in no_tenant.stderr


def test_a_tenant_without_the_api_clients_scopes_cannot_manage_clients(
    app: Any, operator: Operator, tenant: TenantHandle
) -> None:
    limited = make_tenant(app.test_client(), operator, scopes=("customers:read",))

    assert_problem(limited.api.get("/v1/api-clients"), 403, "insufficient_scope")
    assert_problem(
        limited.api.post("/v1/api-clients", {"name": "x", "scopes": ["customers:read"]}), 403, "insufficient_scope"
    )


def test_the_service_refuses_an_overlap_past_seven_days_and_changes_nothing(
    tenant: TenantHandle, runtime: Runtime
) -> None:
    from mvne.tenants.errors import InvalidSecretOverlap
    from mvne.tenants.service import get_tenant_api_client, rotate_api_client_secret

    created = new_client(tenant)
    before = stored(runtime, created["id"])

    with runtime.db.transaction(tenant_id=tenant.id) as session:
        client = get_tenant_api_client(session, tenant.id, created["id"], lock=True)
        with pytest.raises(InvalidSecretOverlap) as raised:
            rotate_api_client_secret(session, client, overlap=dt.timedelta(days=7, seconds=1))

    assert raised.value.code == "invalid_secret_overlap"
    assert "overlap_seconds" in (raised.value.errors or {})
    assert stored(runtime, created["id"]).secret_hash == before.secret_hash
    token(tenant.api, created["id"], created["client_secret"])
