"""Offboarding: export every row and object of a tenant to storage, then erase them; the tenant row stays.

The tables are read from the metadata when the job runs, so every domain's tables are covered without
this module knowing the domains: each tenant-owned table, and each platform table with a `tenant_id`
column (API clients, idempotency keys, number blocks, ...). The tenant's rows of each go to
`exports/tenants/<tenant_id>/<table>.jsonl`, one JSON object per row, streamed from the database
through a temporary file (memory does not grow with the tenant); its stored objects
(`tenants/<tenant_id>/...`) are moved under `exports/tenants/<tenant_id>/objects/`; `manifest.json`,
written last, lists each file with its row count and SHA-256. Columns holding secrets (digests of
client secrets, subscribers' password hashes and the digests of their codes and tokens, and whatever is
encrypted at rest: webhook secrets, SIM keys) are left out of the export.

Then, in one transaction, the tenant's rows are deleted, children first (the metadata's
`sorted_tables` reversed), except in platform tables marked `KEPT_AFTER_TENANT` (number ranges and
SIM serials stay retired; the job ledger stays whole), and the tenant row becomes a tombstone:
status `offboarded`, `offboarded_at`, and `export_location`, the manifest's key.

Every step can run again: files are rewritten whole, objects are moved (a moved one is no longer
there to move), erasure is by tenant id, and the export is recorded on the tenant only once complete.
Each delete must remove as many rows as the export counted; rows that arrived in between (usage
rated after the export) make the transaction roll back and the export be taken again.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, cast

from sqlalchemy import Table, delete, select
from sqlalchemy.orm import Session

from mvne.infra.db import KEPT_AFTER_TENANT, Base, Database, tenant_owned_tables, utcnow
from mvne.infra.jobs import PermanentJobError
from mvne.infra.models import load_models
from mvne.infra.storage import Storage
from mvne.tenants.models import Tenant
from mvne.tenants.standing import OFFBOARDED, OFFBOARDING

log = logging.getLogger("mvne.tenants.offboarding")

EXPORT_ROOT = "exports/tenants"
OBJECTS_ROOT = "tenants"
MANIFEST = "manifest.json"
JSONL = "application/x-ndjson"
ROWS_PER_FETCH = 1000
MAX_EXPORTS = 5


class ExportStale(RuntimeError):
    """Rows or objects of the tenant appeared after its export: the export is taken again."""


@dataclass(frozen=True)
class TenantTable:
    table: Table
    owned: bool  # tenant-owned (row-level security applies) rather than a platform table
    erased: bool


def export_prefix(tenant_id: str) -> str:
    return f"{EXPORT_ROOT}/{tenant_id}/"


def tenant_tables() -> list[TenantTable]:
    """Every table holding rows of one tenant, parents before children (the metadata's order)."""
    load_models()
    owned = set(tenant_owned_tables())
    tables = []
    for table in Base.metadata.sorted_tables:
        if table is Tenant.__table__ or "tenant_id" not in table.c:
            continue
        kept = bool(table.info.get(KEPT_AFTER_TENANT))
        tables.append(TenantTable(table, owned=table.name in owned, erased=not kept))
    return tables


def _exported_columns(table: Table) -> list[Any]:
    """Every column but those holding secrets: digests of client secrets, subscribers' password hashes and
    sign-in codes and tokens, anything encrypted at rest."""
    return [c for c in table.columns if "secret" not in c.name and not c.name.endswith(("_encrypted", "_hash"))]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot export a {type(value).__name__}")


def _write_rows(session: Session, table: Table, where: Any, out: IO[bytes]) -> tuple[int, str]:
    """Stream the rows matching `where` as JSON lines into `out`; returns (rows, sha256)."""
    digest = hashlib.sha256()
    count = 0
    statement = select(*_exported_columns(table)).where(where).order_by(*table.primary_key.columns)
    result = session.execute(statement, execution_options={"yield_per": ROWS_PER_FETCH})
    for row in result.mappings():
        line = json.dumps(dict(row), default=_jsonable, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        digest.update(line)
        out.write(line)
        count += 1
    return count, digest.hexdigest()


def _export_table(
    db: Database, storage: Storage, tenant_id: str, table: Table, where: Any, *, erased: bool
) -> dict[str, Any]:
    key = f"{export_prefix(tenant_id)}{table.name}.jsonl"
    with tempfile.TemporaryFile() as spool:
        # One transaction per table: a long export never holds a database-wide lock (SQLite writers).
        with db.transaction(platform=True) as session:
            rows, sha256 = _write_rows(session, table, where, spool)
        size = spool.tell()
        spool.seek(0)
        storage.put_file(key, spool, content_type=JSONL)
    return {"table": table.name, "key": key, "rows": rows, "bytes": size, "sha256": sha256, "erased": erased}


def _move_objects(storage: Storage, tenant_id: str) -> None:
    source = f"{OBJECTS_ROOT}/{tenant_id}/"
    target = f"{export_prefix(tenant_id)}objects/"
    for key in storage.list(source):
        storage.move(key, target + key.removeprefix(source))


def export_tenant(db: Database, storage: Storage, tenant_id: str) -> dict[str, Any]:
    """Write the tenant's export and its manifest (every file rewritten whole); returns the manifest."""
    tenants = cast(Table, Tenant.__table__)
    files = [_export_table(db, storage, tenant_id, tenants, tenants.c.id == tenant_id, erased=False)]
    for entry in tenant_tables():
        table = entry.table
        exported = _export_table(db, storage, tenant_id, table, table.c.tenant_id == tenant_id, erased=entry.erased)
        files.append({**exported, "scope": "tenant" if entry.owned else "platform"})
    _move_objects(storage, tenant_id)
    objects_prefix = f"{export_prefix(tenant_id)}objects/"
    manifest = {
        "tenant_id": tenant_id,
        "exported_at": utcnow().isoformat(),
        "format": "one JSON object per line, one file per table",
        "files": files,
        "objects": [
            {"key": key, "source": f"{OBJECTS_ROOT}/{tenant_id}/{key.removeprefix(objects_prefix)}"}
            for key in storage.list(objects_prefix)
        ],
    }
    storage.put(
        export_prefix(tenant_id) + MANIFEST,
        json.dumps(manifest, indent=2, sort_keys=True).encode(),
        content_type="application/json",
    )
    return manifest


def _erase(db: Database, storage: Storage, tenant_id: str, manifest: dict[str, Any]) -> None:
    """Delete the tenant's rows (children first) and make its row a tombstone, in one transaction."""
    counted = {f["table"]: f["rows"] for f in manifest["files"]}
    if storage.list(f"{OBJECTS_ROOT}/{tenant_id}/"):
        raise ExportStale("objects were stored after the export")
    with db.transaction(platform=True) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.id == tenant_id).with_for_update())
        assert tenant is not None
        for entry in reversed(tenant_tables()):
            if not entry.erased:
                continue
            table = entry.table
            deleted = session.execute(delete(table).where(table.c.tenant_id == tenant_id)).rowcount  # type: ignore[attr-defined]
            if deleted != counted.get(table.name):
                raise ExportStale(f"{table.name}: {deleted} rows to erase, {counted.get(table.name)} exported")
        tenant.status = OFFBOARDED
        tenant.offboarded_at = utcnow()
        tenant.export_location = export_prefix(tenant_id) + MANIFEST


