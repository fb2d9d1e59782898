"""`mvne bench`: measure the spine's throughput on this machine and print the figures.

It runs the embedded platform on a scratch database (SQLite, or PostgreSQL when MVNE_DATABASE_URL
names one) and drives it through the API: activations, usage rating, a billing run, invoice PDFs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from flask.testing import FlaskClient
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url

from mvne.charging.billing import last_ended_period
from mvne.charging.models import Invoice
from mvne.infra.migrate import upgrade
from mvne.infra.settings import Settings, load_settings
from mvne.platform.auth import OPERATOR_SCOPES, TENANT_SCOPES
from mvne.platform.embedded import EmbeddedServer
from mvne.provisioning.models import Subscription
from mvne.tenants.service import issue_api_client


def _token(client: FlaskClient, client_id: str, secret: str) -> dict[str, str]:
    response = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    )
    return {"Authorization": f"Bearer {response.json['access_token']}"}  # type: ignore[index]


def _wait(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise click.ClickException("the platform did not finish in time")
        time.sleep(0.05)


def _tenant(rt: Any, client: FlaskClient) -> tuple[dict[str, str], str, str]:
    """A tenant with a published offer; returns its auth header, the offer id and the tenant id."""
    with rt.db.transaction(platform=True) as session:
        op = issue_api_client(
            session, tenant_id=None, name="bench", scopes=list(OPERATOR_SCOPES), allowed=OPERATOR_SCOPES
        )
    op_h = _token(client, op.client_id, op.client_secret)
    slug = f"bench-{secrets.token_hex(3)}"
    tenant = client.post(
        "/v1/tenants",
        headers=op_h,
        json={"name": "Bench", "slug": slug, "country": "FR", "currency": "EUR", "timezone": "Europe/Paris"},
    ).json
    assert tenant is not None
    creds = client.post(
        f"/v1/tenants/{tenant['id']}/api-clients",
        headers=op_h,
        json={"name": "bench", "scopes": list(TENANT_SCOPES)},
    ).json
    assert creds is not None
    h = _token(client, creds["client_id"], creds["client_secret"])
    offer = client.post(
        "/v1/offers",
        headers=h,
        json={
            "code": "B",
            "name": "Bench",
            "price": "10.00",
            "allowances": {"data_mb": 1000, "voice_minutes": 60, "sms": 10},
            "overage": {"data_per_mb": "0.01", "voice_per_minute": "0.20", "sms_per_message": "0.10"},
        },
    ).json
    assert offer is not None
    client.post(f"/v1/offers/{offer['id']}/publish", headers=h)
    return h, offer["id"], tenant["id"]


def run_bench(settings: Settings, *, lines: int, records: int, batch: int) -> dict[str, float]:
    """Drive the platform and return the figures (per second, or seconds)."""
    upgrade(settings)
    figures: dict[str, float] = {}
    with EmbeddedServer(settings) as server:
        rt, client = server.runtime, server.app.test_client()
        h, offer_id, tenant_id = _tenant(rt, client)

        started = time.perf_counter()
        subs = []
        for n in range(lines):
            customer = client.post(
                "/v1/customers",
                headers=h,
                json={
                    "name": f"Customer {n}",
                    "email": f"c{n}@bench.example",
                    "address": {"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "FR"},
                },
            ).json
            assert customer is not None
            sub = client.post(
                "/v1/subscriptions",
                headers=h,
                json={"customer": customer["id"], "offer": offer_id, "sim_type": "esim"},
            ).json
            assert sub is not None
            subs.append(sub["id"])

        def all_active() -> bool:
            page = client.get("/v1/subscriptions", headers=h, query_string={"status": "active", "limit": 100}).json
            count = len(page["data"]) if page else 0
            return count >= min(lines, 100)

        _wait(all_active, timeout=600)
        figures["activations_per_s"] = lines / (time.perf_counter() - started)

        # Billing runs bill ended periods: the bench's lines joined at the start of the last one.
        period, joined = last_ended_period("Europe/Paris")
        with rt.db.transaction(tenant_id=tenant_id) as session:
            session.execute(update(Subscription).where(Subscription.id.in_(subs)).values(activated_at=joined))
        start_at = joined + dt.timedelta(days=1)
        sent = 0
        started = time.perf_counter()
        while sent < records:
            chunk = [
                {
                    "record_id": f"r{sent + i}",
                    "subscription": subs[(sent + i) % lines],
                    "service": "data",
                    "started_at": start_at.isoformat(),
                    "volume": 10_000_000,
                }
                for i in range(min(batch, records - sent))
            ]
            result = client.post("/v1/usage-records", headers=h, json={"records": chunk}).json
            assert result is not None
            assert result["accepted"] == len(chunk), result
            sent += len(chunk)
        figures["usage_records_rated_per_s"] = records / (time.perf_counter() - started)

        started = time.perf_counter()
        run = client.post("/v1/billing-runs", headers=h, json={"period": period}).json
        assert run is not None
        run_id = str(run["id"])

        def run_done() -> bool:
            current = client.get(f"/v1/billing-runs/{run_id}", headers=h).json
            return current is not None and current["status"] not in ("pending", "running")

        _wait(run_done, timeout=600)
        figures["invoices_issued_per_s"] = lines / (time.perf_counter() - started)

        def pdfs_done() -> bool:
            with rt.db.transaction(tenant_id=tenant_id) as session:
                missing = session.scalar(select(func.count()).select_from(Invoice).where(Invoice.pdf_key.is_(None)))
                return missing == 0

        _wait(pdfs_done, timeout=600)
        figures["billing_run_with_pdfs_s"] = time.perf_counter() - started
    return figures


@contextlib.contextmanager
def _scratch_database(base: Settings, scratch: Path) -> Iterator[str]:
    """A throwaway database: a SQLite file, or a new database on the PostgreSQL server of the settings."""
    if not base.is_postgres:
        yield f"sqlite:///{scratch}/bench.db"
        return
    server = make_url(base.migration_database_url or base.database_url)
    name = f"mvne_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@click.group("bench", invoke_without_command=True)
@click.option("--lines", default=100, show_default=True, help="Subscriptions to activate and bill.")
@click.option("--records", default=20_000, show_default=True, help="Usage records to rate.")
@click.option("--batch", default=1000, show_default=True, help="Records per API call.")
@click.pass_context
def bench(ctx: click.Context, lines: int, records: int, batch: int) -> None:
    """Measure activations, rating and billing throughput; prints the figures.

    `mvne bench rating` measures usage rating from a file to PostgreSQL against COPY instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    base = load_settings()
    with tempfile.TemporaryDirectory() as scratch, _scratch_database(base, Path(scratch)) as database_url:
        settings = base.with_overrides(
            var_dir=Path(scratch),
            log_level="WARNING",
            port=base.port + 17,
            database_url=database_url,
            migration_database_url="",
            storage_url=f"file://{scratch}/storage",
            smdp_url="",
            network_url="",
            public_url="",
        )
        figures = run_bench(settings, lines=lines, records=records, batch=batch)
    backend = "PostgreSQL" if settings.is_postgres else "SQLite"
    click.echo(f"mvne bench ({backend}, {lines} lines, {records} usage records in batches of {batch})")
    for name, value in figures.items():
        click.echo(f"  {name:<28} {value:10.1f}")
