"""The `mvne` console script, run as an operator would: real subprocesses on a var folder of their own."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from mvne.catalog.models import Offer
from mvne.charging.models import BillingRun, Invoice, UsageRecord
from mvne.infra.db import Database
from mvne.infra.mail import LocalMailbox, Mail
from mvne.infra.settings import Settings
from mvne.infra.storage import FileStorage
from mvne.platform.app import create_app
from mvne.platform.auth import TENANT_SCOPES
from mvne.provisioning.models import Subscription
from mvne.provisioning.simulator import create_network_simulator
from mvne.provisioning.usage_files import parse_usage_file
from mvne.tenants.models import Customer, Tenant
from tests.support.runtimes import side_runtime
from tests.support.servers import live_server

MVNE = Path(sys.executable).with_name("mvne")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Cli:
    """The console script with its own environment: a var folder and a free port."""

    var_dir: Path
    port: int
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(MVNE), *args],
            env=self.env,
            cwd=self.var_dir.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @property
    def settings(self) -> Settings:
        return Settings(var_dir=self.var_dir, port=self.port, log_format="console").derived().check()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MVNE_")}
    var_dir = tmp_path / "var"
    port = _free_port()
    env.update(MVNE_VAR_DIR=str(var_dir), MVNE_PORT=str(port), MVNE_LOG_LEVEL="WARNING", MVNE_LOG_FORMAT="console")
    return Cli(var_dir, port, env)


def _ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr[-4000:]}"
    return done


@pytest.fixture
def database(cli: Cli) -> Iterator[Database]:
    """The var folder's database, for checking what the commands left in it."""
    db = Database(cli.settings.database_url)
    yield db
    db.dispose()


def test_db_upgrade_migrates_a_fresh_var_folder_and_is_a_no_op_the_second_time(cli: Cli, database: Database) -> None:
    first = _ok(cli("db", "upgrade"))
    second = _ok(cli("db", "upgrade"))

    assert "newest schema" in first.stdout
    assert "newest schema" in second.stdout
    assert (cli.var_dir / "mvne.db").is_file()
    with database.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM alembic_version")) == 1
        assert conn.scalar(text("SELECT count(*) FROM outbox_messages")) == 0


def test_operator_create_client_prints_credentials_that_get_an_operator_token(cli: Cli) -> None:
    _ok(cli("db", "upgrade"))

    done = _ok(cli("operator", "create-client", "--name", "ops"))

    [line] = done.stdout.strip().splitlines()
    creds = json.loads(line)
    assert set(creds) == {"client_id", "client_secret"}
    assert creds["client_id"].startswith("cli_")
    with side_runtime(cli.settings) as rt:
        client = create_app(rt=rt).test_client()
        granted = client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": creds["client_id"],
                "client_secret": creds["client_secret"],
            },
        )
        assert granted.status_code == 200, granted.json
        token = granted.get_json()
        assert set(token["scope"].split()) >= {"tenants:read", "tenants:write", "operations:read"}
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert client.get("/v1/tenants", headers=headers).status_code == 200
        assert client.get("/v1/dead-letters", headers=headers).status_code == 200
        refused = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "client_id": creds["client_id"], "client_secret": "wrong"},
        )
        assert refused.status_code in (400, 401)
        assert "access_token" not in (refused.json or {})


@pytest.fixture
def network(tmp_path: Path) -> Iterator[tuple[str, FileStorage]]:
    storage = FileStorage(tmp_path / "storage")
    with live_server(create_network_simulator(storage=storage)) as url:
        yield url, storage


