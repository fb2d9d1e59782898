"""The process's runtime: settings, database, storage and broker, and the background parts it runs.

One runtime per process. The web app, `mvne worker`, `mvne scheduler` and tests each build one;
actors reach it with `current_runtime()` because Dramatiq calls them with JSON values only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.stub import StubBroker
from sqlalchemy import text

from mvne.infra.db import Database
from mvne.infra.jobs import (
    QUEUES,
    Relay,
    build_broker,
    pending_count,
    purge_sent,
    relay_once,
    requeue_unfinished,
    resend_expired,
)
from mvne.infra.secrets import with_embedded_secrets
from mvne.infra.settings import Settings
from mvne.infra.storage import Storage, build_storage

log = logging.getLogger("mvne.runtime")

SCHEDULER_LOCK = 0x6D766E65  # "mvne": the advisory lock only one scheduler may hold


@dataclass(frozen=True)
class Periodic:
    name: str
    every_s: float
    fn: Callable[[Runtime], Any]


PERIODIC: dict[str, Periodic] = {}


def periodic(name: str, *, every_s: float) -> Callable[[Callable[[Runtime], Any]], Callable[[Runtime], Any]]:
    """Register a task the scheduler runs every `every_s` seconds (it should only enqueue work)."""

    def register(fn: Callable[[Runtime], Any]) -> Callable[[Runtime], Any]:
        PERIODIC[name] = Periodic(name, every_s, fn)
        return fn

    return register


@periodic("outbox.purge_sent", every_s=3600)
def _purge_outbox(rt: Runtime) -> None:
    purge_sent(rt.db)


@periodic("outbox.resend_expired", every_s=1)
def _resend_expired(rt: Runtime) -> None:
    """Jobs sent but not finished within their lease are owed again: the relay sends them anew."""
    if resend_expired(rt.db):
        rt.poke_relay()


@dataclass
class Runtime:
    settings: Settings
    db: Database
    storage: Storage
    broker: dramatiq.Broker
    relay: Relay | None = None
    worker: dramatiq.Worker | None = None
    # Parts a domain builds once per runtime and keeps here (the online charging engine), by name.
    parts: dict[str, Any] = field(default_factory=dict)
    _scheduler_stop: threading.Event = field(default_factory=threading.Event)
    _scheduler_thread: threading.Thread | None = None

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        settings = with_embedded_secrets(settings)
        if settings.database_url.startswith("sqlite"):
            settings.var_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url, platform_url=settings.platform_database_url or None)
        storage = build_storage(
            settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url or None, s3_region=settings.s3_region
        )
        holder: dict[str, Database] = {"db": db}
        broker = build_broker(
            settings.broker_url,
            lambda: holder["db"],
            max_retries=settings.job_max_retries,
            namespace=settings.broker_namespace,
            lease_s=settings.job_lease_s,
        )
        rt = cls(settings=settings, db=db, storage=storage, broker=broker)
        set_runtime(rt)
        return rt

    # Background parts -------------------------------------------------------------------------

    def start_worker(self, threads: int | None = None) -> None:
        """Consume the broker in this process (embedded mode)."""
        self.worker = dramatiq.Worker(
            self.broker, worker_threads=threads or self.settings.worker_threads, worker_timeout=100
        )
        self.worker.start()

    def start_relay(self) -> None:
        """Relay the outbox; with an in-memory broker, first resend what the last process left in flight."""
        if isinstance(self.broker, StubBroker):
            resent = requeue_unfinished(self.db)
            if resent:
                log.warning("resending jobs left unfinished by the last run", extra={"jobs": resent})
        self.relay = Relay(
            self.db, self.broker, interval_s=self.settings.relay_interval_ms / 1000, lease_s=self.settings.job_lease_s
        )
        self.relay.start()

    def start_scheduler(self) -> None:
        self._scheduler_thread = threading.Thread(target=self.run_scheduler, name="scheduler", daemon=True)
        self._scheduler_thread.start()

    def run_scheduler(self) -> None:
        """Run periodic tasks until stopped; each at most every `every_s` seconds."""
        last: dict[str, float] = {}
        while not self._scheduler_stop.is_set():
            now = time.monotonic()
            for task in list(PERIODIC.values()):
                if now - last.get(task.name, -1e9) >= task.every_s:
                    last[task.name] = now
                    try:
                        task.fn(self)
                    except Exception:
                        log.exception("periodic task failed", extra={"task": task.name})
            self._scheduler_stop.wait(0.5)

    @contextlib.contextmanager
    def leader_lock(self) -> Iterator[None]:
        """Hold the scheduler's lock for the life of the block: one scheduler runs, others wait."""
        if not self.settings.is_postgres:
            yield
            return
        with self.db.engine.connect() as conn:
            log.info("waiting for the scheduler lock")
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": SCHEDULER_LOCK})
            conn.commit()
            log.info("scheduler lock held")
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": SCHEDULER_LOCK})
                conn.commit()

    def poke_relay(self) -> None:
        if self.relay is not None:
            self.relay.poke()

    def stop_background(self) -> None:
        """Stop the scheduler, the relay and the worker (letting running jobs finish, up to 10 s)."""
        self._scheduler_stop.set()
        if self._scheduler_thread is not None:
            self._scheduler_thread.join(timeout=10)
            self._scheduler_thread = None
        if self.relay is not None:
            self.relay.stop()
            self.relay = None
        if self.worker is not None:
            self.worker.stop(timeout=10_000)
            self.worker = None

    def stop(self) -> None:
        self.stop_background()
        self.db.dispose()
        if current_runtime_or_none() is self:
            set_runtime(None)

    # Health -----------------------------------------------------------------------------------

    def readiness(self) -> dict[str, str]:
        """Check each dependency; the value is "ok" or the reason it is not."""
        checks: dict[str, str] = {}
        try:
            with self.db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            client = getattr(self.broker, "client", None)
            if client is not None:
                client.ping()
            checks["broker"] = "ok"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        try:
            self.storage.check()
            checks["storage"] = "ok"
        except Exception as exc:
            checks["storage"] = f"error: {type(exc).__name__}"
        return checks

    # Tests and the demo seed use this to wait for background work to settle.

    def drain(self, timeout: float = 60.0) -> None:
        """Relay and process jobs until the outbox and the queues are empty (in-memory broker only)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = relay_once(self.db, self.broker, lease_s=self.settings.job_lease_s)
            join = getattr(self.broker, "join", None)
            if join is not None and self.worker is not None:
                for queue in QUEUES:
                    join(queue, timeout=int(max(1, deadline - time.monotonic()) * 1000), fail_fast=False)
                self.worker.join()
            if sent == 0 and pending_count(self.db) == 0 and self._queues_empty():
                return
            time.sleep(0.05)
        raise TimeoutError("background jobs did not settle in time")

    def _queues_empty(self) -> bool:
        queues = getattr(self.broker, "queues", None)
        if queues is None:
            return True
        return all(q.unfinished_tasks == 0 for q in queues.values())


_current: Runtime | None = None


def set_runtime(rt: Runtime | None) -> None:
    global _current  # noqa: PLW0603 (actors reach the process's runtime by design)
    _current = rt


def current_runtime() -> Runtime:
    if _current is None:
        raise RuntimeError("no runtime in this process: build one with Runtime.build(settings)")
    return _current


def current_runtime_or_none() -> Runtime | None:
    return _current
