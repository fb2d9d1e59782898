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


@operator.command("list-clients")
@click.option("--tenant", "tenant_ref", default=None, help="Only this tenant's clients (its id or slug).")
def list_clients(tenant_ref: str | None) -> None:
    """Print every API client (tenants' and operators'), oldest first, as a JSON array; never a secret."""
    from sqlalchemy import select

    from mvne.infra.errors import DomainError
    from mvne.platform.wiring import build_runtime
    from mvne.tenants.models import ApiClient
    from mvne.tenants.schemas import ApiClientSchema
    from mvne.tenants.service import get_tenant, get_tenant_by_slug

    rt = build_runtime(_settings())
    try:
        with rt.db.transaction(platform=True) as session:
            stmt = select(ApiClient).order_by(ApiClient.id)
            if tenant_ref is not None:
                tenant = get_tenant_by_slug(session, tenant_ref) or get_tenant(session, tenant_ref)
                stmt = stmt.where(ApiClient.tenant_id == tenant.id)
            clients = ApiClientSchema(many=True).dump(session.scalars(stmt).all())
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from None
    finally:
        rt.stop()
    click.echo(json.dumps(clients, indent=2))


@operator.command("revoke-client")
@click.argument("client_id")
def revoke_client(client_id: str) -> None:
    """Revoke an API client: no new tokens, and its live tokens are refused at once; print it as JSON."""
    from mvne.infra.errors import DomainError
    from mvne.platform.wiring import build_runtime
    from mvne.tenants.schemas import ApiClientSchema
    from mvne.tenants.service import get_api_client, revoke_api_client

    rt = build_runtime(_settings())
    try:
        with rt.db.transaction(platform=True) as session:
            client = revoke_api_client(session, get_api_client(session, client_id, lock=True), by="operator")
            view = ApiClientSchema().dump(client)
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from None
    finally:
        rt.stop()
    click.echo(json.dumps(view))


@operator.command("grow-pool")
@click.option("--tenant", "tenant_ref", required=True, help="The tenant's id or slug.")
@click.option("--count", type=click.IntRange(1, 10_000), required=True, help="How many eSIM profiles to add.")
def grow_pool(tenant_ref: str, count: int) -> None:
    """Add eSIM profiles to a tenant's pool; print the pool's counts as JSON."""
    from mvne.esim.service import grow_profile_pool, pool_summary
    from mvne.infra.crypto import SecretBox
    from mvne.infra.errors import DomainError
    from mvne.platform.wiring import build_runtime
    from mvne.tenants.service import get_tenant_by_slug

    rt = build_runtime(_settings())
    try:
        with rt.db.transaction(platform=True) as session:
            tenant = get_tenant_by_slug(session, tenant_ref)
            tenant_id = tenant.id if tenant is not None else tenant_ref
            batch = grow_profile_pool(
                session, tenant_id=tenant_id, count=count, box=SecretBox.from_setting(rt.settings.sim_key)
            )
            pool = pool_summary(session, tenant_id)
    except DomainError as exc:
        raise click.ClickException(exc.detail) from None
    finally:
        rt.stop()
    summary = {"available": pool.available, "reserved": pool.reserved, "in_use": pool.in_use}
    click.echo(json.dumps({"tenant": tenant_id, "batch": batch.id, "added": count, "esim_pool": summary}))


def _change_standing(tenant_ref: str, change: str, **values: Any) -> None:
    """Run one of the tenants' standing services in the CLI's own transaction; print the tenant as JSON."""
    from mvne.infra.errors import DomainError
    from mvne.platform.wiring import build_runtime
    from mvne.tenants import standing

    rt = build_runtime(_settings())
    try:
        with rt.db.transaction(platform=True) as session:
            tenant = getattr(standing, change)(session, tenant_ref, **values)
            view = {
                "id": tenant.id,
                "slug": tenant.slug,
                "status": tenant.status,
                "suspended_at": tenant.suspended_at.isoformat() if tenant.suspended_at else None,
                "suspension_reason": tenant.suspension_reason,
                "offboarded_at": tenant.offboarded_at.isoformat() if tenant.offboarded_at else None,
                "export_location": tenant.export_location,
            }
    except DomainError as exc:
        raise click.ClickException(f"{exc.code}: {exc.detail}") from None
    finally:
        rt.stop()
    click.echo(json.dumps(view))