def test_sim_network_emit_usage_drops_a_usage_file_for_a_provisioned_line(
    cli: Cli, network: tuple[str, FileStorage]
) -> None:
    url, storage = network
    line = {
        "imsi": "001010000004242",
        "msisdn": "+447900004242",
        "iccid": "8944000000000004242",
        "ki": "00112233445566778899aabbccddeeff",
        "opc": "ffeeddccbbaa99887766554433221100",
    }
    provisioned = httpx.post(f"{url}/subscribers", json=line, timeout=10)
    assert provisioned.status_code == 201, provisioned.text

    done = _ok(
        cli("sim", "network", "emit-usage", "--url", url, "--msisdn", line["msisdn"], "--data-mb", "10", "--sms", "2")
    )

    answer = json.loads(done.stdout)
    assert answer["key"].startswith("usage/incoming/")
    assert storage.list("usage/incoming/") == [answer["key"]]
    records = parse_usage_file(storage.get(answer["key"])).records
    assert len(records) == answer["records"]
    assert {r.msisdn for r in records} == {line["msisdn"]}
    assert {r.imsi for r in records} == {line["imsi"]}
    assert sum(r.quantity for r in records if r.service == "data") == 10_000_000
    assert sum(r.quantity for r in records if r.service == "sms") == 2


def test_sim_network_emit_usage_follows_mvne_port_and_says_in_one_line_when_nothing_answers(cli: Cli) -> None:
    # Nothing listens on the cli's port: the command must look there, and say so without a traceback.
    done = cli("sim", "network", "emit-usage", "--msisdn", "+33612345678", "--sms", "1")

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [message] = done.stderr.strip().splitlines()
    assert f"http://127.0.0.1:{cli.port}/sim/network" in message
    assert "cannot reach the network simulator" in message


def test_sim_network_emit_usage_for_an_unknown_line_fails_with_the_simulators_reason(
    cli: Cli, network: tuple[str, FileStorage]
) -> None:
    url, storage = network

    done = cli("sim", "network", "emit-usage", "--url", url, "--msisdn", "+447900009999", "--sms", "1")

    assert done.returncode != 0
    assert "refused" in done.stderr
    assert "Traceback" not in done.stderr
    assert storage.list("usage/") == []


def _demo_counts(db: Database) -> dict[str, Any]:
    with db.transaction(platform=True) as session:
        tenants = session.scalars(select(Tenant).where(Tenant.slug == "demo")).all()
        assert len(tenants) == 1
        tid = tenants[0].id

        def count(model: Any) -> int:
            return int(session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tid)) or 0)

        invoiced = session.scalars(select(Invoice.customer_id).where(Invoice.tenant_id == tid)).all()
        statuses = session.scalars(select(Subscription.status).where(Subscription.tenant_id == tid)).all()
        return {
            "tenant_id": tid,
            "offers": count(Offer),
            "customers": count(Customer),
            "subscriptions": count(Subscription),
            "active": sorted(statuses),
            "invoices": count(Invoice),
            "invoiced_customers": len(set(invoiced)),
            "billing_runs": count(BillingRun),
            "usage_records": count(UsageRecord),
        }


def test_demo_seed_run_twice_completes_the_demo_tenant_once_and_duplicates_nothing(cli: Cli) -> None:
    first = _ok(cli("demo", "seed", timeout=120))
    summary = json.loads(first.stdout)
    assert summary["active_lines"] == 3
    assert summary["tenant_client"] == {"client_id": "cli_demo", "client_secret": "demo-secret-change-me"}
    assert summary["owner"]["email"] == "owner@demo-mobile.example"
    db = Database(cli.settings.database_url)
    try:
        after_first = _demo_counts(db)
    finally:
        db.dispose()

    # A demo seeded before some scopes existed: seeding again gives the demo client every tenant scope.
    db = Database(cli.settings.database_url)
    try:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE api_clients SET scopes = 'offers:read' WHERE id = 'cli_demo'"))
    finally:
        db.dispose()

    second = _ok(cli("demo", "seed", timeout=120))

    again = json.loads(second.stdout)
    assert again["active_lines"] == 3
    assert again["tenant_id"] == summary["tenant_id"]
    db = Database(cli.settings.database_url)
    try:
        counts = _demo_counts(db)
    finally:
        db.dispose()
    assert counts["tenant_id"] == summary["tenant_id"]
    assert (counts["offers"], counts["customers"], counts["subscriptions"]) == (4, 3, 3)  # 3 plans, an add-on
    assert counts["active"] == ["active"] * 3
    # One invoice per customer for the period, from the one billing run.
    assert (counts["invoices"], counts["invoiced_customers"], counts["billing_runs"]) == (3, 3, 1)
    assert counts["usage_records"] == after_first["usage_records"] > 0
    assert counts == after_first
    db = Database(cli.settings.database_url)
    try:
        with db.engine.connect() as conn:
            scopes = conn.scalar(text("SELECT scopes FROM api_clients WHERE id = 'cli_demo'"))
    finally:
        db.dispose()
    assert set(scopes.split()) == set(TENANT_SCOPES)


