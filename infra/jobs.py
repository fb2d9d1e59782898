"""Jobs: the registry of actors, the broker, the transactional outbox and its relay, dead letters.

A change that needs background work writes an `outbox_messages` row in its own transaction
(`enqueue`). The relay moves committed rows to the broker; Dramatiq actors do the work. Actors are
registered here by name and bound to whichever broker the process runs (in-memory in embedded mode,
Redis in production), so nothing is sent before the transaction that asked for it commits, and
a job is never lost between the two. A job that fails past its last retry lands in `dead_letters`,
where an operator can list it and replay it; the job's `on_dead_letter` hook marks what it belonged
to as failed in the same transaction, and its `on_replay` hook lets that owner proceed again.

A job stays owed until it has finished. Each send of a row opens a lease (`Settings.job_lease_s`, or
the job's own `lease_s`); the worker renews it while the job runs, and a scheduler sweep hands rows
whose lease ran out back to the relay (`resend_expired`). So a worker killed mid-job or a broker that
lost its data delays a job but never drops it. Rows count their sends (`send_count`): a job was
resent when it was sent more than once. Actors are idempotent, and a message delivered again after
its job finished is skipped, so a job's effects happen once however often it is delivered.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

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
    SkipMessage,
    TimeLimit,
)
from sqlalchemy import Index, Integer, String, Table, Text, case, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from mvne.infra.db import KEPT_AFTER_TENANT, Base, Database, JSONValue, utcnow
from mvne.infra.ids import new_id, new_ids
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

DEFAULT_LEASE_S = 300
# A row resent again and again (a long backlog, a broker that keeps losing data) waits longer each time.
MAX_LEASE_DOUBLINGS = 4

# Called with a platform-scoped session, the job's values (with its tenant) and the error, in the
# transaction that records the dead letter: it marks what the job belonged to as failed.
DeadLetterHook = Callable[[Session, dict[str, Any], str], None]
# Called with the operator's session and the job's values when a dead letter is replayed.
ReplayHook = Callable[[Session, dict[str, Any]], None]


class PermanentJobError(Exception):
    """A job that can never succeed as asked: do not retry it, dead-letter it at once."""


@dataclass(frozen=True)
class JobSpec:
    name: str
    queue: str
    fn: Callable[..., Any]
    max_retries: int | None
    time_limit_ms: int
    lease_s: int | None = None
    on_dead_letter: DeadLetterHook | None = None
    on_replay: ReplayHook | None = None


JOBS: dict[str, JobSpec] = {}


def job(
    name: str,
    *,
    queue: str = QUEUE_DEFAULT,
    max_retries: int | None = None,
    time_limit_ms: int = 10 * 60 * 1000,
    lease_s: int | None = None,
    on_dead_letter: DeadLetterHook | None = None,
    on_replay: ReplayHook | None = None,
) -> Callable[[F], F]:
    """Register an actor under `<domain>.<verb_noun>`; it takes JSON keyword values only.

    `lease_s` overrides `Settings.job_lease_s` for this job: how long a sent job may stay unfinished
    (without its worker renewing the lease) before it is sent again. `on_dead_letter` and `on_replay`
    let the owner of the job show it failed, and proceed again when an operator replays it.
    """
    if queue not in QUEUES:
        raise ValueError(f"unknown queue {queue!r}")
    if lease_s is not None and lease_s < 1:
        raise ValueError("lease_s must be at least one second")

    def register(fn: F) -> F:
        existing = JOBS.get(name)
        if existing is not None and existing.fn is not fn:
            raise ValueError(f"job {name!r} registered twice")
        JOBS[name] = JobSpec(name, queue, fn, max_retries, time_limit_ms, lease_s, on_dead_letter, on_replay)
        return fn

    return register


def lease_of(actor: str, default_s: int) -> int:
    """The lease of a job in seconds: its own, or the process's default."""
    spec = JOBS.get(actor)
    return spec.lease_s if spec is not None and spec.lease_s is not None else default_s


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"
    __table_args__ = (
        Index("ix_outbox_messages_pending", "sent_at", "available_at"),
        Index("ix_outbox_messages_lease", "finished_at", "lease_until"),
        {"info": {KEPT_AFTER_TENANT: True}},  # the job ledger outlives an offboarded tenant
    )

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
    # How many times the row was handed to the broker: more than once means it was resent.
    send_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A sent, unfinished row whose lease has run out is owed again (its worker or its broker lost it).
    lease_until: Mapped[dt.datetime | None] = mapped_column()
    # Set while a worker runs the job (renewed with the lease): another delivery meanwhile is dropped.
    claimed_until: Mapped[dt.datetime | None] = mapped_column()


