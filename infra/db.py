"""Database: declarative base, portable column types, engine and tenant-scoped sessions.

Every tenant-owned model mixes in `TenantOwned`. A session carries its scope in `session.info`:
a tenant id, or the platform scope for operators and relays. Selects on tenant-owned models get the
tenant filter added by an ORM event, so no query repeats it; a session with no scope refuses such
queries outright. On PostgreSQL the scope is also set as `mvne.tenant_id` for row-level security.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
from collections.abc import Collection, Iterator
from decimal import Decimal
from typing import Any, ClassVar, TypeVar, TypeVarTuple, cast

from sqlalchemy import (
    JSON,
    ColumnElement,
    DateTime,
    Dialect,
    MetaData,
    Numeric,
    Select,
    String,
    Table,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    select,
    text,
    true,
    tuple_,
)
from sqlalchemy import (
    cast as cast_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    ORMExecuteState,
    QueryableAttribute,
    Session,
    declared_attr,
    mapped_column,
    sessionmaker,
    with_loader_criteria,
)
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import visitors
from sqlalchemy.types import NullType, TypeDecorator

from mvne.infra.errors import NotFound

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC one is required")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Amount(TypeDecorator[Decimal]):
    """Exact decimal money: NUMERIC(20, 6) on PostgreSQL, text on SQLite (whose NUMERIC is a float)."""

    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(Numeric(20, 6, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise TypeError(f"money must be a Decimal, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        # PostgreSQL's driver gives a Decimal already; SQLite keeps the text.
        return value if value is None or isinstance(value, Decimal) else Decimal(str(value))


class ExactAmount(Amount):
    """A decimal kept before rounding: NUMERIC(40, 20) on PostgreSQL, text on SQLite."""

    impl = Numeric(40, 20)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(48))
        return dialect.type_descriptor(Numeric(40, 20, asdecimal=True))


JSONValue = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), Decimal: Amount(), dict[str, Any]: JSONValue}


class TenantOwned:
    """Mixin for rows that belong to one tenant; isolation is enforced on them.

    `tenant_id` has an index of its own unless the class sets `tenant_id_index = False`: a hot table whose
    lookups go by line or by a key that leads with the tenant. There an index on the tenant alone only
    tempts the planner, its statistics stale while a large file goes in, to read every row of the tenant
    and filter them one by one.
    """

    tenant_id_index: ClassVar[bool] = True

    @declared_attr
    def tenant_id(cls) -> Mapped[str]:  # noqa: N805 (declared_attr is a class-level hook)
        return mapped_column(String(40), index=cls.tenant_id_index, nullable=False)


# A column to match keys on: a mapped attribute or a Core column.
Keyed = ColumnElement[Any] | QueryableAttribute[Any]
Ts = TypeVarTuple("Ts")


def _array_of(column: Keyed) -> ARRAY[Any]:
    """The PostgreSQL array type of a column's values (a foreign key's type may not be resolved yet: text)."""
    element_type = column.type
    if isinstance(element_type, TypeDecorator):
        element_type = element_type.impl_instance
    if isinstance(element_type, NullType):
        element_type = String()
    return ARRAY(element_type)


def _array_element(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given where an aware UTC one is required")
        return '"' + value.isoformat() + '"'
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"no array text for {type(value).__name__}")


def pg_array(values: Collection[Any]) -> str:
    """PostgreSQL's text form of a one-dimensional array (str, int, Decimal, bool, dates and datetimes, None).

    The driver's own dumper tests every string with a regular expression; ids and numbers, the usual
    keys, are joined here in one call instead, so a batch's arrays cost next to nothing to send.
    """
    items = list(values)
    kinds = set(map(type, items))
    if kinds == {str}:
        joined = "".join(items)
        if '"' not in joined and "\\" not in joined:
            return '{"' + '","'.join(items) + '"}'
    elif kinds == {int}:
        return "{" + ",".join(map(str, items)) + "}"
    if Decimal in kinds or (bool in kinds and int in kinds):
        return "{" + ",".join(map(_array_element, items)) + "}"
    # A column's values often repeat (a period's bounds, flags, NULLs): each distinct one is written once.
    # Not for amounts (1.0 and 1.00 are one key to a dict, but not one text) nor where True meets 1.
    texts = {value: _array_element(value) for value in set(items)}
    return "{" + ",".join(map(texts.__getitem__, items)) + "}"


def array_param(values: Collection[Any], array_type: ARRAY[Any]) -> ColumnElement[Any]:
    """An array parameter of `array_type`, sent as one text value (`pg_array`) and cast by the server."""
    # Untyped (no bind cast): the server takes the text as the array type itself when it parses the statement,
    # not as a string converted row after row (which also keeps it out of index conditions).
    return cast_(bindparam(None, pg_array(values), type_=NullType()), array_type)


def one_of(session: Session, column: Keyed, values: Collection[Any]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as `column = ANY(:array)`, one parameter however many values.

    A statement of thousands of placeholders costs the driver and the server a parse each time; an array
    keeps the statement the same whatever the count, so it is prepared once.
    """
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(array_param(values, _array_of(column)))
    return column.in_(list(values))


