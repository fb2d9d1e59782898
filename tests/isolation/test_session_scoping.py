"""The session's tenant scope, on any database: unscoped queries refused, scoped ones filtered, writes stamped.

Row-level security backs this up on PostgreSQL (test_row_level_security.py); these tests hold on SQLite too,
where the session is the only guard.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy import Executable, delete, exists, func, select, update

from mvne.infra.db import Base, TenantOwned, UnscopedQuery, tenant_owned_tables
from mvne.infra.ids import new_id
from mvne.infra.migrate import MIGRATIONS
from mvne.infra.models import load_models
from mvne.infra.runtime import Runtime
from mvne.tenants.models import Customer, Tenant
from mvne.tenants.service import create_customer

ADDRESS = {"line1": "1 rue de Rivoli", "postal_code": "75001", "city": "Paris", "country": "FR"}


@dataclass(frozen=True)
class Pair:
    """Two tenants' ids and the ids of the customers each owns."""

    a: str
    b: str
    a_customers: list[str]
    b_customers: list[str]


@pytest.fixture
def pair(runtime: Runtime) -> Pair:
    # Tenant ids of our own: customers carry no foreign key to tenants, and the session scope is what is tested.
    a, b = new_id("ten"), new_id("ten")
    made: dict[str, list[str]] = {a: [], b: []}
    for tenant_id, count in ((a, 2), (b, 1)):
        with runtime.db.transaction(tenant_id=tenant_id) as session:
            for n in range(count):
                made[tenant_id].append(
                    create_customer(session, name=f"C{n}", email=f"c{n}-{tenant_id}@example.com", address=ADDRESS).id
                )
    return Pair(a, b, sorted(made[a]), sorted(made[b]))


# Statements that touch the customers table, in every place a table can sit: all must be refused unscoped.
UNSCOPED_STATEMENTS: dict[str, Callable[[Pair], Executable]] = {
    "select entity": lambda p: select(Customer),
    "select column": lambda p: select(Customer.id),
    "count of a column": lambda p: select(func.count(Customer.id)),
    "count(*) from": lambda p: select(func.count()).select_from(Customer),
    "exists": lambda p: select(exists().where(Customer.id == p.a_customers[0])),
    "join": lambda p: select(Tenant.id).join(Customer, Customer.tenant_id == Tenant.id),
    "subquery in where": lambda p: select(Tenant.id).where(Tenant.id.in_(select(Customer.tenant_id))),
    "scalar subquery": lambda p: select(select(Customer.name).where(Customer.id == p.a_customers[0]).scalar_subquery()),
    "update": lambda p: update(Customer).values(name="nobody"),
    "delete": lambda p: delete(Customer),
}


@pytest.mark.parametrize("shape", sorted(UNSCOPED_STATEMENTS))
def test_a_session_without_scope_refuses_tenant_owned_queries(runtime: Runtime, pair: Pair, shape: str) -> None:
    session = runtime.db.session()
    try:
        with pytest.raises(UnscopedQuery, match=r"(?i)customer"):
            session.execute(UNSCOPED_STATEMENTS[shape](pair)).all()
    finally:
        session.rollback()
        session.close()
    # Nothing was read or changed: the refused update and delete left A's customers as they were.
    with runtime.db.transaction(platform=True) as session:
        names = set(session.scalars(select(Customer.name).where(Customer.id.in_(pair.a_customers))))
    assert names == {"C0", "C1"}


def test_a_session_without_scope_refuses_get_by_id(runtime: Runtime, pair: Pair) -> None:
    session = runtime.db.session()
    try:
        with pytest.raises(UnscopedQuery, match=r"(?i)customer"):
            session.get(Customer, pair.a_customers[0])
    finally:
        session.close()


def test_a_tenant_session_reads_only_its_tenant_rows(runtime: Runtime, pair: Pair) -> None:
    with runtime.db.transaction(tenant_id=pair.a) as session:
        mine = {pair.a}
        assert sorted(c.id for c in session.scalars(select(Customer))) == pair.a_customers
        assert {c.tenant_id for c in session.scalars(select(Customer))} == mine
        assert sorted(session.scalars(select(Customer.id))) == pair.a_customers
        assert session.scalar(select(func.count(Customer.id))) == len(pair.a_customers)
        assert session.scalar(select(func.count()).select_from(Customer)) == len(pair.a_customers)
        # Even asked by id or by the other tenant's id column, B's rows stay out of reach.
        assert session.get(Customer, pair.b_customers[0]) is None
        assert session.scalars(select(Customer).where(Customer.id == pair.b_customers[0])).all() == []
        assert session.scalars(select(Customer).where(Customer.tenant_id == pair.b)).all() == []
        outer = select(Customer.id).where(Customer.id.in_(select(Customer.id).where(Customer.tenant_id == pair.b)))
        assert session.scalars(outer).all() == []