class DeadLetter(Base):
    __tablename__ = "dead_letters"
    __table_args__ = {"info": {KEPT_AFTER_TENANT: True}}  # the job ledger outlives an offboarded tenant

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
    enqueue_many(session, actor, [(key, payload)], tenant_id=tenant_id, delay=delay)


def enqueue_many(
    session: Session,
    actor: str,
    jobs: Sequence[tuple[str | None, dict[str, Any]]],
    *,
    tenant_id: str | None = None,
    delay: dt.timedelta | None = None,
) -> None:
    """Ask for several jobs of one actor, each (key, payload), as `enqueue` would one by one: one statement."""
    spec = JOBS.get(actor)
    if spec is None:
        raise ValueError(f"unknown job {actor!r}")
    if not jobs:
        return
    now = utcnow()
    rows = [
        {
            "id": message_id,
            "tenant_id": tenant_id,
            "actor": actor,
            "queue": spec.queue,
            "payload": payload if tenant_id is None else {"tenant_id": tenant_id, **payload},
            "dedup_key": key,
            "created_at": now,
            "available_at": now + delay if delay else now,
        }
        for message_id, (key, payload) in zip(new_ids("obx", len(jobs)), jobs, strict=True)
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    # One cached statement, sent for every row at once (the driver's executemany).
    session.execute(insert(cast(Table, OutboxMessage.__table__)).on_conflict_do_nothing(), rows)
    session.info["outbox_written"] = True


def relay_once(db: Database, broker: dramatiq.Broker, *, batch: int = 200, lease_s: int = DEFAULT_LEASE_S) -> int:
    """Move committed outbox rows to the broker, each with a lease; returns how many were sent."""
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
            row.send_count = (row.send_count or 0) + 1
            doublings = min(row.send_count - 1, MAX_LEASE_DOUBLINGS)
            row.sent_at = now
            row.lease_until = now + dt.timedelta(seconds=lease_of(row.actor, lease_s) * 2**doublings)
        return len(rows)


def resend_expired(db: Database) -> int:
    """Hand sent rows whose lease ran out unfinished back to the relay; returns how many.

    The job's worker died, or the broker lost the message (a Redis restarted without its data):
    the job is owed until it finishes, and actors are idempotent, so it is sent again.
    """
    with db.transaction(platform=True) as session:
        result = session.execute(
            update(OutboxMessage)
            .where(
                OutboxMessage.finished_at.is_(None),
                OutboxMessage.sent_at.is_not(None),
                OutboxMessage.lease_until < utcnow(),
            )
            .values(sent_at=None)
        )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if count:
        log.warning("resending jobs whose lease ran out unfinished", extra={"jobs": count})
    return count


def renew_leases(db: Database, leases: dict[str, int]) -> int:
    """Extend the lease (and claim) of running jobs' rows by the given seconds from now (message id -> seconds)."""
    if not leases:
        return 0
    now = utcnow()
    renewed = 0
    by_lease: dict[int, list[str]] = {}
    for message_id, seconds in leases.items():
        by_lease.setdefault(seconds, []).append(message_id)
    with db.transaction(platform=True) as session:
        for seconds, ids in by_lease.items():
            until = now + dt.timedelta(seconds=seconds)
            result = session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(ids), OutboxMessage.finished_at.is_(None))
                .values(lease_until=until, claimed_until=until)
            )
            renewed += int(result.rowcount or 0)  # type: ignore[attr-defined]
    return renewed


@dataclass(frozen=True)
class JobFigures:
    """What the outbox knows of a set of jobs: asked for, sent, resent, finished, still owed."""

    jobs: int
    sent: int
    resent: int
    finished: int
    unfinished: int
    dead_letters: int


