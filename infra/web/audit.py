"""The append-only audit log: who changed what through the API, with the values before and after.

A session opened for an authenticated request (`mvne.infra.web.context.db_session`) carries its caller
in `session.info`; after each flush of such a session, every inserted, updated or deleted mapped row is
written to `audit_events` on the same connection, so a rolled-back request leaves no audit row.
Only the changed columns are kept, and never a column that may hold a secret. On PostgreSQL the
application roles may only read and insert this table (see `mvne.infra.migrate`).

Changes made by bulk `update()` / `delete()` statements are not seen here (they skip the unit of work).

Platform operators' reads are recorded too (`record_read`, action `read`): a tenant sees in its own log
when an operator looked at its data, and which route they used.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields
from sqlalchemy import String, event, insert, inspect
from sqlalchemy.orm import Mapped, Session, mapped_column

from mvne.infra.db import KEPT_AFTER_TENANT, Base, JSONValue, utcnow
from mvne.infra.ids import new_id

# `session.info` key holding the request's caller (an `AuditActor`); without it nothing is recorded.
ACTOR_INFO = "audit_actor"
# A table whose `info` carries this key is not audited (an append-only log of its own, like the event log).
NOT_AUDITED = "not_audited"
# Column names holding any of these are never recorded; `ki` only as a whole word (`ki_enc`, not `kind`).
SECRET_PARTS = ("secret", "hash", "key", "opc")
SECRET_WORDS = ("ki",)


@dataclass(frozen=True)
class AuditActor:
    """Who made a change: the client it came through, and the person (staff user, subscriber) if any."""

    client_id: str
    tenant_id: str | None
    request_id: str | None
    kind: str | None = None
    actor_id: str | None = None

    @property
    def actor_type(self) -> str:
        if self.kind:
            return self.kind
        return "operator" if self.tenant_id is None else "client"


class AuditEvent(Base):
    """One change of one row made through the API. A platform table: operator-wide changes have no tenant."""

    __tablename__ = "audit_events"
    __table_args__ = {"info": {KEPT_AFTER_TENANT: True, NOT_AUDITED: True}}  # append-only: outlives a tenant

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    actor_type: Mapped[str] = mapped_column(String(20))
    client_id: Mapped[str] = mapped_column(String(40))
    # The person behind the change (a staff user or a subscriber account), or the client itself.
    actor_id: Mapped[str | None] = mapped_column(String(40))
    object_type: Mapped[str] = mapped_column(String(80))
    object_id: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(10))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONValue)
    request_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AuditEventSchema(Schema):
    id = fields.String()
    tenant_id = fields.String(allow_none=True)
    actor_type = fields.String(
        metadata={
            "description": "`client` (a tenant's API client), `staff` (a tenant's staff user), `subscriber` "
            "(through one of the tenant's apps) or `operator`."
        }
    )
    client_id = fields.String(metadata={"description": "The API client (or console session) the change came through."})
    actor_id = fields.String(
        allow_none=True, metadata={"description": "Who made the change: the staff user, subscriber or client."}
    )
    object_type = fields.String(metadata={"description": "The kind of object changed (its table name)."})
    object_id = fields.String()
    action = fields.String(
        metadata={"description": "`create`, `update` or `delete`; `read` for an operator's read of a tenant's data."}
    )
    before = fields.Dict(allow_none=True, metadata={"description": "The changed columns before (secrets never)."})
    after = fields.Dict(allow_none=True, metadata={"description": "The changed columns after (secrets never)."})
    request_id = fields.String(allow_none=True, metadata={"description": "The request's `X-Request-Id`."})
    created_at = fields.AwareDateTime()


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(part in lowered for part in SECRET_PARTS) or any(w in lowered.split("_") for w in SECRET_WORDS)


def _json(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, dict):
        result: Any = {str(k): _json(v) for k, v in value.items()}
    elif isinstance(value, list | tuple | set):
        result = [_json(v) for v in value]
    elif isinstance(value, dt.datetime | dt.date | dt.time):
        result = value.isoformat()
    elif isinstance(value, bytes):
        result = None  # binary columns hold sealed material; never copied out
    elif value is None or isinstance(value, bool | int | float | str):
        result = value
    else:
        result = str(value)  # Decimal and the like: their exact text
    return result


def _audited(obj: Any) -> bool:
    mapper = inspect(obj).mapper
    table = mapper.local_table
    if type(obj).__module__.startswith("mvne.infra."):
        return False  # the kit's own bookkeeping: outbox, idempotency keys, job ledger, this log
    return not getattr(table, "info", {}).get(NOT_AUDITED)


def _columns(obj: Any) -> list[tuple[str, str]]:
    """(attribute key, column name) of each recordable column."""
    mapper = inspect(obj).mapper
    out = []
    for prop in mapper.column_attrs:
        name = prop.columns[0].name
        if not (is_secret(prop.key) or is_secret(name)):
            out.append((prop.key, name))
    return out


def _object_id(obj: Any) -> str:
    state = inspect(obj)
    mapper = state.mapper
    values = [state.dict.get(mapper.get_property_by_column(col).key) for col in mapper.primary_key]
    return ",".join(str(v) for v in values)


def _row(obj: Any, actor: AuditActor, action: str, before: Any, after: Any) -> dict[str, Any]:
    state = inspect(obj)
    tenant_id = state.dict.get("tenant_id") if "tenant_id" in state.mapper.attrs else None
    return {
        "id": new_id("aud"),
        "tenant_id": tenant_id or actor.tenant_id,
        "actor_type": actor.actor_type,
        "client_id": actor.client_id,
        "actor_id": actor.actor_id or actor.client_id,
        "object_type": str(state.mapper.local_table.name),
        "object_id": _object_id(obj),
        "action": action,
        "before": before,
        "after": after,
        "request_id": actor.request_id,
        "created_at": utcnow(),
    }


@event.listens_for(Session, "after_flush")
def _record_changes(session: Session, flush_context: Any) -> None:
    # After the statements ran, `new`, `dirty`, `deleted` and each attribute's history still show this flush.
    actor: AuditActor | None = session.info.get(ACTOR_INFO)
    if actor is None:
        return
    rows = []
    for obj in session.new:
        if _audited(obj):
            values = inspect(obj).dict
            after = {name: _json(values[key]) for key, name in _columns(obj) if values.get(key) is not None}
            rows.append(_row(obj, actor, "create", None, after))
    for obj in session.dirty:
        if not _audited(obj):
            continue
        state = inspect(obj)
        before: dict[str, Any] = {}
        after = {}
        for key, name in _columns(obj):
            history = state.attrs[key].history
            if not history.has_changes():
                continue
            old = history.deleted[0] if history.deleted else None
            new = history.added[0] if history.added else None
            if old == new:
                continue
            before[name] = _json(old)
            after[name] = _json(new)
        if after:
            rows.append(_row(obj, actor, "update", before, after))
    for obj in session.deleted:
        if _audited(obj):
            values = inspect(obj).dict
            before = {name: _json(values[key]) for key, name in _columns(obj) if values.get(key) is not None}
            rows.append(_row(obj, actor, "delete", before, None))
    if rows:
        session.connection().execute(insert(AuditEvent), rows)


def record_read(session: Session, actor: AuditActor, *, route: str, object_id: str, tenant_id: str | None) -> None:
    """Record that `actor` read through `route` (an operator's GET), in the request's own transaction."""
    session.execute(
        insert(AuditEvent),
        [
            {
                "id": new_id("aud"),
                "tenant_id": tenant_id,
                "actor_type": actor.actor_type,
                "client_id": actor.client_id,
                "actor_id": actor.actor_id or actor.client_id,
                "object_type": route[:80],
                "object_id": object_id[:200],
                "action": "read",
                "before": None,
                "after": None,
                "request_id": actor.request_id,
                "created_at": utcnow(),
            }
        ],
    )
