"""The `mvne` command: database, demo, operators, worker, scheduler, simulators, and `run`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from mvne.infra.settings import Settings, SettingsError, load_settings


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(f"bad setting: {exc}") from None


@click.group()
def main() -> None:
    """Run and operate the MVNE platform."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from mvne.infra.migrate import upgrade

    settings = _settings()
    upgrade(settings)
    click.echo("database is at the newest schema")


@db.command("check")
def db_check() -> None:
    """Fail if the models and the migrations disagree."""
    from mvne.infra.migrate import check

    check(_settings())
    click.echo("models and migrations agree")


@main.group()
def demo() -> None:
    """The demo tenant."""


@demo.command("seed")
def demo_seed() -> None:
    """Create (or complete) the demo tenant: offers, customers, active eSIM lines, usage, an invoice."""
    from mvne.platform.demo import seed_standalone

    click.echo(json.dumps(seed_standalone(_settings()), indent=2))


@main.group()
def operator() -> None:
    """Platform operators."""


@operator.command("create-client")
@click.option("--name", required=True, help="Who or what the credentials are for.")
def create_client(name: str) -> None:
    """Print new platform-operator client credentials as JSON."""
    from mvne.platform.auth import OPERATOR_SCOPES
    from mvne.platform.wiring import build_runtime
    from mvne.tenants.service import issue_api_client

    rt = build_runtime(_settings())
    with rt.db.transaction(platform=True) as session:
        issued = issue_api_client(
            session, tenant_id=None, name=name, scopes=list(OPERATOR_SCOPES), allowed=OPERATOR_SCOPES
        )
    click.echo(json.dumps({"client_id": issued.client_id, "client_secret": issued.client_secret}))


@main.command()
@click.option("--processes", default=2, show_default=True)
@click.option("--threads", default=4, show_default=True)
def worker(processes: int, threads: int) -> None:
    """Run Dramatiq worker processes consuming every queue."""
    import os

    from mvne.infra.jobs import QUEUES

    args = [
        "dramatiq",
        "mvne.platform.worker",
        "--processes",
        str(processes),
        "--threads",
        str(threads),
        "--queues",
        *QUEUES,
    ]
    os.execv(sys.executable, [sys.executable, "-m", *args])  # noqa: S606 (replaces this process by design)


@main.command()
def scheduler() -> None:
    """Relay the outbox to the broker and run periodic tasks (run exactly one)."""
    from mvne.infra.logging import configure_logging
    from mvne.platform.wiring import build_runtime

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    rt = build_runtime(settings)
    with rt.leader_lock():
        rt.start_relay()
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        thread = threading.Thread(target=rt.run_scheduler, daemon=True)
        thread.start()
        stop.wait()
        rt.stop()


@main.group()
def sim() -> None:
    """Simulators of the outside systems."""


def _serve(app: Any, host: str, port: int) -> None:
    from waitress import serve

    click.echo(f"listening on http://{host}:{port}")
    serve(app, host=host, port=port, threads=8, _quiet=True)


@sim.command("smdp")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8101, show_default=True)
@click.option("--address", default=None, help="The SM-DP+ address in activation codes.")
@click.option("--state", type=click.Path(path_type=Path), default=None, help="JSON file keeping its state.")
@click.option("--notify", default=None, help="URL receiving HandleDownloadProgressInfo.")
def sim_smdp(host: str, port: int, address: str | None, state: Path | None, notify: str | None) -> None:
    """Run the SM-DP+ (ES2+) simulator alone."""
    from mvne.esim.simulator import create_smdp_simulator

    settings = _settings()
    app = create_smdp_simulator(
        smdp_address=address or settings.smdp_address, state_path=state, notification_url=notify
    )
    _serve(app, host, port)


@sim.group("network", invoke_without_command=True)
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8102, show_default=True)
@click.option("--state", type=click.Path(path_type=Path), default=None, help="JSON file keeping its state.")
@click.pass_context
def sim_network(ctx: click.Context, host: str, port: int, state: Path | None) -> None:
    """Run the host-network simulator alone (or use a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    from mvne.infra.storage import build_storage
    from mvne.provisioning.simulator import create_network_simulator

    settings = _settings()
    storage = build_storage(
        settings.storage_url, s3_endpoint_url=settings.s3_endpoint_url or None, s3_region=settings.s3_region
    )
    _serve(create_network_simulator(storage=storage, state_path=state), host, port)


@sim_network.command("emit-usage")
@click.option("--msisdn", "msisdns", multiple=True, required=True, help="E.164 number; repeat for several.")
@click.option("--data-mb", default=0, show_default=True)
@click.option("--voice-minutes", default=0, show_default=True)
@click.option("--sms", default=0, show_default=True)
@click.option(
    "--start", default=None, help="ISO time of the first record; default: spread since the line joined (a day at most)."
)
@click.option("--url", default=None, help="The network simulator's URL; default: MVNE_NETWORK_URL.")
def emit_usage(
    *, msisdns: tuple[str, ...], data_mb: int, voice_minutes: int, sms: int, start: str | None, url: str | None
) -> None:
    """Make the host network drop a usage file for these lines into storage."""

    import httpx

    settings = _settings()
    base = url or settings.network_url
    body: dict[str, object] = {"msisdns": list(msisdns), "data_mb": data_mb, "voice_minutes": voice_minutes, "sms": sms}
    if start:
        body["start"] = start
    response = httpx.post(f"{base.rstrip('/')}/usage/emit", timeout=30, json=body)
    if response.status_code >= 400:
        raise click.ClickException(f"the network simulator refused: {response.text}")
    click.echo(json.dumps(response.json()))


@main.command()
@click.option("--seed/--no-seed", default=True, help="Seed the demo tenant once the server is up.")
def run(seed: bool) -> None:
    """Embedded mode: web app, worker, scheduler and simulators in one process."""
    from mvne.platform.embedded import run_embedded

    run_embedded(_settings(), seed=seed)


def _register_bench() -> None:
    from mvne.platform.bench import bench

    main.add_command(bench)


_register_bench()