def job_figures(db: Database, *, actor: str | None = None, tenant_id: str | None = None) -> JobFigures:
    """Counts over outbox rows (of one actor or tenant if given): sends, resends, finished, owed."""
    with db.transaction(platform=True) as session:
        conditions = []
        if actor is not None:
            conditions.append(OutboxMessage.actor == actor)
        if tenant_id is not None:
            conditions.append(OutboxMessage.tenant_id == tenant_id)
        jobs, sent, resent, finished = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(OutboxMessage.send_count), 0),
                func.coalesce(func.sum(case((OutboxMessage.send_count > 1, OutboxMessage.send_count - 1), else_=0)), 0),
                func.count(OutboxMessage.finished_at),
            ).where(*conditions)
        ).one()
        letters = select(func.count()).select_from(DeadLetter)
        if actor is not None:
            letters = letters.where(DeadLetter.actor == actor)
        if tenant_id is not None:
            letters = letters.where(DeadLetter.tenant_id == tenant_id)
        dead = session.scalar(letters)
    return JobFigures(
        jobs=int(jobs),
        sent=int(sent),
        resent=int(resent),
        finished=int(finished),
        unfinished=int(jobs) - int(finished),
        dead_letters=int(dead or 0),
    )


@dataclass(frozen=True)
class JobHealth:
    """One job's account in the outbox: what was asked, sent, resent, finished, owed, overdue and dead."""

    actor: str
    queue: str
    jobs: int
    sent: int
    resent: int
    finished: int
    owed: int
    overdue: int
    dead_letters: int
    oldest_owed_at: dt.datetime | None


