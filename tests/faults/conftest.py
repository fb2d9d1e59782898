"""Production mode with faults: workers killed, Redis flushed, jobs failing for good.

Each test gets a fresh PostgreSQL database and its own Redis namespace, and starts what it needs as
separate processes (`mvne worker` = Dramatiq on Redis, `mvne scheduler` = the outbox relay and the
lease sweep, the simulators), with short leases so a lost job is owed again within seconds. The test
process writes through the services (tenants, customers, lines, runs) on the same database and reads
the end state there.
"""

from __future__ import annotations

import base64
import os
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
import redis

from mvne.infra.db import Database
from mvne.infra.jobs import JobFigures, job_figures
from mvne.infra.secrets import generate_rsa_pem
from mvne.infra.settings import Settings
from mvne.platform.wiring import load_actor_modules
from tests.conftest import create_postgres_database, drop_postgres_database, free_port, postgres_server_url
from tests.journey.test_production_journey import BIN, Processes, wait_http
from tests.support.certs import es2plus_pki

T = TypeVar("T")

LEASE_S = 5
MAX_RETRIES = 2


@dataclass
class Plant:
    """A production deployment of the test's own: its database, its environment, its processes."""

    db: Database
    env: dict[str, str]
    processes: Processes
    redis_url: str
    smdp_port: int
    network_port: int

    def start_worker(self, name: str, *, threads: int = 2) -> None:
        self.processes.start(name, str(BIN / "mvne"), "worker", "--processes", "1", "--threads", str(threads))

    def start_scheduler(self) -> None:
        self.processes.start("scheduler", str(BIN / "mvne"), "scheduler")

    def start_simulators(self) -> None:
        self.processes.start("smdp", str(BIN / "mvne"), "sim", "smdp", "--port", str(self.smdp_port))
        self.processes.start("network", str(BIN / "mvne"), "sim", "network", "--port", str(self.network_port))
        wait_http(f"http://127.0.0.1:{self.smdp_port}/healthz", self.processes)
        wait_http(f"http://127.0.0.1:{self.network_port}/healthz", self.processes)

    def kill(self, name: str) -> None:
        """SIGKILL a process and all its children (Dramatiq's worker processes): no cleanup, no goodbye."""
        for child_name, child in self.processes.children:
            if child_name == name and child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
        self.processes.children = [(n, c) for n, c in self.processes.children if n != name]

    def figures(self, *, actor: str | None = None, tenant_id: str | None = None) -> JobFigures:
        return job_figures(self.db, actor=actor, tenant_id=tenant_id)

    def poll(self, check: Callable[[], T | None], *, timeout: float, what: str, every: float = 0.05) -> T:
        """Poll `check` until it returns something truthy, failing if a process died or time ran out."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            self.processes.check_alive()
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {n}\n{self.processes.tail(n)}" for n, _ in self.processes.children)
                raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
            time.sleep(every)


@pytest.fixture
def plant(
    postgres_settings: Settings, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Plant]:
    server = postgres_server_url()
    assert server is not None
    app_url, platform_url, owner_url, database = create_postgres_database(server)
    folder: Path = tmp_path_factory.mktemp("faults")
    smdp, network = free_port(), free_port()
    pki = es2plus_pki(tmp_path_factory.mktemp("pki"))  # production mode calls the SM-DP+ with its certificate
    env = {
        **os.environ,
        "MVNE_MODE": "production",
        "MVNE_DATABASE_URL": app_url,
        "MVNE_MIGRATION_DATABASE_URL": owner_url,
        "MVNE_PLATFORM_DATABASE_URL": platform_url,
        "MVNE_BROKER_URL": redis_server_url,
        "MVNE_CHARGING_URL": redis_server_url,
        "MVNE_CHARGING_VOLATILE_OK": "true",
        "MVNE_BROKER_NAMESPACE": f"mvne-faults-{secrets.token_hex(4)}",
        "MVNE_STORAGE_URL": f"file://{(folder / 'storage').as_posix()}",
        "MVNE_PUBLIC_URL": f"http://127.0.0.1:{free_port()}",
        "MVNE_SECRET_KEY": secrets.token_urlsafe(32),
        "MVNE_JWT_PRIVATE_KEY": generate_rsa_pem(),
        "MVNE_SIM_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "MVNE_SMDP_URL": f"http://127.0.0.1:{smdp}",
        "MVNE_NETWORK_URL": f"http://127.0.0.1:{network}",
        "MVNE_MAIL_URL": f"smtp+plain://127.0.0.1:{free_port()}",  # nothing here sends mail
        "MVNE_SMDP_CA_FILE": str(pki.ca.cert_file),
        "MVNE_SMDP_CLIENT_CERT_FILE": str(pki.operator.cert_file),
        "MVNE_SMDP_CLIENT_KEY_FILE": str(pki.operator.key_file),
        "MVNE_SMDP_ALLOWED_SUBJECTS": pki.smdp.subject,
        "MVNE_LOG_LEVEL": "WARNING",
        "MVNE_LOG_FORMAT": "console",
        "MVNE_JOB_LEASE_S": str(LEASE_S),
        "MVNE_JOB_MAX_RETRIES": str(MAX_RETRIES),
        "MVNE_RELAY_INTERVAL_MS": "100",
        # Small segments: a usage file of a megabyte is partitioned by line, as a large one would be.
        "MVNE_USAGE_SEGMENT_BYTES": "200000",
    }
    processes = Processes(env, folder)
    load_actor_modules()  # the test process asks for jobs by name
    db = Database(app_url, platform_url=platform_url)
    try:
        processes.run(str(BIN / "mvne"), "db", "upgrade")
        yield Plant(db, env, processes, redis_server_url, smdp, network)
    finally:
        processes.stop()
        db.dispose()
        drop_postgres_database(server, database)
        client = redis.Redis.from_url(redis_server_url)
        for key in client.scan_iter(match=f"{env['MVNE_BROKER_NAMESPACE']}*"):
            client.delete(key)
        client.close()
