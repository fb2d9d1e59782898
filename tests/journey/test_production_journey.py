"""The journey in production mode: every part a separate process, on PostgreSQL, Redis and S3.

gunicorn serves the app, `mvne worker` runs Dramatiq worker processes consuming Redis, `mvne scheduler`
relays the outbox and finds usage files, and the simulators run alone; objects go to moto's S3 server.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest
from sqlalchemy import create_engine, text

from mvne.esim.tls import client_tls
from mvne.infra.secrets import generate_rsa_pem
from tests.conftest import create_postgres_database, drop_postgres_database, free_port, postgres_server_url
from tests.journey.launch import assert_invoice_carries_the_legal_profile, run_signup_to_live
from tests.journey.scenario import Backdate, run_journey
from tests.support.certs import es2plus_pki
from tests.support.s3 import moto_s3_server
from tests.support.smtp import SmtpSink, smtp_sink

BIN = Path(sys.executable).parent


class Processes:
    """Child processes with their logs, stopped together."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        child = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append((name, child))

    def run(self, *args: str) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def check_alive(self) -> None:
        for name, child in self.children:
            if child.poll() is not None:
                raise AssertionError(f"{name} exited with {child.returncode}:\n{self.tail(name)}")

    def tail(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for _, child in reversed(self.children):
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGTERM)
        for _, child in self.children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=5)