def for_each_key(
    session: Session, columns: Keyed | tuple[Keyed, ...], keys: Collection[Any], inner: Select[*Ts]
) -> Select[*Ts]:
    """`inner` for each of `keys` (matched on `columns`; keys are tuples when there are several columns), the
    statement's rows key after key in sorted order.

    On PostgreSQL the keys are one array parameter per column, unnested, and `inner` runs as a LATERAL
    subquery per key: an index probe on the columns whatever the planner believes of the table. A table
    filled faster than it is analyzed otherwise gets a join that scans the whole table once per key
    (seconds a statement). A locking clause on `inner` locks key after key, so callers lock in one order.
    Elsewhere `columns IN keys`.
    """
    matched = columns if isinstance(columns, tuple) else (columns,)
    ordered = sorted(set(keys))
    if session.get_bind().dialect.name != "postgresql":
        if len(matched) == 1:
            return inner.where(matched[0].in_(ordered))
        return inner.where(tuple_(*matched).in_(ordered))
    values = [ordered] if len(matched) == 1 else [[key[n] for key in ordered] for n in range(len(matched))]
    names = [f"key{n}" for n in range(len(matched))]
    arrays = [array_param(column_values, _array_of(c)) for c, column_values in zip(matched, values, strict=True)]
    wanted = func.unnest(*arrays).table_valued(*names).render_derived()
    # OFFSET 0 keeps the subquery whole: flattened, it is a join again, for the planner to order.
    per_key = inner.where(*(c == wanted.c[name] for c, name in zip(matched, names, strict=True))).offset(0).lateral()
    return cast("Select[*Ts]", select(*per_key.c).select_from(wanted).join(per_key, true()))


