"""Cursor pagination on every list: `limit` and `starting_after`, answered with `data` and `has_more`."""

from __future__ import annotations

import re
import threading
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from mvne.infra.fields import Integer, Text
from mvne.infra.web.problems import ProblemError

# A public id: a lowercase type prefix, "_", then 26 characters of Crockford base32 (see mvne.infra.ids).
CURSOR_PATTERN = r"^[a-z]{2,8}_[0-9A-HJKMNP-TV-Z]{26}$"
_CURSOR = re.compile(CURSOR_PATTERN)


class PageArgs(Schema):
    limit = Integer(
        from_text=True,
        load_default=20,
        validate=validate.Range(1, 100),
        metadata={"description": "How many items, 1 to 100."},
    )
    starting_after = Text(
        load_default=None,
        allow_none=False,
        max_length=64,
        metadata={
            "description": "The id of the last item of the previous page (an id of this list).",
            "pattern": CURSOR_PATTERN,
        },
    )


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """A `{data: [item], has_more}` schema for one item schema."""
    return Schema.from_dict(
        {"data": fields.List(fields.Nested(item), required=True), "has_more": fields.Boolean(required=True)},
        name=name,
    )


# The id prefix of each paginated column, learnt from a row of its table (ids of one table share it).
_prefixes: dict[str, str] = {}
_prefixes_lock = threading.Lock()


def _prefix_of(session: Session, id_column: Any) -> str | None:
    key = f"{id_column.table.name}.{id_column.key}"
    prefix = _prefixes.get(key)
    if prefix is None:
        some_id = session.scalar(select(id_column).limit(1))
        if some_id is None:
            return None
        prefix = str(some_id).split("_", 1)[0]
        with _prefixes_lock:
            _prefixes[key] = prefix
    return prefix


def check_cursor(session: Session, id_column: Any, cursor: str, prefix: str | None = None) -> None:
    """Refuse a `starting_after` that cannot be an id of this list: a 400 problem `invalid_cursor`."""
    expected = prefix or _prefix_of(session, id_column)
    if _CURSOR.fullmatch(cursor) and (expected is None or cursor.startswith(f"{expected}_")):
        return
    shape = f"{expected}_ followed by 26 characters" if expected else "an id of this list"
    raise ProblemError(
        400,
        "invalid_cursor",
        f"starting_after must be the id of an item of this list ({shape}).",
        errors={"starting_after": [f"Not an id of this list; expected {shape}."]},
    )


def paginate(
    session: Session, stmt: Select[Any], id_column: Any, args: dict[str, Any], *, prefix: str | None = None
) -> dict[str, Any]:
    """Run `stmt` one page at a time in id order (ids are time-ordered, so this is creation order).

    `prefix` is the list's id prefix (`cus`); when not given it is learnt from the table.
    """
    limit: int = args["limit"]
    cursor = args.get("starting_after")
    if cursor is not None:
        check_cursor(session, id_column, cursor, prefix)
        stmt = stmt.where(id_column > cursor)
    rows = list(session.scalars(stmt.order_by(id_column).limit(limit + 1)))
    return {"data": rows[:limit], "has_more": len(rows) > limit}