@operator.command("suspend-tenant")
@click.argument("tenant_ref", metavar="ID_OR_SLUG")
@click.option("--reason", default=None, help="Why, for the record and the tenant's event log.")
def suspend_tenant(tenant_ref: str, reason: str | None) -> None:
    """Suspend a tenant: its API refuses its clients (403 tenant_suspended); its subscribers keep service."""
    _change_standing(tenant_ref, "suspend_tenant", reason=reason)


@operator.command("resume-tenant")
@click.argument("tenant_ref", metavar="ID_OR_SLUG")
def resume_tenant(tenant_ref: str) -> None:
    """Resume a suspended tenant: its clients' calls are served again."""
    _change_standing(tenant_ref, "resume_tenant")


@operator.command("offboard-tenant")
@click.argument("tenant_ref", metavar="ID_OR_SLUG")
def offboard_tenant(tenant_ref: str) -> None:
    """Offboard a suspended tenant: queue the job that exports its data to storage, then erases it.

    A worker runs the job (`mvne worker`, or `mvne run` in embedded mode); the tenant shows
    `offboarding`, then `offboarded` with the export's location (`GET /v1/tenants/{id}`).
    """
    _change_standing(tenant_ref, "request_offboarding")


@main.command()
@click.option("--to", "to", default=None, help="Only the messages sent to this address.")
@click.option("--last", is_flag=True, help="Only the newest message, its text alone.")
def mailbox(to: str | None, last: bool) -> None:
    """Read the local mailbox (embedded mode): what the platform would have e-mailed, newest first."""
    from mvne.infra.mail import MAILBOX, mailbox_messages
    from mvne.platform.wiring import build_runtime

    settings = _settings()
    if settings.mail_url != MAILBOX:
        raise click.ClickException("mail goes to an SMTP server here (MVNE_MAIL_URL); the local mailbox is unused")
    rt = build_runtime(settings)
    try:
        with rt.db.transaction(platform=True) as session:
            messages = mailbox_messages(session, to=to, limit=1 if last else 20)
            if last:
                if not messages:
                    raise click.ClickException(f"no message{' to ' + to if to else ''} in the mailbox")
                click.echo(messages[0].text)
                return
            for m in messages:
                click.echo(f"{m.created_at:%Y-%m-%d %H:%M:%S}  {m.to_address}  [{m.kind}]  {m.subject}")
    finally:
        rt.stop()


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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3868, show_default=True, help="TCP port (3868 is Diameter's).")
@click.option("--origin-host", default="ocs.mvne.localhost", show_default=True, help="Our Diameter identity.")
@click.option("--origin-realm", default="mvne.localhost", show_default=True, help="Our Diameter realm.")
@click.option(
    "--peer", "peers", multiple=True, required=True, help="Origin-Host of a network element allowed (repeat)."
)
@click.option("--workers", default=32, show_default=True, help="Requests answered at once.")
def diameter(
    *, host: str, port: int, origin_host: str, origin_realm: str, peers: tuple[str, ...], workers: int
) -> None:
    """Serve online charging over Diameter Gy (CCR/CCA) to the host network's gateways, until stopped."""
    from mvne.charging.online.diameter import GyServer
    from mvne.charging.online.service import online_charging
    from mvne.infra.logging import configure_logging
    from mvne.platform.wiring import build_runtime

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    rt = build_runtime(settings)
    engine = online_charging(rt)
    server = GyServer(
        engine.handle,
        host=host,
        port=port,
        origin_host=origin_host,
        origin_realm=origin_realm,
        peers=peers,
        workers=workers,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    click.echo(f"Gy on {host}:{port} as {origin_host} ({origin_realm}), peers: {', '.join(peers)}")
    stop.wait()
    server.stop()
    rt.stop()


@main.group()
def sim() -> None:
    """Simulators of the outside systems."""


def _serve(app: Any, host: str, port: int) -> None:
    from waitress import serve

    click.echo(f"listening on http://{host}:{port}")
    serve(app, host=host, port=port, threads=8, _quiet=True)


def _serve_tls(app: Any, host: str, port: int, context: Any) -> None:
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True, ssl_context=context)
    click.echo(f"listening on https://{host}:{server.port}")
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever()


_PEM = click.Path(exists=True, dir_okay=False)


