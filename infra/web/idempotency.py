"""`Idempotency-Key` on POST: a retried request gets the first response; another body gets 422.

The key is stored in the same transaction as the change it guards, so a change and its key
commit together or not at all; two racing requests with one key cannot both commit.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from flask import Response, g, request
from sqlalchemy import Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from mvne.infra.db import Base, utcnow
from mvne.infra.ids import new_id
from mvne.infra.web.problems import ProblemError

HEADER = "Idempotency-Key"


class IdempotencyKey(Base):
    """A POST's key and first response, per API client (a platform table: operators have no tenant)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("client_id", "key"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40))
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    body: Mapped[str] = mapped_column(Text)
    location: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode())
    digest.update(request.full_path.encode())
    digest.update(b"\0")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def check_replay(platform_session: Session, client_id: str, tenant_id: str | None) -> Response | None:
    """Before the view: the stored response for a known key, or None to go on (and remember the key)."""
    key = request.headers.get(HEADER)
    if request.method != "POST" or key is None:
        return None
    if not 1 <= len(key) <= 255:
        raise ProblemError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters.")
    fingerprint = _request_hash()
    stored = platform_session.scalar(
        select(IdempotencyKey).where(IdempotencyKey.client_id == client_id, IdempotencyKey.key == key)
    )
    if stored is None:
        g.idempotency = (client_id, tenant_id, key, fingerprint)
        return None
    if stored.request_hash != fingerprint:
        raise ProblemError(
            422, "idempotency_key_reused", "This Idempotency-Key was used with another request; use a new key."
        )
    response = Response(stored.body, status=stored.status, mimetype="application/json")
    if stored.location:
        response.headers["Location"] = stored.location
    response.headers["Idempotent-Replayed"] = "true"
    return response


def remember(session: Session, response: Response) -> None:
    """After a successful view: store its response with the key, in the view's transaction."""
    pending = g.pop("idempotency", None)
    if pending is None or response.status_code >= 400:
        return
    client_id, tenant_id, key, fingerprint = pending
    session.add(
        IdempotencyKey(
            id=new_id("idk"),
            client_id=client_id,
            tenant_id=tenant_id,
            key=key,
            request_hash=fingerprint,
            status=response.status_code,
            body=response.get_data(as_text=True),
            location=response.headers.get("Location"),
        )
    )
