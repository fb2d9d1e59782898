"""The permission matrix, enforced: each role's console session calls every tenant operation of the app.

An operation answers 403 `insufficient_scope` exactly when the role lacks the scope its view requires,
and something else (a 404 for a made-up id, a 422 for an empty body, a 200) when the role holds it. The
operations come from the app's `url_map`, so a new route is in the matrix the day it is added.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask

from mvne.infra.runtime import Runtime
from mvne.infra.web.auth import KIND_STAFF
from mvne.platform.auth import TENANT_SCOPES
from mvne.tenants import roles
from tests.support.api import Operator, TenantHandle, make_tenant
from tests.support.staff import ConsoleCaller, console_for, make_staff_user

PARAMETER = re.compile(r"<(?:[^:<>]+:)?([^:<>]+)>")
MADE_UP_ID = "zzz_01JD8ZZZZZZZZZZZZZZZZZZZZZ"
# Ends the session that walks the matrix: called last.
LOG_OUT = ("DELETE", "/v1/console/sessions/current")
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass(frozen=True)
class Operation:
    method: str
    rule: str
    scope: str

    @property
    def path(self) -> str:
        return PARAMETER.sub(MADE_UP_ID, self.rule)


def staff_operations(app: Flask) -> list[Operation]:
    """Every tenant operation a staff session may be let into, the session's own logout last."""
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        scope = getattr(view, "_mvne_scope", None)
        kinds = getattr(view, "_mvne_kinds", None)
        if scope is None or not getattr(view, "_mvne_tenant", True):
            continue
        if kinds is not None and KIND_STAFF not in kinds:
            continue
        found += [Operation(m, rule.rule, scope) for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return sorted(found, key=lambda op: ((op.method, op.rule) == LOG_OUT, op.rule, op.method))


@dataclass(frozen=True)
class Staffed:
    tenant: TenantHandle
    consoles: dict[str, ConsoleCaller]


@pytest.fixture(scope="module")
def staffed(app: Flask, runtime: Runtime, operator: Operator, live_url: str) -> Staffed:
    """One tenant with a staff user of each role, each logged in."""
    tenant = make_tenant(app.test_client(), operator)
    consoles = {
        role: console_for(app, tenant.slug, make_staff_user(runtime, tenant.id, role)) for role in roles.ROLE_NAMES
    }
    return Staffed(tenant, consoles)


def test_every_scope_a_role_grants_is_a_tenant_scope_and_owners_hold_them_all() -> None:
    granted = set().union(*roles.ROLES.values())

    assert granted <= set(TENANT_SCOPES), granted - set(TENANT_SCOPES)
    assert set(TENANT_SCOPES) == roles.ALL_SCOPES
    assert roles.ROLES[roles.OWNER] == set(TENANT_SCOPES)
    assert set(roles.ROLE_NAMES) == set(roles.ROLES)
    assert all(roles.SELF_SCOPE in scopes for scopes in roles.ROLES.values()), "every role reaches its own account"


def test_the_readme_shows_the_matrix_the_code_enforces() -> None:
    text = README.read_text()
    header = next(line for line in text.splitlines() if line.startswith("| scope |"))
    columns = [cell.strip(" `") for cell in header.strip("|").split("|")][1:]
    assert columns == list(roles.ROLE_NAMES)
    shown: dict[str, set[str]] = {role: set() for role in columns}
    rows = re.findall(r"^\| `([a-z_]+:[a-z_]+)` \|(.*)\|$", text, re.MULTILINE)
    for scope, cells in rows:
        for role, cell in zip(columns, cells.split("|"), strict=True):
            if cell.strip() == "✓":
                shown[role].add(scope)
    assert {scope for scope, _ in rows} == set(TENANT_SCOPES)
    assert shown == {role: set(scopes) for role, scopes in roles.ROLES.items()}


@pytest.mark.parametrize("role", roles.ROLE_NAMES)
def test_a_role_is_refused_exactly_the_operations_whose_scope_it_lacks(app: Flask, staffed: Staffed, role: str) -> None:
    console = staffed.consoles[role]
    granted = roles.ROLES[role]
    operations = staff_operations(app)
    assert len(operations) >= 40, operations
    assert operations[-1].method == "DELETE"
    wrong: list[str] = []

    for operation in operations:
        response = console.request(operation.method, operation.path, {} if operation.method != "GET" else None)
        code = (response.get_json(silent=True) or {}).get("code")
        where = f"{operation.method} {operation.rule} ({operation.scope}) -> {response.status_code} {code}"
        if operation.scope in granted:
            if response.status_code == 403 or response.status_code >= 500:
                wrong.append(f"allowed but refused: {where}")
        elif (response.status_code, code) != (403, "insufficient_scope"):
            wrong.append(f"not allowed but let in: {where}")

    assert not wrong, f"{role}:\n" + "\n".join(wrong)
    # Its own logout went through, last.
    assert console.get("/v1/console/me").status_code == 401
