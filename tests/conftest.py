"""Suite-wide fixtures: one migrated database, one runtime with a worker, the app on a real port.

With MVNE_TEST_DATABASE_URL set (CI sets it), the suite runs on a fresh PostgreSQL database created
for the session, the application connecting as a plain role so row-level security applies to it.
Otherwise it runs on a SQLite file. Each test makes its own tenant, so tests never share rows.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mvne.infra.migrate import upgrade
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.infra.storage import FileStorage, S3Storage, Storage
from mvne.platform.app import create_app
from mvne.platform.wiring import build_runtime
from tests.support.api import ApiCaller, Operator, TenantHandle, make_operator, make_tenant
from tests.support.s3 import moto_s3_server, new_bucket
from tests.support.servers import live_server

APP_ROLE = "mvne_app"
PLATFORM_ROLE = "mvne_platform"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_server_url() -> str | None:
    return os.environ.get("MVNE_TEST_DATABASE_URL") or None


def redis_url() -> str | None:
    return os.environ.get("MVNE_TEST_REDIS_URL") or None


def create_postgres_database(server_url: str) -> tuple[str, str, str, str]:
    """A fresh database on the test server: (application URL, platform URL, owner URL, database name)."""
    base = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"mvne_test_{secrets.token_hex(4)}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        for role, bypass in ((APP_ROLE, "NOBYPASSRLS"), (PLATFORM_ROLE, "BYPASSRLS")):
            if not conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}):
                conn.execute(text(f"CREATE ROLE {role} LOGIN NOSUPERUSER {bypass}"))
    engine.dispose()
    owner = base.set(database=name)
    app = owner.set(username=APP_ROLE, password=None)
    platform = owner.set(username=PLATFORM_ROLE, password=None)
    return (
        app.render_as_string(hide_password=False),
        platform.render_as_string(hide_password=False),
        owner.render_as_string(hide_password=False),
        name,
    )


def drop_postgres_database(server_url: str, name: str) -> None:
    engine = create_engine(make_url(server_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    var_dir: Path = tmp_path_factory.mktemp("var")
    port = free_port()
    server = postgres_server_url()
    database_name = None
    values: dict[str, object] = {
        "var_dir": var_dir,
        "port": port,
        "log_format": "console",
        "log_level": "WARNING",
        "job_max_retries": 2,
        # The suite's callers share a few clients and one address: limits of their own, far above what it sends.
        # Rate limits themselves are tested on apps of their own (tests/platform/test_rate_limits.py).
        "rate_limit_default": "1000000/minute",
        "rate_limit_token": "1000000/minute",
        # The suite's shared callers hold their tokens for the whole run, which a loaded machine can stretch
        # past the default 15 minutes; expiry itself is tested with tokens minted to expire.
        "token_ttl": 4 * 3600,
    }
    if redis_url():
        # Online charging on the test Redis, which keeps nothing on disk: the suite accepts that; durability is
        # tested against a Redis of its own (tests/charging/test_online_restart.py).
        values.update(charging_url=redis_url(), charging_volatile_ok=True)
    if server:
        app_url, platform_url, owner_url, database_name = create_postgres_database(server)
        values.update(database_url=app_url, platform_database_url=platform_url, migration_database_url=owner_url)
    settings = Settings(**values).derived().check()  # type: ignore[arg-type]
    yield settings
    if server and database_name:
        drop_postgres_database(server, database_name)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    upgrade(settings)
    rt = build_runtime(settings)
    rt.start_worker(threads=2)
    rt.start_relay()
    rt.start_scheduler()
    yield rt
    rt.stop()


@pytest.fixture(scope="session")
def app(runtime: Runtime) -> Flask:
    return create_app(rt=runtime)


@pytest.fixture(scope="session")
def live_url(app: Flask, settings: Settings) -> Iterator[str]:
    """The app on its configured port: the worker reaches the mounted simulators over HTTP there."""
    with live_server(app, port=settings.port) as url:
        yield url


@pytest.fixture
def api(app: Flask) -> ApiCaller:
    return ApiCaller(app.test_client())


@pytest.fixture(scope="session")
def operator(app: Flask, runtime: Runtime) -> Operator:
    return make_operator(app.test_client(), runtime)


@pytest.fixture
def tenant(app: Flask, operator: Operator, live_url: str) -> TenantHandle:
    """A fresh tenant with a client holding every tenant scope."""
    return make_tenant(app.test_client(), operator)


@pytest.fixture
def other_tenant(app: Flask, operator: Operator, live_url: str) -> TenantHandle:
    return make_tenant(app.test_client(), operator)


def skip_or_fail(reason: str) -> None:
    """Skip a service-backed test locally; fail it where the services are required (CI)."""
    if os.environ.get("MVNE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"service-backed test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_settings(settings: Settings) -> Settings:
    """The suite's settings, when the suite runs on PostgreSQL."""
    if not settings.is_postgres:
        skip_or_fail("needs PostgreSQL: set MVNE_TEST_DATABASE_URL")
    return settings


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    url = redis_url()
    if url is None:
        skip_or_fail("needs Redis: set MVNE_TEST_REDIS_URL")
    assert url is not None
    return url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server over real HTTP, for the session."""
    with moto_s3_server() as endpoint:
        yield endpoint


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """Each storage backend in turn: a folder on disk, and a new bucket on moto's S3 server."""
    if request.param == "file":
        return FileStorage(tmp_path / "objects")
    endpoint = request.getfixturevalue("s3_endpoint")
    return S3Storage(new_bucket(endpoint), endpoint_url=endpoint)
