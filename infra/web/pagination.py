"""Cursor pagination on every list: `limit` and `starting_after`, answered with `data` and `has_more`."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select
from sqlalchemy.orm import Session


class PageArgs(Schema):
    limit = fields.Integer(
        load_default=20, validate=validate.Range(1, 100), metadata={"description": "How many items, 1 to 100."}
    )
    starting_after = fields.String(
        load_default=None, metadata={"description": "The id of the last item of the previous page."}
    )


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """A `{data: [item], has_more}` schema for one item schema."""
    return Schema.from_dict(
        {"data": fields.List(fields.Nested(item), required=True), "has_more": fields.Boolean(required=True)},
        name=name,
    )


def paginate(session: Session, stmt: Select[Any], id_column: Any, args: dict[str, Any]) -> dict[str, Any]:
    """Run `stmt` one page at a time in id order (ids are time-ordered, so this is creation order)."""
    limit: int = args["limit"]
    if args.get("starting_after"):
        stmt = stmt.where(id_column > args["starting_after"])
    rows = list(session.scalars(stmt.order_by(id_column).limit(limit + 1)))
    return {"data": rows[:limit], "has_more": len(rows) > limit}