def insert_from_arrays(
    session: Session, table: Table, rows: list[dict[str, Any]], *, conflict_columns: tuple[str, ...]
) -> None:
    """Insert rows (all with the same keys) on PostgreSQL as one INSERT ... SELECT FROM unnest(one array per
    column) ... ON CONFLICT DO NOTHING: the statement's cost no longer grows with per-row parameter handling."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    names = list(rows[0])
    arrays = []
    params: dict[str, Any] = {}
    for n, name in enumerate(names):
        column_type = table.c[name].type.compile(dialect=dialect)
        arrays.append(f"CAST(:a{n} AS {column_type}[])")
        params[f"a{n}"] = pg_array([row[name] for row in rows])
    session.execute(
        text(
            f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({', '.join(arrays)}) "  # noqa: S608
            f"ON CONFLICT ({', '.join(conflict_columns)}) DO NOTHING"
        ),
        params,
    )


# Platform tables whose rows name a tenant but must outlive it (the ledgers that keep number ranges
# and SIM serials from being handed out twice, the job ledger) carry this key in their table `info`;
# offboarding a tenant exports their rows and erases its rows everywhere else.
KEPT_AFTER_TENANT = "kept_after_tenant"

M = TypeVar("M")


def get_or_raise(session: Session, model: type[M], ident: str, error: type[NotFound], noun: str) -> M:
    """The row with this id, as far as the session's scope lets it be seen, or the domain's not-found error."""
    row = session.get(model, ident)
    if row is None:
        raise error(f"No {noun} {ident}.")
    return row


class UnscopedQuery(RuntimeError):
    """A query touched tenant-owned rows from a session with no tenant and no platform scope."""


def tenant_owned_tables() -> list[str]:
    return sorted(
        cast(Table, mapper.local_table).name
        for mapper in Base.registry.mappers
        if issubclass(mapper.class_, TenantOwned)
    )


@functools.cache
def _tenant_table_names() -> frozenset[str]:
    from mvne.infra.models import load_models

    load_models()  # the whole schema, whatever this process happened to import so far
    return frozenset(tenant_owned_tables())


@event.listens_for(Session, "do_orm_execute")
def _scope_tenant_queries(state: ORMExecuteState) -> None:
    if not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get("all_tenants"):
        return
    info = state.session.info
    tenant_id = info.get("tenant_id")
    if tenant_id is None:
        if info.get("platform"):
            return
        # Any mention counts: a count, an EXISTS, a join or a subquery reads tenant rows as surely as a select.
        owned = _tenant_table_names()
        touched = {
            element.name
            for element in visitors.iterate(cast(Any, state.statement))
            if isinstance(element, Table) and element.name in owned
        }
        if touched:
            raise UnscopedQuery(f"query on {', '.join(sorted(touched))} from a session without a tenant scope")
        return
    state.statement = state.statement.options(
        with_loader_criteria(TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True)
    )


@event.listens_for(Session, "before_flush")
def _stamp_tenant(session: Session, flush_context: Any, instances: Any) -> None:
    tenant_id = session.info.get("tenant_id")
    for obj in session.new:
        if not isinstance(obj, TenantOwned):
            continue
        if obj.tenant_id is None:
            if tenant_id is None:
                raise UnscopedQuery(f"new {type(obj).__name__} without a tenant")
            obj.tenant_id = tenant_id
        elif tenant_id is not None and obj.tenant_id != tenant_id:
            raise UnscopedQuery(f"new {type(obj).__name__} for another tenant than the session's")


@event.listens_for(Session, "after_begin")
def _set_rls_scope(session: Session, transaction: Any, connection: Any) -> None:
    if connection.dialect.name != "postgresql":
        return
    # Transaction-local: the pooled connection forgets the tenant when this transaction ends.
    connection.execute(
        text("SELECT set_config('mvne.tenant_id', :tenant, true)"), {"tenant": session.info.get("tenant_id") or ""}
    )


def _json_serializer(value: Any) -> str:
    return json.dumps(value, default=str, separators=(",", ":"))


def build_engine(url: str, *, pool: bool = True) -> Engine:
    """An engine with the pragmas SQLite needs to behave like a server database."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            json_serializer=_json_serializer,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=None if pool else NullPool,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, record: Any) -> None:
            # Take control of transactions so BEGIN IMMEDIATE serialises writers.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(
        url,
        json_serializer=_json_serializer,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        poolclass=None if pool else NullPool,
    )


class Database:
    """The engine and the session factory, with scoped-session helpers for requests and jobs."""

    def __init__(self, url: str, *, platform_url: str | None = None, pool: bool = True) -> None:
        self.url = url
        self.engine = build_engine(url, pool=pool)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        # Platform-scoped sessions (relay, operators, routing usage files) may connect as a role that
        # row-level security lets through; tenant sessions never can, whatever they set.
        self.platform_engine = build_engine(platform_url, pool=pool) if platform_url else self.engine
        self._platform_factory = sessionmaker(self.platform_engine, expire_on_commit=False)

    def session(self, *, tenant_id: str | None = None, platform: bool = False) -> Session:
        """A new session in one scope: a tenant, or the whole platform."""
        if tenant_id is not None and platform:
            raise ValueError("a session is scoped to one tenant or to the platform, not both")
        session = self._platform_factory() if platform else self._factory()
        session.info["tenant_id"] = tenant_id
        session.info["platform"] = platform
        return session

    @contextlib.contextmanager
    def transaction(self, *, tenant_id: str | None = None, platform: bool = False) -> Iterator[Session]:
        """A unit of work: commits when the block ends, rolls back when it raises."""
        session = self.session(tenant_id=tenant_id, platform=platform)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()
        if self.platform_engine is not self.engine:
            self.platform_engine.dispose()