def offboard_tenant(db: Database, storage: Storage, tenant_id: str) -> Tenant | None:
    """Run (or finish) a tenant's offboarding; a tenant already offboarded is left as it is."""
    for _ in range(MAX_EXPORTS):
        with db.transaction(platform=True) as session:
            tenant = session.get(Tenant, tenant_id)
            if tenant is None or tenant.status == OFFBOARDED:
                return tenant
            if tenant.status != OFFBOARDING:
                # Only an operator's offboarding request queues this job, and nothing takes a tenant back from it.
                raise PermanentJobError(f"tenant {tenant_id} is {tenant.status}, not offboarding")
            location = tenant.export_location
        if location is None:
            export_tenant(db, storage, tenant_id)
            location = export_prefix(tenant_id) + MANIFEST
            with db.transaction(platform=True) as session:
                tenant = session.get(Tenant, tenant_id)
                assert tenant is not None
                tenant.export_location = location  # the export is complete: a rerun goes on to erase
        manifest = json.loads(storage.get(location))
        try:
            _erase(db, storage, tenant_id, manifest)
        except ExportStale as stale:
            log.info("tenant data changed during its export; exporting again", extra={"reason": str(stale)})
            with db.transaction(platform=True) as session:
                tenant = session.get(Tenant, tenant_id)
                assert tenant is not None
                tenant.export_location = None
            continue
        with db.transaction(platform=True) as session:
            return session.get(Tenant, tenant_id)
    raise ExportStale(f"tenant {tenant_id} kept changing during {MAX_EXPORTS} exports")
