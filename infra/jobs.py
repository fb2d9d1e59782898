"""Jobs: the registry of actors, the broker, the transactional outbox and its relay, dead letters.

A change that needs background work writes an `outbox_messages` row in its own transaction
(`enqueue`). The relay moves committed rows to the broker; Dramatiq actors do the work. Actors are
registered here by name and bound to whichever broker the process runs (in-memory in embedded mode,
Redis in production), so nothing is sent before the transaction that asked for it commits, and
a job is never lost between the two. A job that fails past its last retry lands in `dead_letters`,
where an operator can list it and replay it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Middleware,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)
from sqlalchemy import Index, Integer, String, Text, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from mvne.infra.db import Base, Database, JSONValue, utcnow
from mvne.infra.ids import new_id
from mvne.infra.logging import bind_context, clear_context
from mvne.infra.metrics import JOBS_DONE

log = logging.getLogger("mvne.jobs")

# Queue names: every queue here has a consumer in `mvne worker` (a test checks it).
QUEUE_DEFAULT = "default"
QUEUE_PROVISIONING = "provisioning"
QUEUE_CHARGING = "charging"
QUEUE_BILLING = "billing"
QUEUES = (QUEUE_DEFAULT, QUEUE_PROVISIONING, QUEUE_CHARGING, QUEUE_BILLING)

F = TypeVar("F", bound=Callable[..., Any])


class PermanentJobError(Exception):
    """A job that can never succeed as asked: do not retry it, dead-letter it at once."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    queue: str
    fn: Callable[..., Any]
    max_retries: int | None
    time_limit_ms: int


JOBS: dict[str, JobSpec] = {}


def job(
    name: str, *, queue: str = QUEUE_DEFAULT, max_retries: int | None = None, time_limit_ms: int = 10 * 60 * 1000
) -> Callable[[F], F]:
    """Register an actor under `<domain>.<verb_noun>`; it takes JSON keyword values only."""
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")

    def register(fn: F) -> F:
        existing = JOBS.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"job {name!r} registered twice")
        JOBS[name] = JobSpec(name, queue, fn, max_retries, time_limit_ms)
        return fn

    return register


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_pending", "sent_at", "available_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(80))
    queue: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    dedup_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column()
    # Set when the job ran to the end (or was dead-lettered): sent but unfinished rows are in flight.
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class DeadLetter(Base):
    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str | None] = mapped_column(String(40), index=True)
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    actor: Mapped[str] = mapped_column(String(80))
    queue: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONValue)
    attempts: Mapped[int] = mapped_column(Integer)
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[dt.datetime | None] = mapped_column()


def enqueue(
    session: Session,
    actor: str,
    *,
    tenant_id: str | None = None,
    key: str | None = None,
    delay: dt.timedelta | None = None,
    **payload: Any,
) -> None:
    """Ask for a job as part of the session's transaction; `key` makes asking twice a no-op."""
    spec = JOBS.get(actor)
    if spec is None:
        raise ValueError(f"unknown job {actor!r}")
    now = utcnow()
    values = {
        "id": new_id("obx"),
        "tenant_id": tenant_id,
        "actor": actor,
        "queue": spec.queue,
        "payload": payload if tenant_id is None else {"tenant_id": tenant_id, **payload},
        "dedup_key": key,
        "created_at": now,
        "available_at": now + delay if delay else now,
    }
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    session.execute(insert(OutboxMessage).values(**values).on_conflict_do_nothing())
    session.info["outbox_written"] = True


def relay_once(db: Database, broker: dramatiq.Broker, *, batch: int = 200) -> int:
    """Move committed outbox rows to the broker; returns how many were sent."""
    with db.transaction(platform=True) as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.available_at <= utcnow())
            .order_by(OutboxMessage.created_at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        now = utcnow()
        for row in rows:
            # The outbox id doubles as the message id: a re-sent row is recognisable downstream.
            message: dramatiq.Message[Any] = dramatiq.Message(
                queue_name=row.queue,
                actor_name=row.actor,
                args=(),
                kwargs=row.payload,
                options={},
                message_id=row.id,
            )
            broker.enqueue(message)
            row.sent_at = now
        return len(rows)


def purge_sent(db: Database, *, older_than: dt.timedelta = dt.timedelta(days=3)) -> int:
    """Delete finished outbox rows past their retention."""
    with db.transaction(platform=True) as session:
        result = session.execute(delete(OutboxMessage).where(OutboxMessage.finished_at < utcnow() - older_than))
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def requeue_unfinished(db: Database) -> int:
    """Hand jobs that were sent but never finished back to the relay (after an in-memory broker restarts).

    An in-memory broker loses what it held when its process stops; actors are idempotent, so sending
    such a job again is safe where losing it is not.
    """
    with db.transaction(platform=True) as session:
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.sent_at.is_not(None), OutboxMessage.finished_at.is_(None))
            .values(sent_at=None)
        )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]