class Running:
    """`mvne run` as a child process, its output going to files (a full pipe would stall it)."""

    def __init__(self, cli: Cli, folder: Path, *args: str) -> None:
        self.base = f"http://127.0.0.1:{cli.port}"
        self.out_path, self.err_path = folder / "run.out", folder / "run.err"
        self._out, self._err = self.out_path.open("a"), self.err_path.open("a")
        self.process = subprocess.Popen(
            [str(MVNE), "run", *args], env=cli.env, cwd=folder, stdout=self._out, stderr=self._err, text=True
        )
        self.http = httpx.Client(base_url=self.base, timeout=5)

    def until(self, check: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"mvne run exited with {self.process.returncode} before {what}"
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def healthy(self) -> bool:
        try:
            return self.http.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def demo_list(self, path: str) -> list[dict[str, Any]] | None:
        """A list of the demo tenant's, through its seeded client; None until that client exists."""
        granted = self.http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "cli_demo",
                "client_secret": "demo-secret-change-me",
            },
        )
        if granted.status_code != 200:
            return None
        listed = self.http.get(path, headers={"Authorization": f"Bearer {granted.json()['access_token']}"})
        assert listed.status_code == 200, listed.text
        data: list[dict[str, Any]] = listed.json()["data"]
        return data

    def interrupt(self, timeout: float = 15) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=timeout)

    def close(self) -> None:
        self.http.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._out.close()
        self._err.close()


@contextlib.contextmanager
def mvne_run(cli: Cli, folder: Path, *args: str) -> Iterator[Running]:
    running = Running(cli, folder, *args)
    try:
        yield running
    finally:
        running.close()


def test_mvne_run_serves_seeds_the_demo_tenant_and_stops_cleanly_on_ctrl_c(cli: Cli, tmp_path: Path) -> None:
    with mvne_run(cli, tmp_path) as run:
        run.until(run.healthy, 60, "the health check")
        offers = run.until(lambda: (o := run.demo_list("/v1/offers")) and len(o) == 4 and o, 60, "the demo offers")
        assert sorted(o["code"] for o in offers) == ["EU-2GB", "FLEX-5", "FLEX-50", "UNLIMITED"]
        # The demo's owner logs in to the console with the password the start-up printed.
        printed = run.until(lambda: "console owner" in run.out_path.read_text(), 60, "the demo summary")
        assert printed
        login = {
            "tenant": "demo",
            "email": "owner@demo-mobile.example",
            "password": "violet harbour kettle sprint 7302",
        }
        assert "owner@demo-mobile.example / violet harbour kettle sprint 7302" in run.out_path.read_text()
        session = run.http.post("/v1/console/sessions", json=login)
        assert session.status_code == 201, session.text
        assert session.json()["staff_user"]["role"] == "owner"

        code = run.interrupt(timeout=15)

    assert code == 0, run.err_path.read_text()[-4000:]
    assert run.out_path.read_text().rstrip().endswith("stopped")
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{run.base}/healthz", timeout=2)


def test_lines_being_activated_when_mvne_run_is_stopped_are_activated_after_a_restart(cli: Cli, tmp_path: Path) -> None:
    with mvne_run(cli, tmp_path) as run:
        run.until(run.healthy, 60, "the health check")
        # The seed orders the three lines in the transaction that creates the offers: stop as soon as they show.
        lines = run.until(lambda: run.demo_list("/v1/subscriptions"), 60, "the demo lines")
        assert run.interrupt(timeout=15) == 0
    at_stop = sorted(line["status"] for line in lines)

    with mvne_run(cli, tmp_path, "--no-seed") as again:
        again.until(again.healthy, 60, "the health check after the restart")

        def all_active() -> list[dict[str, Any]] | None:
            current = again.demo_list("/v1/subscriptions") or []
            return current if len(current) == 3 and all(c["status"] == "active" for c in current) else None

        try:
            again.until(all_active, 30, "the demo lines to activate after the restart")
        except AssertionError:
            now = sorted(c["status"] for c in again.demo_list("/v1/subscriptions") or [])
            pytest.fail(f"lines were {at_stop} at the stop and are still {now} 30 s after the restart")
        assert again.interrupt(timeout=15) == 0