def wait_http(url: str, processes: Processes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s")


def wait_https(url: str, processes: Processes, tls: bool | ssl.SSLContext, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            if httpx.get(url, timeout=2, verify=tls).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer in {timeout} s")


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    """The mail server production mode sends through: a real SMTP server the test reads."""
    with smtp_sink(free_port()) as sink:
        yield sink


@pytest.fixture(scope="module")
def production(
    redis_server_url: str, smtp: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    server = postgres_server_url()
    if server is None:
        from tests.conftest import skip_or_fail

        skip_or_fail("needs PostgreSQL: set MVNE_TEST_DATABASE_URL")
    assert server is not None
    app_url, platform_url, owner_url, database = create_postgres_database(server)
    logs = tmp_path_factory.mktemp("production-logs")
    # ES2+ over mutual TLS: the SM-DP+ notifies our TLS listener with its client certificate.
    pki = es2plus_pki(tmp_path_factory.mktemp("pki"))
    ca, ours, smdp_cert = str(pki.ca.cert_file), pki.operator, pki.smdp
    with moto_s3_server() as s3_endpoint:
        bucket = f"mvne-{secrets.token_hex(4)}"
        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
        web, es2plus, smdp, network = free_port(), free_port(), free_port(), free_port()
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "MVNE_MODE": "production",
            "MVNE_DATABASE_URL": app_url,
            "MVNE_MIGRATION_DATABASE_URL": owner_url,
            "MVNE_PLATFORM_DATABASE_URL": platform_url,
            "MVNE_BROKER_URL": redis_server_url,
            "MVNE_CHARGING_URL": redis_server_url,
            "MVNE_CHARGING_VOLATILE_OK": "true",
            "MVNE_BROKER_NAMESPACE": f"mvne-test-{secrets.token_hex(4)}",
            "MVNE_STORAGE_URL": f"s3://{bucket}",
            "MVNE_S3_ENDPOINT_URL": s3_endpoint,
            "MVNE_PUBLIC_URL": f"http://127.0.0.1:{web}",
            "MVNE_SECRET_KEY": secrets.token_urlsafe(32),
            "MVNE_JWT_PRIVATE_KEY": generate_rsa_pem(),
            "MVNE_SIM_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "MVNE_SMDP_URL": f"https://127.0.0.1:{smdp}",
            "MVNE_NETWORK_URL": f"http://127.0.0.1:{network}",
            "MVNE_SMDP_CA_FILE": ca,
            "MVNE_SMDP_CLIENT_CERT_FILE": str(ours.cert_file),
            "MVNE_SMDP_CLIENT_KEY_FILE": str(ours.key_file),
            "MVNE_SMDP_ALLOWED_SUBJECTS": smdp_cert.subject,
            "MVNE_MAIL_URL": smtp.url,
            "MVNE_MAIL_FROM": "no-reply@journey.example",
            "MVNE_LOG_LEVEL": "WARNING",
        }
        processes = Processes(env, logs)
        try:
            processes.run(str(BIN / "mvne"), "db", "upgrade")
            processes.start(
                "smdp",
                str(BIN / "mvne"),
                "sim",
                "smdp",
                "--port",
                str(smdp),
                # It serves ES2+ over TLS and takes calls only with a client certificate from the CA.
                "--certfile",
                str(smdp_cert.cert_file),
                "--keyfile",
                str(smdp_cert.key_file),
                "--ca-file",
                ca,
                "--require-client-cert",
                "--notify",
                f"https://127.0.0.1:{es2plus}/gsma/rsp2/es2plus/handleDownloadProgressInfo",
            )
            processes.start("network", str(BIN / "mvne"), "sim", "network", "--port", str(network))
            processes.start(
                "web",
                str(BIN / "gunicorn"),
                "-w",
                "2",
                "-c",
                "python:mvne.platform.gunicorn_conf",
                "--threads",
                "4",
                "-b",
                f"127.0.0.1:{web}",
                "mvne.platform.wsgi:app",
            )
            # The partners' listener: TLS that requires a client certificate from the SM-DP+'s CA.
            processes.start(
                "web-es2plus",
                str(BIN / "gunicorn"),
                "-w",
                "1",
                "-c",
                "python:mvne.platform.gunicorn_conf",
                "--threads",
                "2",
                "-b",
                f"127.0.0.1:{es2plus}",
                "--certfile",
                str(ours.cert_file),
                "--keyfile",
                str(ours.key_file),
                "--ca-certs",
                ca,
                "--cert-reqs",
                "2",
                "mvne.platform.wsgi:app",
            )
            processes.start("worker", str(BIN / "mvne"), "worker", "--processes", "1", "--threads", "4")
            processes.start("scheduler", str(BIN / "mvne"), "scheduler")
            our_tls = client_tls(ca, (str(ours.cert_file), str(ours.key_file)))
            wait_https(f"https://127.0.0.1:{smdp}/healthz", processes, our_tls)
            wait_http(f"http://127.0.0.1:{network}/healthz", processes)
            wait_http(f"http://127.0.0.1:{web}/readyz", processes)
            smdp_tls = client_tls(ca, (str(smdp_cert.cert_file), str(smdp_cert.key_file)))
            wait_https(f"https://127.0.0.1:{es2plus}/readyz", processes, smdp_tls)
            creds = processes.run(str(BIN / "mvne"), "operator", "create-client", "--name", "journey")
            yield {
                "base": f"http://127.0.0.1:{web}",
                "network": f"http://127.0.0.1:{network}",
                "smdp": f"https://127.0.0.1:{smdp}",
                "creds": creds,
                "logs": str(logs),
                "owner_url": owner_url,
                "ca": ca,
                "our_cert": str(ours.cert_file),
                "our_key": str(ours.key_file),
            }
            processes.check_alive()
        finally:
            processes.stop()
            drop_postgres_database(server, database)


def backdate_on(database_url: str) -> Backdate:
    """Set a line's activation time straight in the database (as the tables' owner)."""

    def backdate(subscription_id: str, activated_at: dt.datetime) -> None:
        engine = create_engine(database_url)
        try:
            with engine.begin() as conn:
                conn.execute(
                    text("UPDATE subscriptions SET activated_at = :at WHERE id = :id"),
                    {"at": activated_at, "id": subscription_id},
                )
        finally:
            engine.dispose()

    return backdate


def test_an_mvno_goes_from_tenant_to_invoice_on_postgres_redis_and_s3_with_separate_workers(
    production: dict[str, str],
) -> None:
    import json

    creds = json.loads(production["creds"])
    readiness = httpx.get(f"{production['base']}/readyz", timeout=5).json()
    assert readiness == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}
    invoice = run_journey(
        production["base"],
        production["network"],
        production["smdp"],
        creds["client_id"],
        creds["client_secret"],
        backdate=backdate_on(production["owner_url"]),
        smdp_tls=client_tls(production["ca"], (production["our_cert"], production["our_key"])),
        timeout=90,
    )
    assert invoice["total"] == "33.84"
    # The SM-DP+ took our ES2+ calls over mutual TLS: without a client certificate it refuses the handshake.
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{production['smdp']}/healthz", timeout=10, verify=client_tls(production["ca"], None))
    # The installation notification came over mutual TLS; without a client certificate none is taken.
    unauthenticated = httpx.post(
        f"{production['base']}/gsma/rsp2/es2plus/handleDownloadProgressInfo", json={}, timeout=10
    )
    assert unauthenticated.status_code == 403
    assert unauthenticated.json()["header"]["functionExecutionStatus"]["status"] == "Failed"


def test_a_founder_goes_from_sign_up_to_live_and_invoices_alone_on_the_production_set_up(
    production: dict[str, str], smtp: SmtpSink
) -> None:
    def read_mail(address: str, kind: str) -> str:
        return SmtpSink.text_of(smtp.wait_for(address, kind=kind, timeout=30))

    text = run_signup_to_live(production["base"], read_mail, backdate=backdate_on(production["owner_url"]), timeout=90)

    assert_invoice_carries_the_legal_profile(text)