def test_a_tenant_session_updates_and_deletes_only_its_tenant_rows(runtime: Runtime, pair: Pair) -> None:
    session = runtime.db.session(tenant_id=pair.a)
    try:
        session.execute(update(Customer).values(name="renamed by A"))
        session.execute(delete(Customer).where(Customer.id == pair.b_customers[0]))
        session.commit()
    finally:
        session.close()
    with runtime.db.transaction(platform=True) as session:
        b_rows = session.scalars(select(Customer).where(Customer.tenant_id == pair.b)).all()
        a_names = set(session.scalars(select(Customer.name).where(Customer.tenant_id == pair.a)))
    assert [(c.id, c.name) for c in b_rows] == [(pair.b_customers[0], "C0")]
    assert a_names == {"renamed by A"}


def test_a_tenant_session_cannot_write_a_row_for_another_tenant(runtime: Runtime, pair: Pair) -> None:
    session = runtime.db.session(tenant_id=pair.a)
    try:
        session.add(Customer(id=new_id("cus"), tenant_id=pair.b, name="Planted", email="p@example.com", address={}))
        with pytest.raises(UnscopedQuery, match="another tenant"):
            session.flush()
    finally:
        session.rollback()
        session.close()
    with runtime.db.transaction(platform=True) as session:
        assert session.scalars(select(Customer.id).where(Customer.tenant_id == pair.b)).all() == pair.b_customers


def test_a_new_row_takes_the_session_tenant_and_needs_one(runtime: Runtime, pair: Pair) -> None:
    with runtime.db.transaction(tenant_id=pair.a) as session:
        stamped = Customer(id=new_id("cus"), name="Stamped", email="s@example.com", address={})
        session.add(stamped)
        session.flush()
        assert stamped.tenant_id == pair.a
    session = runtime.db.session()
    try:
        session.add(Customer(id=new_id("cus"), name="Nobody's", email="n@example.com", address={}))
        with pytest.raises(UnscopedQuery, match="without a tenant"):
            session.flush()
    finally:
        session.rollback()
        session.close()


def test_a_platform_session_sees_every_tenant(runtime: Runtime, pair: Pair) -> None:
    ids = pair.a_customers + pair.b_customers
    with runtime.db.transaction(platform=True) as session:
        seen = session.scalars(select(Customer).where(Customer.id.in_(ids))).all()
        assert sorted(c.id for c in seen) == sorted(ids)
        assert {c.tenant_id for c in seen} == {pair.a, pair.b}
        assert session.get(Customer, pair.b_customers[0]) is not None


def test_a_session_is_scoped_to_one_tenant_or_the_platform(runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="not both"):
        runtime.db.session(tenant_id=new_id("ten"), platform=True)


def _migration_modules() -> list[ModuleType]:
    modules = []
    for path in sorted(Path(MIGRATIONS, "versions").glob("*.py")):
        if path.name == "__init__.py":
            continue
        spec = importlib.util.spec_from_file_location(f"_isolation_migration_{path.stem}", path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        modules.append(module)
    return modules


def test_every_tenant_owned_model_has_a_row_level_security_policy_in_the_migrations() -> None:
    load_models()
    modules = _migration_modules()
    initial = [m for m in modules if getattr(m, "revision", None) == "0001"]
    assert initial, "the initial migration (revision 0001) was not found"
    assert isinstance(initial[0].TENANT_TABLES, tuple)
    dropped = {table for m in modules for table in getattr(m, "DROPPED_TENANT_TABLES", ())}
    policed = {table for m in modules for table in getattr(m, "TENANT_TABLES", ())} - dropped

    models = sorted(
        (mapper.class_.__name__, mapper.local_table.name)  # type: ignore[attr-defined]
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    )
    assert len(models) >= 12, models
    missing = [f"{name} ({table})" for name, table in models if table not in policed]
    assert not missing, (
        f"tenant-owned models without a row-level security policy: {', '.join(missing)}; add their tables to "
        "TENANT_TABLES in a migration that runs tenant_isolation_sql() on them"
    )
    stale = sorted(policed - set(tenant_owned_tables()))
    assert not stale, f"TENANT_TABLES names tables no TenantOwned model maps: {', '.join(stale)}"