def test_operator_suspends_resumes_and_offboards_a_tenant_by_slug_or_id(cli: Cli, database: Database) -> None:
    from mvne.infra.jobs import OutboxMessage
    from mvne.tenants.offboarding import offboard_tenant
    from mvne.tenants.service import create_customer, create_tenant

    _ok(cli("db", "upgrade"))
    with database.session(platform=True) as session, session.begin():
        tenant_id = create_tenant(
            session, name="Leaving Mobile", slug="leaving", country="FR", currency="EUR", timezone="Europe/Paris"
        ).id
    with database.session(tenant_id=tenant_id) as session, session.begin():
        address = {"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "FR"}
        create_customer(session, name="Ada", email="ada@example.com", address=address)

    suspended = json.loads(_ok(cli("operator", "suspend-tenant", "leaving", "--reason", "unpaid fees")).stdout)
    assert (suspended["id"], suspended["status"], suspended["suspension_reason"]) == (
        tenant_id,
        "suspended",
        "unpaid fees",
    )
    again = cli("operator", "suspend-tenant", tenant_id)
    assert again.returncode != 0
    assert "tenant_already_suspended" in again.stderr
    assert json.loads(_ok(cli("operator", "resume-tenant", tenant_id)).stdout)["status"] == "active"
    refused = cli("operator", "offboard-tenant", "leaving")
    assert refused.returncode != 0
    assert "tenant_not_suspended" in refused.stderr
    assert "tenant_not_found" in cli("operator", "resume-tenant", "nobody").stderr

    _ok(cli("operator", "suspend-tenant", "leaving"))
    offboarding = json.loads(_ok(cli("operator", "offboard-tenant", "leaving")).stdout)
    assert offboarding["status"] == "offboarding"
    with database.session(platform=True) as session:
        queued = session.scalars(select(OutboxMessage.actor).where(OutboxMessage.tenant_id == tenant_id)).all()
        assert "tenants.offboard_tenant" in queued
    # The queued job, as a worker runs it.
    with side_runtime(cli.settings) as rt:
        offboard_tenant(rt.db, rt.storage, tenant_id)
    with database.session(platform=True) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        assert (tenant.status, tenant.export_location) == ("offboarded", f"exports/tenants/{tenant_id}/manifest.json")
        assert session.scalar(select(func.count()).where(Customer.tenant_id == tenant_id)) == 0
    assert "tenant_offboarded" in cli("operator", "resume-tenant", "leaving").stderr


def test_mailbox_lists_the_local_mailbox_newest_first_and_prints_the_last_message(cli: Cli) -> None:
    _ok(cli("db", "upgrade"))
    empty = cli("mailbox", "--last")
    assert empty.returncode != 0
    assert "no message" in empty.stderr

    with side_runtime(cli.settings) as rt:
        for n, address in enumerate(("ada@example.org", "bob@example.org", "ada@example.org")):
            LocalMailbox(rt.db).deliver(
                Mail(to=address, subject=f"Message {n}", text=f"Body {n}", kind="test_message"), "no-reply@x.test"
            )

    listed = _ok(cli("mailbox")).stdout.strip().splitlines()
    only_ada = _ok(cli("mailbox", "--to", "ADA@example.org")).stdout.strip().splitlines()
    last = _ok(cli("mailbox", "--to", "bob@example.org", "--last")).stdout.strip()

    assert [line.split("  ")[1:] for line in listed] == [
        ["ada@example.org", "[test_message]", "Message 2"],
        ["bob@example.org", "[test_message]", "Message 1"],
        ["ada@example.org", "[test_message]", "Message 0"],
    ]
    assert [line.rsplit("  ", 1)[1] for line in only_ada] == ["Message 2", "Message 0"]
    assert last == "Body 1"