def pending_count(db: Database) -> int:
    with db.transaction(platform=True) as session:
        count = session.scalar(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.sent_at.is_(None)))
        return int(count or 0)


class LogContextMiddleware(Middleware):
    """Every log line of a job carries its actor, message id and tenant; outcomes are counted."""

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        clear_context()
        bind_context(job=message.actor_name, message_id=message.message_id, tenant_id=message.kwargs.get("tenant_id"))

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        outcome = "ok" if exception is None else ("dead" if message.failed else "retry")
        JOBS_DONE.labels(message.actor_name, outcome).inc()
        clear_context()


class JobLedgerMiddleware(Middleware):
    """Mark outbox rows finished, and record messages that failed for good so operators can replay them.

    Listed before Retries: Dramatiq runs `after_*` hooks in reverse order, so this one sees the message
    once Retries has decided whether it failed for good.
    """

    def __init__(self, db_getter: Callable[[], Database]) -> None:
        self._db_getter = db_getter

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        if exception is not None and not message.failed:
            return  # a retry is scheduled: the job is still in flight
        with self._db_getter().transaction(platform=True) as session:
            if exception is not None:
                self._dead_letter(session, message, exception)
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message.message_id).values(finished_at=utcnow())
            )

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        with self._db_getter().transaction(platform=True) as session:
            session.execute(
                update(OutboxMessage).where(OutboxMessage.id == message.message_id).values(finished_at=utcnow())
            )

    @staticmethod
    def _dead_letter(session: Session, message: Any, exception: BaseException) -> None:
        payload = dict(message.kwargs)
        retries = int(message.options.get("retries", 0))
        # Retries counts failed runs, except for errors it does not retry: those ran once.
        attempts = retries + 1 if isinstance(exception, PermanentJobError) else max(retries, 1)
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        session.execute(
            insert(DeadLetter)
            .values(
                id=new_id("dlq"),
                tenant_id=payload.get("tenant_id"),
                message_id=message.message_id,
                actor=message.actor_name,
                queue=message.queue_name,
                payload=payload,
                attempts=attempts,
                error=f"{type(exception).__name__}: {exception}"[:2000],
                traceback="".join(traceback.format_exception(exception))[-8000:],
            )
            .on_conflict_do_nothing()
        )
        log.error("job dead-lettered", extra={"actor": message.actor_name, "message_id": message.message_id})


def replay_dead_letter(session: Session, dead_letter_id: str) -> DeadLetter | None:
    """Queue a dead letter's job again through the outbox; None if there is no such dead letter."""
    letter = session.get(DeadLetter, dead_letter_id)
    if letter is None:
        return None
    if letter.replayed_at is None:
        payload = dict(letter.payload)
        tenant_id = payload.pop("tenant_id", None)
        enqueue(session, letter.actor, tenant_id=tenant_id, **payload)
        letter.replayed_at = utcnow()
    return letter


def build_broker(
    broker_url: str,
    db_getter: Callable[[], Database],
    *,
    max_retries: int,
    namespace: str = "mvne",
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 5 * 60 * 1000,
) -> dramatiq.Broker:
    """The broker for this process, with every registered job bound to it as an actor.

    The jobs are those registered when it is built: the platform imports every domain's actors first.
    """
    middleware: list[Middleware] = [
        AgeLimit(),
        TimeLimit(),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        # After-hooks run in reverse: Retries first, then the ledger, then the log context is cleared.
        LogContextMiddleware(),
        JobLedgerMiddleware(db_getter),
        Retries(max_retries=max_retries, min_backoff=min_backoff_ms, max_backoff=max_backoff_ms),
        CurrentMessage(),
    ]
    broker: dramatiq.Broker
    if broker_url.startswith(("redis://", "rediss://")):
        broker = RedisBroker(url=broker_url, middleware=middleware, namespace=namespace)
    else:
        broker = StubBroker(middleware=middleware)
        broker.emit_after("process_boot")
    dramatiq.set_broker(broker)
    for queue in QUEUES:
        broker.declare_queue(queue)
    for spec in JOBS.values():
        options: dict[str, Any] = {"time_limit": spec.time_limit_ms, "throws": (PermanentJobError,)}
        if spec.max_retries is not None:
            options["max_retries"] = spec.max_retries
        dramatiq.Actor(spec.fn, broker=broker, actor_name=spec.name, queue_name=spec.queue, priority=0, options=options)
    return broker


class Relay:
    """Polls the outbox and hands rows to the broker; `poke()` wakes it after a commit."""

    def __init__(self, db: Database, broker: dramatiq.Broker, *, interval_s: float = 0.2) -> None:
        self.db = db
        self.broker = broker
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        self._wake.set()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                sent = relay_once(self.db, self.broker)
            except Exception:
                log.exception("outbox relay failed; retrying")
                sent = 0
                time.sleep(1)
            if sent == 0:
                self._wake.wait(self.interval_s)
                self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run_forever, name="outbox-relay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
