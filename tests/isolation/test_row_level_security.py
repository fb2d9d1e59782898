"""PostgreSQL row-level security, seen from a raw connection as the application's role.

The ORM scope is left out on purpose: these statements are the "bug in a query" the policies are there
for, so they must see no row of another tenant and must not write one, whatever SQL they send.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from mvne.infra.db import Base, tenant_owned_tables
from mvne.infra.ids import new_id
from mvne.infra.migrate import owner_url
from mvne.infra.models import load_models
from mvne.infra.settings import Settings
from tests.isolation.conftest import TwoTenants


@pytest.fixture(scope="module")
def tables() -> list[str]:
    load_models()
    names = tenant_owned_tables()
    assert len(names) >= 12, names
    return names


@pytest.fixture(scope="module")
def app_engine(postgres_settings: Settings) -> Iterator[Engine]:
    """The application's own role, on fresh connections (nothing left set by an earlier transaction)."""
    engine = create_engine(postgres_settings.database_url, poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def owner_engine(postgres_settings: Settings) -> Iterator[Engine]:
    engine = create_engine(owner_url(postgres_settings), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def counts(owner_engine: Engine, two_tenants: TwoTenants, tables: list[str]) -> dict[str, dict[str, int]]:
    """Rows per table of tenant A and tenant B, as the owner sees them; every table holds some of each."""
    a, b = two_tenants.a.tenant.id, two_tenants.b.tenant.id
    found: dict[str, dict[str, int]] = {}
    with owner_engine.connect() as conn:
        for table in tables:
            rows = conn.execute(
                text(f"SELECT tenant_id, count(*) FROM {table} WHERE tenant_id IN (:a, :b) GROUP BY tenant_id"),  # noqa: S608
                {"a": a, "b": b},
            )
            found[table] = dict(rows.all())
    empty = sorted(f"{t} ({name})" for t in tables for name, tid in (("A", a), ("B", b)) if not found[t].get(tid))
    assert not empty, f"the fixture left tables without rows of a tenant: {', '.join(empty)}"
    return found


def _scope(conn: Connection, tenant_id: str) -> None:
    conn.execute(text("SELECT set_config('mvne.tenant_id', :t, false)"), {"t": tenant_id})


def test_without_a_tenant_the_application_role_sees_no_row(
    app_engine: Engine, tables: list[str], counts: dict[str, dict[str, int]]
) -> None:
    with app_engine.connect() as conn:
        assert conn.scalar(text("SELECT current_setting('mvne.tenant_id', true)")) in (None, "")
        seen = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
        assert seen == dict.fromkeys(tables, 0)
        # What the application sets for a session without scope: an empty tenant.
        conn.execute(text("SELECT set_config('mvne.tenant_id', '', false)"))
        seen = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
        assert seen == dict.fromkeys(tables, 0)


def test_no_setting_the_application_role_can_make_widens_what_it_sees(
    app_engine: Engine, tables: list[str], counts: dict[str, dict[str, int]]
) -> None:
    with app_engine.connect() as conn:
        # The platform scope of earlier versions was a setting; it must open nothing now.
        conn.execute(text("SELECT set_config('mvne.platform', 'on', false)"))
        seen = {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in tables}  # noqa: S608
        assert seen == dict.fromkeys(tables, 0)


def test_the_platform_role_sees_every_tenant_but_owns_nothing(
    postgres_settings: Settings, owner_engine: Engine, tables: list[str], counts: dict[str, dict[str, int]]
) -> None:
    role = make_url(postgres_settings.platform_database_url).username
    assert role
    assert role != make_url(postgres_settings.database_url).username
    engine = create_engine(postgres_settings.platform_database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            for table in tables:
                total = conn.scalar(text(f"SELECT count(*) FROM {table}"))  # noqa: S608
                assert total is not None
                assert total >= sum(counts[table].values()), table
    finally:
        engine.dispose()
    with owner_engine.connect() as conn:
        flags = conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}).one()
        assert tuple(flags) == (False, True)
        owners = dict(
            conn.execute(text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'")).all()
        )
        assert not [t for t in tables if owners.get(t) == role]


def test_scoped_to_tenant_a_the_application_role_sees_only_a_rows(
    app_engine: Engine,
    owner_engine: Engine,
    two_tenants: TwoTenants,
    tables: list[str],
    counts: dict[str, dict[str, int]],
) -> None:
    a, b = two_tenants.a, two_tenants.b
    with app_engine.connect() as conn:
        _scope(conn, a.tenant.id)
        for table in tables:
            grouped = conn.execute(text(f"SELECT tenant_id, count(*) FROM {table} GROUP BY tenant_id"))  # noqa: S608
            seen = dict(grouped.all())
            assert set(seen) == {a.tenant.id}, (table, seen)
            # All of A's rows (rows are only ever added while the suite runs, so at least those counted before).
            with owner_engine.connect() as owner:
                now = owner.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :a"), {"a": a.tenant.id})  # noqa: S608
            assert counts[table][a.tenant.id] <= seen[a.tenant.id] <= now, (table, seen, counts[table], now)
            asked_for_b = conn.scalar(text(f"SELECT count(*) FROM {table} WHERE tenant_id = :b"), {"b": b.tenant.id})  # noqa: S608
            assert asked_for_b == 0, table
        # A's objects by id, B's not, however the query names them.
        assert conn.scalar(text("SELECT count(*) FROM customers WHERE id = :id"), {"id": a.customer_id}) == 1
        assert conn.scalar(text("SELECT count(*) FROM customers WHERE id = :id"), {"id": b.customer_id}) == 0
        joined = conn.scalar(
            text("SELECT count(*) FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.id = :id"),
            {"id": b.invoice_id},
        )
        assert joined == 0


def _copy_row_for(table: str, source_id: str, tenant_id: str) -> tuple[str, dict[str, str]]:
    """An INSERT that copies one row under a new id and another tenant_id."""
    columns = [c.name for c in Base.metadata.tables[table].columns]
    values = [":new_id" if c == "id" else ":tenant" if c == "tenant_id" else c for c in columns]
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM {table} WHERE id = :source"
    )
    return sql, {"new_id": new_id("iso"), "tenant": tenant_id, "source": source_id}


def _first_id(conn: Connection, table: str) -> str:
    row_id = conn.scalar(text(f"SELECT id FROM {table} ORDER BY id LIMIT 1"))  # noqa: S608
    assert row_id is not None, table
    return str(row_id)


def test_scoped_to_tenant_a_the_application_role_cannot_write_tenant_b_rows(
    app_engine: Engine, two_tenants: TwoTenants, tables: list[str], counts: dict[str, dict[str, int]]
) -> None:
    a, b = two_tenants.a.tenant.id, two_tenants.b.tenant.id
    refused_insert: list[str] = []
    refused_move: list[str] = []
    for table in tables:
        with app_engine.connect() as conn:
            _scope(conn, a)
            source = _first_id(conn, table)
            sql, params = _copy_row_for(table, source, b)
            with pytest.raises(DBAPIError, match="row-level security") as raised:
                conn.execute(text(sql), params)
            assert raised.value.orig is not None
            refused_insert.append(table)
            conn.rollback()
            # Nor can an A row be handed over to B.
            _scope(conn, a)
            with pytest.raises(DBAPIError, match="row-level security"):
                conn.execute(text(f"UPDATE {table} SET tenant_id = :b WHERE id = :id"), {"b": b, "id": source})  # noqa: S608
            refused_move.append(table)
            conn.rollback()
    assert refused_insert == tables
    assert refused_move == tables

    # The same copy for A itself goes in: the refusals above are about the tenant, not about rights.
    with app_engine.connect() as conn:
        _scope(conn, a)
        sql, params = _copy_row_for("events", _first_id(conn, "events"), a)
        assert conn.execute(text(sql), params).rowcount == 1
        conn.rollback()

    # B's rows are out of reach of UPDATE and DELETE too: zero rows touched, nothing changed.
    with app_engine.connect() as conn:
        _scope(conn, a)
        renamed = conn.execute(text("UPDATE customers SET name = 'taken' WHERE tenant_id = :b"), {"b": b})
        deleted = conn.execute(text("DELETE FROM events WHERE tenant_id = :b"), {"b": b})
        assert (renamed.rowcount, deleted.rowcount) == (0, 0)
        conn.rollback()


def test_every_tenant_owned_table_has_row_level_security_and_a_policy(owner_engine: Engine, tables: list[str]) -> None:
    with owner_engine.connect() as conn:
        classes = conn.execute(
            text(
                "SELECT c.relname, c.relrowsecurity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind = 'r'"
            )
        )
        enabled = dict(classes.all())
        policies: dict[str, list[tuple[str, str, str]]] = {}
        for table, cmd, qual, check in conn.execute(
            text("SELECT tablename, cmd, qual, with_check FROM pg_policies WHERE schemaname = 'public'")
        ):
            policies.setdefault(table, []).append((cmd, qual or "", check or ""))
    without_rls = sorted(t for t in tables if not enabled.get(t))
    assert not without_rls, f"tenant-owned tables without ROW LEVEL SECURITY enabled: {', '.join(without_rls)}"
    without_policy = sorted(t for t in tables if t not in policies)
    assert not without_policy, f"tenant-owned tables without a policy in pg_policies: {', '.join(without_policy)}"
    for table in tables:
        assert any(
            cmd == "ALL" and "mvne.tenant_id" in qual and "mvne.tenant_id" in check
            for cmd, qual, check in policies[table]
        ), (table, policies[table])


def test_the_application_role_cannot_bypass_the_policies(
    postgres_settings: Settings, owner_engine: Engine, tables: list[str]
) -> None:
    role = make_url(postgres_settings.database_url).username
    assert role
    assert role != make_url(owner_url(postgres_settings)).username
    with owner_engine.connect() as conn:
        flags = conn.execute(text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}).one()
        assert tuple(flags) == (False, False), f"role {role}: superuser={flags[0]}, bypassrls={flags[1]}"
        listed = conn.execute(text("SELECT tablename, tableowner FROM pg_tables WHERE schemaname = 'public'"))
        owners = dict(listed.all())
        owned = sorted(t for t in tables if owners.get(t) == role)
        assert not owned, f"the application role owns {', '.join(owned)}: owners bypass row-level security"
        # Nor may it act as the owner through role membership.
        member_of_owner = sorted(
            t for t in tables if conn.scalar(text("SELECT pg_has_role(:r, :o, 'MEMBER')"), {"r": role, "o": owners[t]})
        )
        assert not member_of_owner, f"the application role is a member of the owner of {', '.join(member_of_owner)}"
