"""Many usage records written at once, each at most once: COPY on PostgreSQL, multi-row inserts elsewhere.

Rating builds its rows in memory; this module is the only writer of `usage_records` rows in bulk.
A record already stored for its tenant (the unique index on tenant and record id) is skipped, never
written twice, and the caller learns which records were written.

On PostgreSQL the rows go in with COPY. COPY cannot skip a conflicting row and is refused on a table
whose row-level security binds the session, so:
- a connection that row-level security does not bind (the platform's role, the tables' owner) copies
  straight into the table, under a savepoint: a duplicate undoes that COPY and the rows take the path below;
- any other connection (a tenant's) copies into a temporary staging table, then moves the rows with
  INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING record_id, the policies checking every row.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal, cast

import psycopg
from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from mvne.charging.models import UsageRecord

# The columns a rated record fills (the rating path's rows); a caller with more or fewer names them.
USAGE_COLUMNS = (
    "id",
    "tenant_id",
    "record_id",
    "subscription_id",
    "msisdn",
    "service",
    "started_at",
    "quantity",
    "period",
    "allowance_used",
    "overage_quantity",
    "amount",
    "source",
    "received_at",
    "offer_id",
    "allowance_before",
    "overage_unit_price",
    "amount_exact",
)
Method = Literal["auto", "copy", "staging", "insert"]
STAGING_TABLE = "usage_records_staging"
# Rows per multi-row statement where COPY is not used (SQLite allows 32,766 bound values).
INSERT_CHUNK = 500
_TABLE = cast(Table, UsageRecord.__table__)
_KNOWN_COLUMNS = frozenset(_TABLE.c.keys())


def write_usage_rows(
    session: Session,
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str] | None = None,
    *,
    method: Method = "auto",
) -> set[str]:
    """Write usage records (dicts, or tuples in `columns` order) in the session's transaction; the record ids written.

    Rows of record ids the tenant already has are left out, in the database, whatever raced this
    write; so are repeats within `rows` after the first. `method` is for measuring the ways against
    each other; "auto" takes the fastest exactly-once way for the session's connection.
    """
    if not rows:
        return set()
    names = tuple(columns) if columns is not None else _columns_of(rows[0])
    unknown = sorted(set(names) - _KNOWN_COLUMNS)
    if unknown or "record_id" not in names or "tenant_id" not in names:
        raise ValueError(f"usage rows need tenant_id and record_id among known columns; unknown: {unknown}")
    tuples = _as_tuples(rows, names)
    if session.get_bind().dialect.name != "postgresql":
        return _insert_rows(session, tuples, names)
    if method == "insert":
        return _insert_rows(session, tuples, names)
    driver = _driver_connection(session)
    types = _column_types(session, driver, names)
    # COPY straight in is refused where row-level security binds: "copy" then stages as "auto" does.
    if method == "staging" or _rls_binds(session, driver):
        return _staged(driver, tuples, names, types)
    written = _copied(driver, tuples, names, types)
    return written if written is not None else _staged(driver, tuples, names, types)


def _columns_of(first: Mapping[str, Any] | Sequence[Any]) -> tuple[str, ...]:
    if isinstance(first, Mapping):
        return tuple(first)
    if len(first) != len(USAGE_COLUMNS):
        raise ValueError(f"tuples of {len(first)} values need their columns named")
    return USAGE_COLUMNS


def _as_tuples(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]], names: tuple[str, ...]
) -> list[tuple[Any, ...]]:
    if isinstance(rows[0], Mapping):
        pick = itemgetter(*names)
        if len(names) == 1:
            return [(pick(row),) for row in cast(Sequence[Mapping[str, Any]], rows)]
        return [pick(row) for row in cast(Sequence[Mapping[str, Any]], rows)]
    if isinstance(rows[0], tuple):
        return list(cast(Sequence[tuple[Any, ...]], rows))
    return [tuple(row) for row in cast(Sequence[Sequence[Any]], rows)]


def _driver_connection(session: Session) -> psycopg.Connection[Any]:
    """The psycopg connection under the session's, in the session's transaction (begun if it was not)."""
    return cast(psycopg.Connection[Any], session.connection().connection.driver_connection)


def _rls_binds(session: Session, driver: psycopg.Connection[Any]) -> bool:
    """Whether row-level security applies to the connection's role on usage_records (asked once per connection)."""
    info = session.connection().info
    if "usage_rls_binds" not in info:
        row = driver.execute("SELECT row_security_active('usage_records')").fetchone()
        info["usage_rls_binds"] = bool(row and row[0])
    return bool(info["usage_rls_binds"])