@sim.command("smdp")
@click.option("--host", default="127.0.0.1")
@click.option("--port", default=8101, show_default=True)
@click.option("--address", default=None, help="The SM-DP+ address in activation codes.")
@click.option("--state", type=click.Path(path_type=Path), default=None, help="JSON file keeping its state.")
@click.option("--notify", default=None, help="URL receiving HandleDownloadProgressInfo.")
@click.option("--certfile", type=_PEM, default=None, help="Serve HTTPS with this certificate (PEM).")
@click.option("--keyfile", type=_PEM, default=None, help="The key of --certfile (PEM).")
@click.option("--ca-file", type=_PEM, default=None, help="CA of the operators' client certificates (PEM).")
@click.option("--require-client-cert", is_flag=True, help="Refuse TLS clients without a certificate from --ca-file.")
@click.option("--notify-cert", type=_PEM, default=None, help="Client certificate for notifications [--certfile].")
@click.option("--notify-key", type=_PEM, default=None, help="The key of --notify-cert [--keyfile].")
@click.option("--notify-ca-file", type=_PEM, default=None, help="CA of the operator's HTTPS server [--ca-file].")
def sim_smdp(
    *,
    host: str,
    port: int,
    address: str | None,
    state: Path | None,
    notify: str | None,
    certfile: str | None,
    keyfile: str | None,
    ca_file: str | None,
    require_client_cert: bool,
    notify_cert: str | None,
    notify_key: str | None,
    notify_ca_file: str | None,
) -> None:
    """Run the SM-DP+ (ES2+) simulator alone, over HTTPS with client certificates when given them."""
    from mvne.esim.simulator import create_smdp_simulator
    from mvne.esim.tls import client_tls, server_tls

    if bool(certfile) != bool(keyfile):
        raise click.UsageError("--certfile and --keyfile go together")
    if require_client_cert and not (certfile and ca_file):
        raise click.UsageError("--require-client-cert needs --certfile, --keyfile and --ca-file")
    cert_file, key_file = notify_cert or certfile, notify_key or keyfile
    if bool(cert_file) != bool(key_file):
        raise click.UsageError("--notify-cert and --notify-key go together")
    notify_tls = client_tls(notify_ca_file or ca_file, (cert_file, key_file) if cert_file and key_file else None)
    settings = _settings()
    app = create_smdp_simulator(
        smdp_address=address or settings.smdp_address,
        state_path=state,
        notification_url=notify,
        notify_tls=notify_tls,
    )
    if certfile and keyfile:
        _serve_tls(app, host, port, server_tls(certfile, keyfile, ca_file, require_client_cert=require_client_cert))
    else:
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
@click.option("--mms", default=0, show_default=True)
@click.option(
    "--start", default=None, help="ISO time of the first record; default: spread since the line joined (a day at most)."
)
@click.option("--url", default=None, help="The network simulator's URL; default: MVNE_NETWORK_URL.")
def emit_usage(
    *,
    msisdns: tuple[str, ...],
    data_mb: int,
    voice_minutes: int,
    sms: int,
    mms: int,
    start: str | None,
    url: str | None,
) -> None:
    """Make the host network drop a usage file for these lines into storage."""

    import httpx

    settings = _settings()
    base = url or settings.network_url
    body: dict[str, object] = {
        "msisdns": list(msisdns),
        "data_mb": data_mb,
        "voice_minutes": voice_minutes,
        "sms": sms,
        "mms": mms,
    }
    if start:
        body["start"] = start
    target = f"{base.rstrip('/')}/usage/emit"
    try:
        response = httpx.post(target, timeout=30, json=body)
    except httpx.HTTPError as exc:
        # One line, naming where it looked: the address follows MVNE_PORT / MVNE_PUBLIC_URL / MVNE_NETWORK_URL.
        reason = str(exc) or type(exc).__name__
        raise click.ClickException(
            f"cannot reach the network simulator at {base} ({reason}); is the platform running? "
            "Its address comes from MVNE_NETWORK_URL, else MVNE_PUBLIC_URL or MVNE_HOST and MVNE_PORT, or --url."
        ) from None
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
    from mvne.platform.bench_charging import charging
    from mvne.platform.bench_rating import rating

    bench.add_command(rating)
    bench.add_command(charging)
    main.add_command(bench)


_register_bench()