def job_health(db: Database) -> list[JobHealth]:
    """Every job's figures in one grouped pass over the outbox (and one over the dead letters)."""
    now = utcnow()
    owed = OutboxMessage.finished_at.is_(None)
    with db.transaction(platform=True) as session:
        rows = session.execute(
            select(
                OutboxMessage.actor,
                OutboxMessage.queue,
                func.count(),
                func.coalesce(func.sum(OutboxMessage.send_count), 0),
                func.coalesce(func.sum(case((OutboxMessage.send_count > 1, OutboxMessage.send_count - 1), else_=0)), 0),
                func.count(OutboxMessage.finished_at),
                func.coalesce(func.sum(case((owed & (OutboxMessage.lease_until < now), 1), else_=0)), 0),
                func.min(case((owed, OutboxMessage.created_at), else_=None)),
            ).group_by(OutboxMessage.actor, OutboxMessage.queue)
        ).all()
        dead = dict(
            session.execute(
                select(DeadLetter.actor, func.count())
                .where(DeadLetter.replayed_at.is_(None))
                .group_by(DeadLetter.actor)
            ).all()
        )
    found = {
        actor: JobHealth(
            actor=actor,
            queue=queue,
            jobs=int(jobs),
            sent=int(sent),
            resent=int(resent),
            finished=int(finished),
            owed=int(jobs) - int(finished),
            overdue=int(overdue),
            dead_letters=int(dead.get(actor, 0)),
            oldest_owed_at=oldest,
        )
        for actor, queue, jobs, sent, resent, finished, overdue, oldest in rows
    }
    for actor, count in dead.items():  # dead letters whose outbox rows were purged already
        if actor not in found:
            spec = JOBS.get(actor)
            found[actor] = JobHealth(actor, spec.queue if spec else "", 0, 0, 0, 0, 0, 0, int(count), None)
    return [found[actor] for actor in sorted(found)]


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
    """Keep the outbox's account of each job: leases renewed while it runs, finished once, or dead-lettered.

    - When a message starts, it claims its row and renews the lease. A duplicate (resent after a lease
      ran out, or re-delivered by the broker) is skipped when the job already finished, and dropped
      while another delivery holds the claim: one delivery runs a job at a time, and if that one's
      worker dies, the claim and the lease run out together and the job is sent again.
    - While messages run, a heartbeat thread renews their leases, so a long job is never resent
      while its worker lives; a killed worker stops renewing, and the job is resent after its lease.
    - When a retry is scheduled, the lease is stretched past the retry's backoff.
    - When a job ends, its row is marked finished once; a job that failed for good is recorded in
      `dead_letters` and its `on_dead_letter` hook marks its owner failed, in the same transaction.

    Listed before Retries: Dramatiq runs `after_*` hooks in reverse order, so this one sees the message
    once Retries has decided whether it failed for good.
    """

    def __init__(
        self,
        db_getter: Callable[[], Database],
        *,
        lease_s: int = DEFAULT_LEASE_S,
        min_backoff_ms: int = 1000,
        max_backoff_ms: int = 5 * 60 * 1000,
    ) -> None:
        self._db_getter = db_getter
        self.lease_s = lease_s
        self._min_backoff_ms = min_backoff_ms
        self._max_backoff_ms = max_backoff_ms
        # Messages in process: message id -> (lease seconds, when its lease is next renewed, monotonic).
        self._running: dict[str, tuple[int, float]] = {}
        self._local = threading.local()  # per worker thread: was the skipped message held elsewhere
        self._lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()

    # Leases ------------------------------------------------------------------------------------

    def _lease(self, message: Any) -> int:
        return lease_of(message.actor_name, self.lease_s)

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        lease = self._lease(message)
        self._local.held_elsewhere = False
        held_elsewhere = finished = False
        try:
            with self._db_getter().transaction(platform=True) as session:
                now = utcnow()
                until = now + dt.timedelta(seconds=lease)
                claimed = session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == message.message_id,
                        OutboxMessage.finished_at.is_(None),
                        or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now),
                    )
                    .values(lease_until=until, claimed_until=until)
                ).rowcount  # type: ignore[attr-defined]
                if not claimed:
                    row = session.execute(
                        select(OutboxMessage.finished_at, OutboxMessage.claimed_until).where(
                            OutboxMessage.id == message.message_id
                        )
                    ).one_or_none()
                    finished = row is not None and row.finished_at is not None
                    held_elsewhere = row is not None and not finished
        except Exception:
            log.exception("could not claim a job", extra={"message_id": message.message_id})
        if finished:
            log.info("skipping a job that already finished", extra={"message_id": message.message_id})
            raise SkipMessage(f"job {message.message_id} already finished")
        if held_elsewhere:
            self._local.held_elsewhere = True
            log.info("dropping a duplicate of a running job", extra={"message_id": message.message_id})
            raise SkipMessage(f"job {message.message_id} is running elsewhere")
        with self._lock:
            self._running[message.message_id] = (lease, time.monotonic() + lease / 3)
            if self._heartbeat is None or not self._heartbeat.is_alive():
                self._stop.clear()
                self._heartbeat = threading.Thread(target=self._beat, name="job-lease-heartbeat", daemon=True)
                self._heartbeat.start()

    def _beat(self) -> None:
        """Renew each running job's lease a third of the way through it, until the worker stops."""
        while not self._stop.wait(0.25):
            now = time.monotonic()
            with self._lock:
                due = {mid: lease for mid, (lease, renew_at) in self._running.items() if renew_at <= now}
            if not due:
                continue
            try:
                renew_leases(self._db_getter(), due)
            except Exception:
                log.exception("could not renew the leases of running jobs")
                continue
            with self._lock:
                for mid, lease in due.items():
                    if mid in self._running:
                        self._running[mid] = (lease, now + lease / 3)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self._stop.set()

    def _done(self, message: Any) -> None:
        with self._lock:
            self._running.pop(message.message_id, None)

    def _retry_bound_s(self, message: Any) -> float:
        """The longest backoff Retries may have chosen for this message's next attempt."""
        retries = int(message.options.get("retries", 1))
        bound_ms = min(self._min_backoff_ms * 2 ** min(retries, 32), self._max_backoff_ms)
        return bound_ms / 1000

    # Outcomes -----------------------------------------------------------------------------------

    def after_process_message(
        self, broker: dramatiq.Broker, message: Any, *, result: Any = None, exception: BaseException | None = None
    ) -> None:
        self._done(message)
        if exception is not None and not message.failed:
            # A retry is scheduled: the job is still in flight, owed again once its backoff has passed.
            seconds = self._retry_bound_s(message) + self._lease(message)
            with self._db_getter().transaction(platform=True) as session:
                session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == message.message_id, OutboxMessage.finished_at.is_(None))
                    .values(lease_until=utcnow() + dt.timedelta(seconds=seconds), claimed_until=None)
                )
            return
        with self._db_getter().transaction(platform=True) as session:
            finished_now = self._finish(session, message.message_id)
            if exception is None:
                return
            if not finished_now and session.get(OutboxMessage, message.message_id) is not None:
                # Another delivery of this job finished it first: its outcome stands.
                log.warning("a duplicate of a finished job failed", extra={"message_id": message.message_id})
                return
            self._dead_letter(session, message, exception)

    def after_skip_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self._done(message)
        if getattr(self._local, "held_elsewhere", False):
            self._local.held_elsewhere = False
            return  # the delivery holding the job finishes it, or its lease runs out and it is sent again
        with self._db_getter().transaction(platform=True) as session:
            self._finish(session, message.message_id)

    @staticmethod
    def _finish(session: Session, message_id: str) -> bool:
        """Mark the row finished unless it already was; True when this call finished it."""
        result = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.finished_at.is_(None))
            .values(finished_at=utcnow())
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    @staticmethod
    def _dead_letter(session: Session, message: Any, exception: BaseException) -> None:
        payload = dict(message.kwargs)
        retries = int(message.options.get("retries", 0))
        # Retries counts failed runs, except for errors it does not retry: those ran once.
        attempts = retries + 1 if isinstance(exception, PermanentJobError) else max(retries, 1)
        error = f"{type(exception).__name__}: {exception}"[:2000]
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        inserted = session.execute(
            insert(DeadLetter)
            .values(
                id=new_id("dlq"),
                tenant_id=payload.get("tenant_id"),
                message_id=message.message_id,
                actor=message.actor_name,
                queue=message.queue_name,
                payload=payload,
                attempts=attempts,
                error=error,
                traceback="".join(traceback.format_exception(exception))[-8000:],
            )
            .on_conflict_do_nothing()
        ).rowcount  # type: ignore[attr-defined]
        log.error("job dead-lettered", extra={"actor": message.actor_name, "message_id": message.message_id})
        spec = JOBS.get(message.actor_name)
        if inserted and spec is not None and spec.on_dead_letter is not None:
            run_hook(session, "on_dead_letter", message.actor_name, spec.on_dead_letter, payload, error)