def _unique(tuples: list[tuple[Any, ...]], names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """The rows, each (tenant, record id) once: the first wins, as ON CONFLICT DO NOTHING would keep it."""
    tenant_at, record_at = names.index("tenant_id"), names.index("record_id")
    seen: set[tuple[Any, Any]] = set()
    kept = []
    for row in tuples:
        key = (row[tenant_at], row[record_at])
        if key not in seen:
            seen.add(key)
            kept.append(row)
    return kept


def _column_types(session: Session, driver: psycopg.Connection[Any], names: tuple[str, ...]) -> list[int]:
    """The type oids of usage_records' columns `names` (read once per connection): COPY then dumps each value as
    its column's type (a list as JSON for `bucket_parts`) rather than guessing from the Python value."""
    info = session.connection().info
    if "usage_column_types" not in info:
        rows = driver.execute(
            "SELECT attname, atttypid::int FROM pg_attribute "
            "WHERE attrelid = 'usage_records'::regclass AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
        info["usage_column_types"] = {str(name): int(oid) for name, oid in rows}
    known: dict[str, int] = info["usage_column_types"]
    return [known[name] for name in names]


def _copy(
    driver: psycopg.Connection[Any], table: str, tuples: list[tuple[Any, ...]], names: tuple[str, ...], types: list[int]
) -> None:
    with driver.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
        copy.set_types(types)
        write = copy.write_row
        for row in tuples:
            write(row)


def _copied(
    driver: psycopg.Connection[Any], tuples: list[tuple[Any, ...]], names: tuple[str, ...], types: list[int]
) -> set[str] | None:
    """COPY straight into the table under a savepoint; None (and nothing written) when a record is there already."""
    rows = _unique(tuples, names)
    driver.execute("SAVEPOINT mvne_usage_copy")
    try:
        _copy(driver, "usage_records", rows, names, types)
    except psycopg.errors.UniqueViolation:
        driver.execute("ROLLBACK TO SAVEPOINT mvne_usage_copy")
        return None
    driver.execute("RELEASE SAVEPOINT mvne_usage_copy")
    record_at = names.index("record_id")
    return {row[record_at] for row in rows}


def _staged(
    driver: psycopg.Connection[Any], tuples: list[tuple[Any, ...]], names: tuple[str, ...], types: list[int]
) -> set[str]:
    """COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING into usage_records."""
    listed = ", ".join(names)
    # Kept for the connection's life and emptied at each commit: made once, not per batch.
    driver.execute(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGING_TABLE} "
        "(LIKE usage_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
    )
    _copy(driver, STAGING_TABLE, _unique(tuples, names), names, types)
    inserted = driver.execute(
        f"INSERT INTO usage_records ({listed}) SELECT {listed} FROM {STAGING_TABLE} "  # noqa: S608 (the table's own column names)
        "ON CONFLICT (tenant_id, record_id) DO NOTHING RETURNING record_id"
    ).fetchall()
    driver.execute(f"TRUNCATE {STAGING_TABLE}")
    return {row[0] for row in inserted}


def _insert_rows(session: Session, tuples: list[tuple[Any, ...]], names: tuple[str, ...]) -> set[str]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING record_id, sent as multi-row statements (insertmanyvalues)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        upsert = sqlite_insert  # type: ignore[assignment]
    stmt = (
        upsert(_TABLE).on_conflict_do_nothing(index_elements=["tenant_id", "record_id"]).returning(_TABLE.c.record_id)
    )
    written: set[str] = set()
    for chunk in _chunks(_unique(tuples, names), INSERT_CHUNK):
        written.update(session.execute(stmt, [dict(zip(names, row, strict=True)) for row in chunk]).scalars())
    return written


def _chunks(items: list[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