def run_hook(session: Session, kind: str, actor: str, hook: Callable[..., None], *args: Any) -> None:
    """Run an owner's hook in a savepoint: a failing hook is logged and undone, never the ledger's work."""
    try:
        with session.begin_nested():
            hook(session, *args)
    except Exception:
        log.exception("a job's hook failed", extra={"hook": kind, "actor": actor})


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
        spec = JOBS.get(letter.actor)
        if spec is not None and spec.on_replay is not None:
            # The owner proceeds again (a failed billing run resumes, a failed line is pending again).
            spec.on_replay(session, dict(letter.payload))
    return letter


def build_broker(
    broker_url: str,
    db_getter: Callable[[], Database],
    *,
    max_retries: int,
    namespace: str = "mvne",
    min_backoff_ms: int = 1000,
    max_backoff_ms: int = 5 * 60 * 1000,
    lease_s: int = DEFAULT_LEASE_S,
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
        JobLedgerMiddleware(db_getter, lease_s=lease_s, min_backoff_ms=min_backoff_ms, max_backoff_ms=max_backoff_ms),
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

    def __init__(
        self, db: Database, broker: dramatiq.Broker, *, interval_s: float = 0.2, lease_s: int = DEFAULT_LEASE_S
    ) -> None:
        self.db = db
        self.broker = broker
        self.interval_s = interval_s
        self.lease_s = lease_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        self._wake.set()

    def run_forever(self) -> None:
        while not self._stop.is_set():
            try:
                sent = relay_once(self.db, self.broker, lease_s=self.lease_s)
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
