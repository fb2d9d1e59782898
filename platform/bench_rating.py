"""`mvne bench rating`: from a usage file in storage to rated rows committed in PostgreSQL, measured.

On a scratch PostgreSQL database it makes one tenant with many active lines (inserted with COPY) and a
retail rate card of many prefixes, writes a usage file of generated records (the documented CDR columns,
called numbers drawn from the card's prefixes, a share of roaming records) to storage, then measures and
prints, each with records/s and seconds:

- parse: reading the file from storage and parsing it, streamed;
- the file path end to end, as production runs it: the file found and cut into segments (a file of several
  partitioned by line, in the cut), each segment a job run by worker processes (as many as `--workers`), the
  file completed by its last segment; its time split into cut, parse, rate (Python) and write (SQL
  statements, lookups and locks included, and commits), the last three summed over the workers;
- the ceiling: COPY of the same rows (the columns the rated path writes) into `usage_records`, as the
  tables' owner, and the ratio of the file path to it;
- the ways of writing rated rows (`write_usage_rows`): COPY straight in (a platform session), COPY into a
  staging table then INSERT ... SELECT ... ON CONFLICT (a tenant session), and multi-row INSERTs;
- a per-record ORM path on a sample (a lookup, `session.add` and a flush per record), for the speed-up;
- the pure rate-card pricing on a card of many prefixes: compile time and events/s;
- the batch API: `POST /v1/usage-records` in batches through the app's test client, on a sample; and over
  HTTP to gunicorn (the production configuration, as many processes as `--workers`, two clients for each
  posting side by side), on another;
- the peak memory of the process after each phase, and of each worker process, beside the targets.

The figures are printed as a table and written as JSON under the var folder.
"""

from __future__ import annotations

import contextlib
import cProfile
import csv
import datetime as dt
import io
import json
import logging
import multiprocessing
import os
import pstats
import random
import re
import resource
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import httpx
import psycopg
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Engine, make_url

from mvne.catalog.models import Offer
from mvne.charging import ratecard_service, ratecards
from mvne.charging import usage_files as usage_file_segments
from mvne.charging.models import UsageFile, UsageRecord
from mvne.charging.rating import Service, rate_usage
from mvne.charging.usage import USAGE_ROW_COLUMNS, UsageWindow, period_of, period_window
from mvne.charging.usage_files import discover_usage_files, ingest_usage_file, ingest_usage_segment
from mvne.charging.usage_writer import USAGE_COLUMNS, Method, write_usage_rows
from mvne.infra.db import Database
from mvne.infra.ids import new_id
from mvne.infra.jobs import OutboxMessage
from mvne.infra.migrate import upgrade
from mvne.infra.runtime import current_runtime_or_none, set_runtime
from mvne.infra.settings import Settings, load_settings
from mvne.infra.storage import FileStorage
from mvne.platform.app import create_app
from mvne.platform.auth import TENANT_SCOPES
from mvne.platform.bench import _tenant, _token
from mvne.platform.gunicorn_process import gunicorn_server
from mvne.platform.wiring import build_runtime, load_actor_modules
from mvne.provisioning import usage_files
from mvne.provisioning.models import Subscription
from mvne.tenants.models import Tenant
from mvne.tenants.service import issue_api_client

log = logging.getLogger("mvne.bench")
TARGET_RECORDS_PER_S = 100_000
TARGET_API_RECORDS_PER_S = 20_000
TARGET_PEAK_BYTES = 1 << 30
MIX = (("data", 0.60), ("voice", 0.30), ("sms", 0.10))
ROAMING_SHARE = 0.05
BENCH_APP_ROLE = "mvne_bench_app"
BENCH_PLATFORM_ROLE = "mvne_bench_platform"
# Visited networks (MCC+MNC) of the roaming share: half in the EU (Germany, Spain, Italy, the Netherlands),
# half elsewhere (the United States, Japan, Australia, Switzerland).
EU_NETWORKS = ("26201", "21407", "22210", "20404")
WORLD_NETWORKS = ("310260", "44010", "50501", "22801")
CDR_COLUMNS = usage_files.CDR_FIELDS
WRITE_METHODS: tuple[tuple[Method, bool], ...] = (("copy", True), ("staging", False), ("insert", False))


def _peak_bytes() -> int:
    """The process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class Figures:
    """The measured figures, in the order they are printed; `notes` say what a figure covers."""

    params: dict[str, Any]
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def phase(self, name: str, *, records: int, seconds: float, target: float | None = None, **extra: Any) -> None:
        rate = records / seconds if seconds > 0 else 0.0
        self.phases[name] = {
            "records": records,
            "seconds": round(seconds, 4),
            "records_per_s": round(rate, 1),
            "target_records_per_s": target,
            "meets_target": None if target is None else rate >= target,
            "peak_rss_bytes": _peak_bytes(),
            **extra,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"params": self.params, "phases": self.phases, "notes": self.notes}


class _StatementClock:
    """Time spent inside the driver's execute calls (SQL sent, run and answered) on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.seconds = 0.0
        self.statements = 0
        self.by_kind: dict[str, tuple[int, float]] = {}
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, *_: Any) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        spent = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        self.seconds += spent
        self.statements += 1
        kind = _statement_kind(statement)
        count, total = self.by_kind.get(kind, (0, 0.0))
        self.by_kind[kind] = (count + 1, total + spent)

    def slowest(self, top: int = 6) -> list[dict[str, Any]]:
        """The kinds of statement that took the most time: what the write time is made of."""
        ranked = sorted(self.by_kind.items(), key=lambda item: item[1][1], reverse=True)[:top]
        return [{"statement": kind, "count": count, "seconds": round(total, 4)} for kind, (count, total) in ranked]

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._before)
        event.remove(self._engine, "after_cursor_execute", self._after)


_TABLE_OF = re.compile(r"\b(?:FROM|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)


def _statement_kind(statement: str) -> str:
    """`SELECT usage_records`, `INSERT balance_buckets ... FOR UPDATE`: a statement's verb and first table."""
    verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
    table = _TABLE_OF.search(statement)
    suffix = " FOR UPDATE" if "FOR UPDATE" in statement.upper() else ""
    return f"{verb} {table[1] if table else '-'}{suffix}"


# The scratch database -----------------------------------------------------------------------------------


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as the driver's own connection string."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_postgres(server_url: str) -> Iterator[tuple[str, str, str, bool]]:
    """A new database on the server: (application URL, platform URL, owner URL, whether RLS binds the app).

    The application connects as a role row-level security binds, as in production, when the server lets
    the bench create one; otherwise everything runs as the owner and the figures say so.
    """
    server = make_url(server_url).set(drivername="postgresql+psycopg")
    name = f"mvne_bench_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    owner = server.set(database=name)
    app_url = platform_url = owner.render_as_string(hide_password=False)
    bound = False
    try:
        with admin.connect() as conn:
            for role, bypass in ((BENCH_APP_ROLE, "NOBYPASSRLS"), (BENCH_PLATFORM_ROLE, "BYPASSRLS")):
                exists = f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'"  # noqa: S608 (constant role names)
                create = f"CREATE ROLE {role} LOGIN NOSUPERUSER {bypass}"
                conn.execute(
                    text(
                        f"DO $$ BEGIN IF NOT EXISTS ({exists}) THEN {create}; END IF; "
                        "EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
                    )
                )
        candidate_app = owner.set(username=BENCH_APP_ROLE, password=None).render_as_string(hide_password=False)
        candidate_platform = owner.set(username=BENCH_PLATFORM_ROLE, password=None).render_as_string(
            hide_password=False
        )
        with psycopg.connect(_libpq(candidate_app)):
            pass
        app_url, platform_url, bound = candidate_app, candidate_platform, True
    except Exception as exc:  # no right to make roles, or they cannot log in: run as the owner
        log.warning("the bench runs as the tables' owner: %s", exc)
    try:
        yield app_url, platform_url, owner.render_as_string(hide_password=False), bound
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _copy_rows(
    conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]
) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True)
class Line:
    subscription_id: str
    msisdn: str
    imsi: str


def _insert_lines(owner_url: str, tenant_id: str, offer_id: str, count: int, since: dt.datetime) -> list[Line]:
    """`count` active lines of the tenant, with their customers, SIMs and numbers, inserted with COPY."""
    lines = [Line(new_id("sub"), f"+3399{n:08d}", f"00199{n:010d}") for n in range(count)]
    customers = [new_id("cus") for _ in range(count)]
    sims = [new_id("sim") for _ in range(count)]
    address = json.dumps({"line1": "1 rue", "postal_code": "75001", "city": "Paris", "country": "FR"})
    batch_id = new_id("sbt")
    with psycopg.connect(_libpq(owner_url)) as conn:
        _copy_rows(
            conn,
            "customers",
            ("id", "tenant_id", "name", "email", "address", "created_at"),
            ((customers[n], tenant_id, f"Line {n}", f"l{n}@bench.example", address, since) for n in range(count)),
        )
        _copy_rows(
            conn,
            "sims",
            (
                "id",
                "tenant_id",
                "batch_id",
                "kind",
                "iccid",
                "imsi",
                "profile_type",
                "ki_encrypted",
                "opc_encrypted",
                "status",
                "created_at",
                "updated_at",
            ),
            (
                (
                    sims[n],
                    tenant_id,
                    batch_id,
                    "esim",
                    f"8900199{n:013d}",
                    line.imsi,
                    "bench",
                    b"\0",
                    b"\0",
                    "in_use",
                    since,
                    since,
                )
                for n, line in enumerate(lines)
            ),
        )
        _copy_rows(
            conn,
            "subscriptions",
            (
                "id",
                "tenant_id",
                "customer_id",
                "offer_id",
                "sim_type",
                "status",
                "msisdn",
                "sim_id",
                "network_provisioned_at",
                "created_at",
                "activated_at",
            ),
            (
                (
                    line.subscription_id,
                    tenant_id,
                    customers[n],
                    offer_id,
                    "esim",
                    "active",
                    line.msisdn,
                    sims[n],
                    since,
                    since,
                    since,
                )
                for n, line in enumerate(lines)
            ),
        )
        _copy_rows(
            conn,
            "phone_numbers",
            ("id", "tenant_id", "msisdn", "status", "subscription_id", "created_at"),
            ((new_id("num"), tenant_id, line.msisdn, "assigned", line.subscription_id, since) for line in lines),
        )
        conn.execute("ANALYZE customers, sims, subscriptions, phone_numbers")
    return lines


# The usage file ---------------------------------------------------------------------------------------------


def _called_number(rng: random.Random, prefixes: list[str]) -> str:
    prefix = prefixes[rng.randrange(len(prefixes))] if prefixes else "33"
    return "+" + (prefix + "".join(rng.choices("0123456789", k=12)))[:11]


def _visited(rng: random.Random) -> str:
    if rng.random() >= ROAMING_SHARE:
        return ""
    networks = EU_NETWORKS if rng.random() < 0.5 else WORLD_NETWORKS
    return networks[rng.randrange(len(networks))]


def _within_one_period(rt: Any, tenant_id: str, now: dt.datetime) -> dt.datetime:
    """When the bench's records end: now, unless the tenant's billing period began less than a day ago, then at
    that beginning. The records of the day before fall in one period, whatever the day of the month: a line's
    buckets are made once, as on any other day, not once for each of two periods on the 1st."""
    with rt.db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        timezone = tenant.timezone
    began, _ = period_window(period_of(now, timezone), timezone)
    return began if now - began < dt.timedelta(days=1, minutes=1) else now


def generate_events(
    rng: random.Random, lines: list[Line], count: int, now: dt.datetime, prefixes: list[str]
) -> Iterator[dict[str, Any]]:
    """`count` usage events: the service mix, 5 % roaming, called numbers of the card's prefixes, over the last day."""
    services = [name for name, _ in MIX]
    weights = [share for _, share in MIX]
    for n in range(count):
        line = lines[rng.randrange(len(lines))]
        service = rng.choices(services, weights)[0]
        quantity = (
            rng.randint(1_000, 50_000_000) if service == "data" else rng.randint(1, 1200) if service == "voice" else 1
        )
        yield {
            "record_id": f"r{n:09d}",
            "msisdn": line.msisdn,
            "imsi": line.imsi,
            "service": service,
            "started_at": now - dt.timedelta(seconds=rng.randint(60, 86_400)),
            "quantity": quantity,
            "called_number": "" if service == "data" else _called_number(rng, prefixes),
            "visited_plmn": _visited(rng),
        }


def _cdr_cells(event: dict[str, Any]) -> list[str]:
    """The event as a line of the documented CDR columns (`CDR_COLUMNS`)."""
    service = event["service"]
    return [
        event["record_id"],
        event["imsi"],
        event["msisdn"],
        service,
        usage_files.format_timestamp(event["started_at"]),
        str(event["quantity"]) if service == "voice" else "",
        str(event["quantity"]) if service == "data" else "",
        event["called_number"],
        event["visited_plmn"],
        "",
    ]


def write_usage_file(path: Path, events: Iterator[dict[str, Any]]) -> int:
    """Stream the events to `path` in the CDR usage file format; returns the bytes written."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CDR_COLUMNS)
        for item in events:
            writer.writerow(_cdr_cells(item))
    return path.stat().st_size


# Rate-card pricing --------------------------------------------------------------------------------------


def rate_card_prefixes(rng: random.Random, count: int) -> list[str]:
    prefixes: set[str] = set()
    while len(prefixes) < count:
        prefixes.add(str(rng.randint(1, 9)) + "".join(rng.choices("0123456789", k=rng.randint(1, 7))))
    return sorted(prefixes)


def rate_card_lines(prefixes: list[str]) -> list[dict[str, Any]]:
    """A retail card: voice and SMS per prefix in 200 zones, a world price for the rest, data at one price."""
    raw: list[dict[str, Any]] = [
        {
            "prefix": p,
            "zone": f"Z{n % 200}",
            "service": service,
            "price": "0.05",
            "first_increment": first,
            "next_increment": first,
            "connect_fee": "0.01" if service == "voice" else "",
        }
        for n, p in enumerate(prefixes)
        for service, first in (("voice", 60), ("sms", 1))
    ]
    raw += [
        {
            "prefix": "*",
            "zone": "World",
            "service": "voice",
            "price": "0.50",
            "first_increment": 60,
            "next_increment": 1,
        },
        {"prefix": "*", "zone": "World", "service": "sms", "price": "0.20", "first_increment": 1, "next_increment": 1},
        {"prefix": "*", "zone": "Data", "service": "data", "price": "0.01", "first_increment": 1, "next_increment": 1},
    ]
    return raw


def _retail_card(rt: Any, figures: Figures, tenant_id: str, prefixes: list[str], since: dt.datetime) -> str:
    """The tenant's retail rate card with a published version of every prefix, attached to its offer."""
    started = time.perf_counter()
    with rt.db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        card = ratecard_service.create_rate_card(
            session, tenant, name="Bench retail", network_agreement_id=None, rounding_mode="half_up", precision=6
        )
        version = ratecard_service.create_version(
            session,
            tenant,
            card.id,
            effective_from=since.date(),
            effective_to=None,
            time_bands=[],
            lines=list[Mapping[str, Any]](rate_card_lines(prefixes)),
        )
        ratecard_service.publish_version(session, card.id, version.id)
        card_id = card.id
        # Offers name their retail card where the schema has the column: rating then prices by the card.
        attachable = session.scalar(
            text(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = 'offer_versions' AND column_name = 'rate_card_id'"
            )
        )
        if attachable:
            session.execute(text("UPDATE offer_versions SET rate_card_id = :card"), {"card": card_id})
    figures.params["rate_card_attached"] = bool(attachable)
    figures.phase("rate_card_setup", records=len(prefixes), seconds=time.perf_counter() - started, card=card_id)
    if not attachable:
        figures.notes.append("rate card: created and published; offers have no rate card column here to attach it to.")
    return card_id


def _measure_pricing(figures: Figures, rng: random.Random, prefixes: list[str], events: list[dict[str, Any]]) -> None:
    raw = rate_card_lines(prefixes)
    started = time.perf_counter()
    report = ratecards.check_lines(enumerate(raw, start=2), set())
    checked = time.perf_counter() - started
    if report.error_count:
        raise click.ClickException(f"the bench's rate card has errors: {report.errors[:3]}")
    started = time.perf_counter()
    version = ratecards.compile_version(report.lines, [], ratecards.zone_info("Europe/Paris"), version_id="rcv_bench")
    compiled = time.perf_counter() - started
    card = ratecards.CompiledCard(currency="EUR", rounding_mode="half_up", precision=6, versions=[version])
    total = Decimal(0)
    started = time.perf_counter()
    for item in events:
        priced = ratecards.price(
            card,
            service=item["service"],
            called=item["called_number"] or None,
            started_at=item["started_at"],
            quantity=item["quantity"],
        )
        total += priced.amount
    seconds = time.perf_counter() - started
    figures.phase(
        "pricing",
        records=len(events),
        seconds=seconds,
        rate_card_prefixes=len(prefixes),
        rate_card_lines=len(raw),
        check_lines_s=round(checked, 4),
        compile_s=round(compiled, 4),
        priced_amount=str(total),
    )


# The run -------------------------------------------------------------------------------------------------


def run_rating_bench(
    base: Settings,
    server_url: str,
    *,
    records: int,
    lines: int,
    batch: int = 5_000,
    orm_sample: int = 5_000,
    api_sample: int = 50_000,
    prefixes: int = 50_000,
    pricing_events: int = 200_000,
    workers: int = 2,
    segment_bytes: int | None = None,
    writer_sample: int = 100_000,
    seed: int = 7,
    profile_dir: Path | None = None,
) -> Figures:
    """Build the scratch database, run every measurement, and return the figures."""
    if not server_url.startswith("postgresql"):
        raise click.ClickException(
            "mvne bench rating needs PostgreSQL (its figures mean nothing on SQLite): set MVNE_DATABASE_URL to a "
            "server URL such as postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    rng = random.Random(seed)
    figures = Figures(
        params={
            "records": records,
            "lines": lines,
            "batch": batch,
            "orm_sample": min(orm_sample, records),
            "api_sample": api_sample,
            "rate_card_prefixes": prefixes,
            "pricing_events": pricing_events,
            "workers": workers,
            "segment_bytes": segment_bytes or usage_file_segments.SEGMENT_BYTES,
            "file_chunk": usage_file_segments.FILE_CHUNK,
            "writer_sample": writer_sample,
            "service_mix": dict(MIX),
            "roaming_share": ROAMING_SHARE,
            "cpus": os.cpu_count(),
            # Other work on the machine skews every figure: the load says how busy it was.
            "load_average_at_start": os.getloadavg()[0],
        }
    )
    previous_runtime = current_runtime_or_none()
    with (
        tempfile.TemporaryDirectory() as scratch,
        scratch_postgres(server_url) as (app_url, platform_url, owner, bound),
    ):
        settings = base.with_overrides(
            var_dir=Path(scratch),
            log_level="WARNING",
            database_url=app_url,
            platform_database_url=platform_url,
            migration_database_url=owner,
            storage_url=f"file://{scratch}/storage",
            broker_url="memory://",
            smdp_url="",
            network_url="",
            public_url="",
        )
        figures.params["rls_binds_application"] = bound
        if not bound:
            figures.notes.append("The application ran as the tables' owner: row-level security did not bind it.")
        upgrade(settings)
        rt = build_runtime(settings)
        if previous_runtime is not None:
            # Called inside a process that has its own runtime (its workers reach it): leave it theirs.
            set_runtime(previous_runtime)
        try:
            _run(rt, settings, figures, rng, owner, profile_dir=profile_dir)
        finally:
            rt.db.dispose()
            set_runtime(previous_runtime)
    return figures


def _run(
    rt: Any, settings: Settings, figures: Figures, rng: random.Random, owner: str, *, profile_dir: Path | None
) -> None:
    params = figures.params
    records = params["records"]
    app = create_app(rt=rt)
    client = app.test_client()
    header, offer_id, tenant_id = _tenant(rt, client)
    clock = dt.datetime.now(dt.UTC)
    now = _within_one_period(rt, tenant_id, clock)
    if now != clock:
        figures.notes.append(
            f"records: the day before {now.isoformat()}, the start of the tenant's billing period (less than a day "
            "ago), so that they fall in one period"
        )
    since = now - dt.timedelta(days=40)

    started = time.perf_counter()
    lines = _insert_lines(owner, tenant_id, offer_id, params["lines"], since)
    figures.phase("setup_lines", records=len(lines), seconds=time.perf_counter() - started)

    prefixes = rate_card_prefixes(rng, params["rate_card_prefixes"])
    _retail_card(rt, figures, tenant_id, prefixes, since)
    key = usage_files.new_usage_file_key("bench")
    path = Path(settings.var_dir) / "bench-usage.csv"
    started = time.perf_counter()
    size = write_usage_file(path, generate_events(rng, lines, records, now, prefixes))
    with path.open("rb") as source:
        rt.storage.put_file(key, source, content_type="text/csv")
    path.unlink()
    figures.phase("generate_file", records=records, seconds=time.perf_counter() - started, file_bytes=size)

    _measure_parse(rt, figures, key)
    storage_root = settings.storage_url.removeprefix("file://")
    _measure_file_path(
        rt,
        figures,
        tenant_id,
        key,
        (settings.database_url, settings.platform_database_url, storage_root),
        profile_dir=profile_dir,
    )
    _measure_ceiling(figures, owner, tenant_id)
    _measure_writers(rt, figures, owner, tenant_id, lines=lines, now=now)
    _measure_orm(rt, figures=figures, tenant_id=tenant_id, lines=lines, rng=rng, now=now)
    # A token of its own: the one from the start may have expired during a long file path.
    header = _fresh_token(rt, client, tenant_id)
    _measure_api(
        client, header=header, figures=figures, batches=_api_batches(figures, lines, rng, now, prefixes, tag="api")
    )
    _measure_api_http(
        settings, header=header, figures=figures, batches=_api_batches(figures, lines, rng, now, prefixes, tag="http")
    )
    events = list(generate_events(rng, lines, params["pricing_events"], now, prefixes))
    _measure_pricing(figures, rng, prefixes, events)
    current = figures.phases["current_path"]["records_per_s"]
    ceiling = figures.phases["ceiling_copy"]["records_per_s"]
    figures.phases["ceiling_copy"]["ratio_current_to_ceiling"] = round(current / ceiling, 5) if ceiling else None
    orm = figures.phases["orm_per_record"]["records_per_s"]
    figures.phases["orm_per_record"]["speed_up_current_over_orm"] = round(current / orm, 2) if orm else None
    figures.params["load_average_at_end"] = os.getloadavg()[0]
    path_peak = figures.phases["current_path"]["peak_rss_bytes"]
    figures.phases["peak_memory"] = {
        "current_path_peak_rss_bytes": path_peak,
        "process_peak_rss_bytes": _peak_bytes(),
        "worker_peak_rss_bytes": figures.phases["current_path"]["worker_peak_rss_bytes"],
        "target_bytes": TARGET_PEAK_BYTES,
        "meets_target": path_peak <= TARGET_PEAK_BYTES,
    }


def _fresh_token(rt: Any, client: Any, tenant_id: str) -> dict[str, str]:
    with rt.db.transaction(platform=True) as session:
        issued = issue_api_client(
            session, tenant_id=tenant_id, name="bench-api", scopes=list(TENANT_SCOPES), allowed=TENANT_SCOPES
        )
    return _token(client, issued.client_id, issued.client_secret)


def _measure_parse(rt: Any, figures: Figures, key: str) -> None:
    """The file read from storage and parsed, streamed (records are counted, not kept)."""
    started = time.perf_counter()
    good = bad = 0
    for _, item in usage_files.iter_usage_file(rt.storage.lines(key)):
        if isinstance(item, usage_files.UsageFileError):
            bad += 1
        else:
            good += 1
    if bad:
        raise click.ClickException(f"the generated file has {bad} bad lines")
    figures.phase("parse", records=good, seconds=time.perf_counter() - started)


# The worker processes of the file path: each builds its own engines, as a production worker does.
_WORKER: dict[str, Any] = {}


def _worker_start(app_url: str, platform_url: str, storage_root: str, ready: Any, profile_dir: str) -> None:
    load_actor_modules()
    db = Database(app_url, platform_url=platform_url)
    _WORKER.update(
        db=db,
        storage=FileStorage(Path(storage_root)),
        clock=_StatementClock(db.engine),
        ready=ready,
        profile_dir=profile_dir,
    )


def _worker_ready(_: int) -> int:
    # Every worker waits for the others: each of these start-up calls holds its own process.
    _WORKER["ready"].wait(timeout=120)
    return os.getpid()


def _worker_segment(payload: dict[str, Any]) -> dict[str, Any]:
    """One segment job, as the actor runs it; its counts, its split of time and the process's peak memory."""
    clock: _StatementClock = _WORKER["clock"]
    sql_before, statements_before = clock.seconds, clock.statements
    clock.by_kind = {}  # this segment's statements only: the bench sums them over segments
    profiler = cProfile.Profile() if _WORKER["profile_dir"] else None
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    report = ingest_usage_segment(_WORKER["db"], _WORKER["storage"], window=UsageWindow(), **payload)
    seconds = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(Path(_WORKER["profile_dir"]) / f"segment-{payload['segment']}.pstats")
    return {
        "pid": os.getpid(),
        "seconds": seconds,
        "report": report.as_json() if report else None,
        "sql_s": clock.seconds - sql_before,
        "statements": clock.statements - statements_before,
        "slowest": clock.slowest(),
        "peak_rss_bytes": _peak_bytes(),
    }


def _measure_file_path(
    rt: Any, figures: Figures, tenant_id: str, key: str, urls: tuple[str, str, str], *, profile_dir: Path | None
) -> None:
    """The file path as production runs it: found, cut into segments, segments run by worker processes."""
    workers = figures.params["workers"]
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers)
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_worker_start,
        initargs=(*urls, ready, str(profile_dir) if profile_dir else ""),
    ) as pool:
        pids = set(pool.map(_worker_ready, range(workers)))
        total_started = time.perf_counter()
        discover_usage_files(rt.db, rt.storage)
        with rt.db.transaction(platform=True) as session:
            file_id = session.scalar(select(UsageFile.id).where(UsageFile.key == key))
        assert file_id is not None
        started = time.perf_counter()
        ingest_usage_file(rt.db, rt.storage, file_id, segment_bytes=figures.params["segment_bytes"])
        cut_s = time.perf_counter() - started
        with rt.db.transaction(platform=True) as session:
            payloads = [
                {k: v for k, v in payload.items() if k != "tenant_id"}
                for payload in session.scalars(
                    select(OutboxMessage.payload)
                    .where(OutboxMessage.actor == "charging.ingest_usage_segment")
                    .order_by(OutboxMessage.created_at)
                )
                if payload["usage_file_id"] == file_id
            ]
        results = list(pool.map(_worker_segment, payloads))
        total_s = time.perf_counter() - total_started
    with rt.db.transaction(platform=True) as session:
        usage_file = session.get(UsageFile, file_id)
        assert usage_file is not None
        status, accepted = usage_file.status, usage_file.accepted
        duplicates, rejected, counted = usage_file.duplicates, usage_file.rejected, usage_file.records
    ran = [r for r in results if r["report"] is not None]
    read_s = sum(r["report"]["read_s"] for r in ran)
    rate_in_s = sum(r["report"]["rate_s"] for r in ran)
    sql_s = sum(r["sql_s"] for r in ran)
    slowest: dict[str, list[float]] = {}
    for result in ran:
        for kind in result["slowest"]:
            count, seconds = slowest.get(kind["statement"], [0, 0.0])
            slowest[kind["statement"]] = [count + kind["count"], seconds + kind["seconds"]]
    figures.phase(
        "current_path",
        records=accepted,
        seconds=total_s,
        target=TARGET_RECORDS_PER_S,
        file_status=status,
        records_in_file=counted,
        duplicates=duplicates,
        rejected=rejected,
        workers=workers,
        worker_processes=len(pids),
        segments=len(payloads),
        partitioned_by_line=any("partition" in payload for payload in payloads),
        segments_run_by_workers=len(ran),
        processes_that_ran_segments=len({r["pid"] for r in ran}),
        cut_s=round(cut_s, 4),
        parse_s=round(read_s, 4),
        rate_s=round(max(rate_in_s - sql_s, 0.0), 4),
        write_s=round(sql_s, 4),
        worker_busy_s=round(sum(r["seconds"] for r in results), 4),
        statements=sum(r["statements"] for r in ran),
        slowest_statements=[
            {"statement": name, "count": int(count), "seconds": round(seconds, 4)}
            for name, (count, seconds) in sorted(slowest.items(), key=lambda item: item[1][1], reverse=True)[:6]
        ],
        worker_peak_rss_bytes=max((r["peak_rss_bytes"] for r in results), default=0),
        workers_peak_rss_sum_bytes=sum(
            max(r["peak_rss_bytes"] for r in results if r["pid"] == pid) for pid in {r["pid"] for r in results}
        ),
    )
    figures.notes.append(
        "current_path: wall time from finding the file to its completion by its last segment, segments run by "
        "worker processes. parse, rate and write are seconds summed over the workers (so they add up to more than "
        "the wall time when workers overlap): parse = reading and parsing segments; write = time inside the "
        "driver's execute calls and commits (line lookups, balance locks, duplicate checks and row writes); rate "
        "= the rest (Python rating, rows built)."
    )
    with rt.db.transaction(tenant_id=tenant_id) as session:
        stored = session.scalar(text("SELECT count(*) FROM usage_records"))
    figures.phases["current_path"]["rows_in_usage_records"] = int(stored or 0)


def _writer_rows(tenant_id: str, lines: list[Line], count: int, now: dt.datetime, tag: str) -> list[tuple[Any, ...]]:
    """Rated rows as the rating path builds them, in `USAGE_COLUMNS` order."""
    period = now.strftime("%Y-%m")
    price = Decimal("0.010000")
    rows = []
    for n in range(count):
        line = lines[n % len(lines)]
        rows.append(
            (
                new_id("usg"),
                tenant_id,
                f"{tag}-{n:09d}",
                line.subscription_id,
                line.msisdn,
                "data",
                now,
                1_000_000 + n,
                period,
                0,
                1,
                price,
                f"bench:{tag}",
                now,
                None,
                0,
                price,
                price,
            )
        )
    return rows


def _measure_writers(
    rt: Any, figures: Figures, owner: str, tenant_id: str, *, lines: list[Line], now: dt.datetime
) -> None:
    """`write_usage_rows` each way, batches of the batch size committed, into the table the file path filled."""
    count, batch = figures.params["writer_sample"], figures.params["batch"]
    for method, platform in WRITE_METHODS:
        rows = _writer_rows(tenant_id, lines, count, now, f"write-{method}")
        written = 0
        started = time.perf_counter()
        for offset in range(0, len(rows), batch):
            scope: dict[str, Any] = {"platform": True} if platform else {"tenant_id": tenant_id}
            with rt.db.transaction(**scope) as session:
                written += len(write_usage_rows(session, rows[offset : offset + batch], USAGE_COLUMNS, method=method))
        seconds = time.perf_counter() - started
        # The same rows again: every one is a duplicate, none written.
        with rt.db.transaction(**scope) as session:
            again = len(write_usage_rows(session, rows[:batch], USAGE_COLUMNS, method=method))
        figures.phase(f"write_{method}", records=written, seconds=seconds, rewritten=again, platform_session=platform)
        with psycopg.connect(_libpq(owner)) as conn:
            conn.execute("DELETE FROM usage_records WHERE source = %s", (f"bench:write-{method}",))
    figures.notes.append(
        "write_*: write_usage_rows of rated rows in batches, each committed, into usage_records as the file path "
        "left it: copy = COPY straight in (a platform session, bypassing row-level security); staging = COPY into "
        "a temporary table then INSERT ... SELECT ... ON CONFLICT DO NOTHING (a tenant session, the way the "
        "rating path takes); insert = multi-row INSERT ... ON CONFLICT DO NOTHING. rewritten = rows written "
        "when a batch is sent again (0: exactly once)."
    )


def _measure_ceiling(figures: Figures, owner: str, tenant_id: str) -> None:
    """COPY the rows the current path wrote back into the emptied table, as the owner, committed."""
    columns = ", ".join(USAGE_ROW_COLUMNS)  # every column the rating path writes
    with tempfile.TemporaryFile() as dump, psycopg.connect(_libpq(owner)) as conn:
        forced = conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'usage_records'"
        ).fetchone()
        with conn.cursor() as cur, cur.copy(f"COPY (SELECT {columns} FROM usage_records) TO STDOUT") as copy:  # noqa: S608
            for block in copy:
                dump.write(block)
        rows = int(conn.execute("SELECT count(*) FROM usage_records").fetchone()[0])  # type: ignore[index]
        conn.execute("TRUNCATE usage_records, usage_adjustments")
        conn.commit()
        dump.seek(0)
        started = time.perf_counter()
        conn.execute("SELECT set_config('mvne.tenant_id', %s, true)", (tenant_id,))
        with conn.cursor() as cur, cur.copy(f"COPY usage_records ({columns}) FROM STDIN") as copy:
            while block := dump.read(1 << 20):
                copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - started
        copied = int(conn.execute("SELECT count(*) FROM usage_records").fetchone()[0])  # type: ignore[index]
        conn.commit()
    figures.phase(
        "ceiling_copy",
        records=rows,
        seconds=seconds,
        rows_after_copy=copied,
        row_level_security={"enabled": bool(forced and forced[0]), "forced": bool(forced and forced[1])},
    )
    figures.notes.append(
        "ceiling_copy: the rows the current path wrote, dumped with COPY TO, the table emptied, then timed: COPY "
        "FROM of those rows (same columns, same indexes and constraints) and the commit, as the tables' owner."
    )


def _measure_orm(
    rt: Any, *, figures: Figures, tenant_id: str, lines: list[Line], rng: random.Random, now: dt.datetime
) -> None:
    """Per record: the line looked up, rated at the offer's overage price, `session.add` and a flush."""
    sample = figures.params["orm_sample"]
    events = list(generate_events(rng, lines, sample, now, []))
    started = time.perf_counter()
    with rt.db.transaction(tenant_id=tenant_id) as session:
        tenant = session.get(Tenant, tenant_id)
        assert tenant is not None
        offer = session.scalars(select(Offer)).first()
        assert offer is not None
        prices = {
            Service.DATA: offer.overage_data_per_mb,
            Service.VOICE: offer.overage_voice_per_minute,
            Service.SMS: offer.overage_sms_per_message,
        }
        for item in events:
            sub = session.scalars(select(Subscription).where(Subscription.msisdn == item["msisdn"])).one()
            service = Service(item["service"])
            rated = rate_usage(service, item["quantity"], 0, prices[service])
            session.add(
                UsageRecord(
                    id=new_id("usg"),
                    record_id=f"orm-{item['record_id']}",
                    subscription_id=sub.id,
                    msisdn=item["msisdn"],
                    service=service.value,
                    started_at=item["started_at"],
                    quantity=item["quantity"],
                    period=period_of(item["started_at"], tenant.timezone),
                    allowance_used=rated.allowance_used,
                    overage_quantity=rated.overage_quantity,
                    amount=rated.amount,
                    source="bench:orm",
                )
            )
            session.flush()
    figures.phase("orm_per_record", records=len(events), seconds=time.perf_counter() - started)


def _api_batches(
    figures: Figures, lines: list[Line], rng: random.Random, now: dt.datetime, prefixes: list[str], *, tag: str
) -> list[list[dict[str, Any]]]:
    """`api_sample` records as batch API bodies of `batch` records (record ids marked with `tag`)."""
    sample, batch = figures.params["api_sample"], figures.params["batch"]
    quantity_field = {"data": "volume", "voice": "duration", "sms": "count"}
    records = [
        {
            "record_id": f"{tag}-{item['record_id']}",
            "msisdn": item["msisdn"],
            "service": item["service"],
            "started_at": item["started_at"].isoformat(),
            quantity_field[item["service"]]: item["quantity"],
        }
        for item in generate_events(rng, lines, sample, now, prefixes)
    ]
    return [records[at : at + batch] for at in range(0, len(records), batch)]


def _measure_api(client: Any, *, header: dict[str, str], figures: Figures, batches: list[list[dict[str, Any]]]) -> None:
    """POST /v1/usage-records in batches through the app's test client (one process, one request at a time)."""
    accepted = 0
    started = time.perf_counter()
    for payload in batches:
        response = client.post("/v1/usage-records", headers=header, json={"records": payload})
        if response.status_code != 200:
            raise click.ClickException(f"POST /v1/usage-records answered {response.status_code}: {response.text[:300]}")
        accepted += response.json["accepted"]
    figures.phase(
        "batch_api",
        records=accepted,
        seconds=time.perf_counter() - started,
        target=TARGET_API_RECORDS_PER_S,
        requests=len(batches),
    )


def _measure_api_http(
    settings: Settings, *, header: dict[str, str], figures: Figures, batches: list[list[dict[str, Any]]]
) -> None:
    """POST /v1/usage-records over HTTP to gunicorn, as a deployment serves it: as many server processes as the
    bench has workers, two clients for each sending batches side by side (bodies encoded before the clock runs)."""
    workers = figures.params["workers"]
    clients = 2 * workers
    bodies = [json.dumps({"records": payload}).encode() for payload in batches]
    headers = {**header, "Content-Type": "application/json"}
    env = {
        **os.environ,
        "MVNE_DATABASE_URL": settings.database_url,
        "MVNE_PLATFORM_DATABASE_URL": settings.platform_database_url,
        "MVNE_MIGRATION_DATABASE_URL": settings.migration_database_url,
        "MVNE_STORAGE_URL": settings.storage_url,
        "MVNE_BROKER_URL": "memory://",
        "MVNE_VAR_DIR": str(settings.var_dir),
        # The bench's tokens are signed with its key, by its issuer: the server checks them with the same.
        "MVNE_PUBLIC_URL": settings.public_url,
        "MVNE_SECRET_KEY": settings.secret_key,
        "MVNE_JWT_PRIVATE_KEY": settings.jwt_private_key,
        "MVNE_SIM_KEY": settings.sim_key,
        "MVNE_LOG_LEVEL": "WARNING",
        "MVNE_RATE_LIMIT_DEFAULT": "100000/minute",
    }
    server = gunicorn_server(
        env, Path(settings.var_dir) / "bench-gunicorn.log", workers=workers, threads=1, request_timeout_s=300
    )
    with server as base:

        def post(body: bytes) -> int:
            with httpx.Client(timeout=300) as http:
                response = http.post(f"{base}/v1/usage-records", content=body, headers=headers)
            if response.status_code != 200:
                raise click.ClickException(
                    f"POST /v1/usage-records answered {response.status_code}: {response.text[:300]}"
                )
            return int(response.json()["accepted"])

        with ThreadPoolExecutor(max_workers=clients) as pool:
            # A process compiles the rate card at its first rating, once for its life: that is done before the
            # clock runs, by one small batch a client sent side by side (so every process gets one).
            warm = [
                json.dumps({"records": [{**payload[0], "record_id": f"warm-{n}"}]}).encode()
                for n, payload in enumerate(batches[:1] * clients)
            ]
            list(pool.map(post, warm))
            started = time.perf_counter()
            accepted = sum(pool.map(post, bodies))
            seconds = time.perf_counter() - started
    figures.phase(
        "batch_api_http",
        records=accepted,
        seconds=seconds,
        target=TARGET_API_RECORDS_PER_S,
        requests=len(bodies),
        server_processes=workers,
        clients=clients,
    )
    figures.notes.append(
        f"batch_api_http: gunicorn with the production configuration, {workers} processes of one thread, "
        f"{clients} clients posting batches of {figures.params['batch']:,} side by side over loopback, on the "
        "same machine as the database; batch_api: the same in one process through the test client, one at a time."
    )


# Printing --------------------------------------------------------------------------------------------------

LABELS = {
    "setup_lines": "lines inserted (COPY)",
    "rate_card_setup": "rate card (prefixes) stored",
    "generate_file": "usage file written",
    "parse": "parse (file from storage)",
    "current_path": "file path, file to rows",
    "ceiling_copy": "ceiling: COPY same rows",
    "write_copy": "write_usage_rows: COPY",
    "write_staging": "write_usage_rows: staging",
    "write_insert": "write_usage_rows: INSERT",
    "orm_per_record": "ORM, one flush per record",
    "batch_api": "batch API (POST)",
    "batch_api_http": "batch API over HTTP",
    "pricing": "rate-card pricing (pure)",
}


def render(figures: Figures) -> str:
    p = figures.params
    out = [
        f"mvne bench rating: {p['records']:,} records, {p['lines']:,} lines, batches of {p['batch']:,}, "
        f"rate card of {p['rate_card_prefixes']:,} prefixes (attached: {p.get('rate_card_attached')}); "
        f"{p['workers']} worker processes, segments of {p['segment_bytes'] / 2**20:g} MiB; "
        "row-level security binds the app: "
        f"{p.get('rls_binds_application')}; {p['cpus']} CPUs, load average {p['load_average_at_start']:.2f} at the "
        f"start, {p.get('load_average_at_end', 0):.2f} at the end",
        f"  {'phase':<30} {'records':>11} {'seconds':>9} {'records/s':>12} {'target/s':>10}  {'peak RSS':>9}",
    ]
    for name, label in LABELS.items():
        f = figures.phases.get(name)
        if f is None:
            continue
        target = f"{f['target_records_per_s']:,}" if f.get("target_records_per_s") else "-"
        mark = "" if f.get("meets_target") is None else ("  ok" if f["meets_target"] else "  BELOW")
        out.append(
            f"  {label:<30} {f['records']:>11,} {f['seconds']:>9.2f} {f['records_per_s']:>12,.0f} {target:>10}  "
            f"{f['peak_rss_bytes'] / 2**20:>7.0f}MB{mark}"
        )
    c = figures.phases.get("current_path")
    if c:
        out.append(
            f"  file path: {c['segments']} segments{' (partitioned by line)' if c['partitioned_by_line'] else ''} "
            f"on {c['worker_processes']} worker processes, file "
            f"{c['file_status']}; split (worker-seconds): cut {c['cut_s']:.2f} s, parse {c['parse_s']:.2f} s, "
            f"rate {c['rate_s']:.2f} s, write {c['write_s']:.2f} s in {c['statements']:,} statements; "
            f"rows in usage_records: {c['rows_in_usage_records']:,}"
        )
        records = c["records"] or 1
        if c["rate_s"] + c["write_s"] > 0:  # a file of one segment is rated by its cut job, unsplit
            out.append(
                f"  per record (worker time): parse {c['parse_s'] / records * 1e6:.1f} us, "
                f"rate {c['rate_s'] / records * 1e6:.1f} us, write {c['write_s'] / records * 1e6:.1f} us; "
                f"100,000 records/s on {figures.params['cpus']} CPUs leaves "
                f"{figures.params['cpus'] / 100_000 * 1e6:.0f} us of CPU a record, the database's included"
            )
        spent = ", ".join(f"{s['statement']} {s['seconds']:.2f} s ({s['count']:,})" for s in c["slowest_statements"])
        out.append(f"  SQL time by statement: {spent}")
    ceiling = figures.phases.get("ceiling_copy")
    if ceiling:
        out.append(
            f"  ratio file path/ceiling: {ceiling['ratio_current_to_ceiling']:.4f} "
            f"({ceiling['ratio_current_to_ceiling'] * 100:.2f} %); "
            f"RLS on usage_records: {ceiling['row_level_security']}"
        )
    orm = figures.phases.get("orm_per_record")
    if orm:
        out.append(f"  speed-up of the file path over the per-record ORM path: x{orm['speed_up_current_over_orm']}")
    pricing = figures.phases.get("pricing")
    if pricing:
        out.append(
            f"  rate card: {pricing['rate_card_lines']:,} lines checked in {pricing['check_lines_s']:.2f} s, "
            f"compiled in {pricing['compile_s']:.3f} s"
        )
    writes = [figures.phases[f"write_{m}"] for m, _ in WRITE_METHODS if f"write_{m}" in figures.phases]
    if writes:
        out.append(
            "  write_usage_rows sent again (exactly once): "
            + ", ".join(f"{m} {w['rewritten']} rows" for (m, _), w in zip(WRITE_METHODS, writes, strict=False))
        )
    peak = figures.phases.get("peak_memory")
    if peak:
        verdict = "ok" if peak["meets_target"] else "ABOVE"
        out.append(
            f"  peak memory, file to rows: {peak['current_path_peak_rss_bytes'] / 2**20:,.0f} MB in the main process, "
            f"{peak['worker_peak_rss_bytes'] / 2**20:,.0f} MB in the largest worker (target 1024 MB) "
            f"{verdict}; whole run: {peak['process_peak_rss_bytes'] / 2**20:,.0f} MB"
        )
    out.extend(f"  note: {note}" for note in figures.notes)
    return "\n".join(out)


@click.command("rating")
@click.option("--records", default=200_000, show_default=True, help="Usage records in the file.")
@click.option("--lines", default=20_000, show_default=True, help="Active lines of the tenant.")
@click.option("--batch", default=5_000, show_default=True, help="Records per API call and per write batch.")
@click.option("--orm-sample", default=5_000, show_default=True, help="Records through the per-record ORM path.")
@click.option("--api-sample", default=50_000, show_default=True, help="Records through the batch API.")
@click.option("--prefixes", default=50_000, show_default=True, help="Prefixes of the rate card priced against.")
@click.option("--pricing-events", default=200_000, show_default=True, help="Events priced on the rate card.")
@click.option("--workers", default=2, show_default=True, help="Worker processes running the file's segments.")
@click.option("--segment-mib", default=4, show_default=True, help="MiB of the usage file per segment.")
@click.option("--writer-sample", default=100_000, show_default=True, help="Rows written each way of writing.")
@click.option(
    "--profile",
    is_flag=True,
    help="Profile the workers' segments (cProfile); prints the functions that took the most time.",
)
def rating(**options: Any) -> None:
    """Measure usage rating from a file in storage to rows in PostgreSQL, against COPY; prints the figures."""
    base = load_settings()
    server_url = base.migration_database_url or base.database_url
    profile_dir = None
    if options["profile"]:
        profile_dir = Path(base.var_dir) / "bench" / f"profile-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}"
        profile_dir.mkdir(parents=True)
    figures = run_rating_bench(
        base,
        server_url,
        records=options["records"],
        lines=options["lines"],
        batch=options["batch"],
        orm_sample=options["orm_sample"],
        api_sample=options["api_sample"],
        prefixes=options["prefixes"],
        pricing_events=options["pricing_events"],
        workers=options["workers"],
        segment_bytes=options["segment_mib"] << 20,
        writer_sample=options["writer_sample"],
        profile_dir=profile_dir,
    )
    click.echo(render(figures))
    if profile_dir is not None:
        click.echo(profile_summary(profile_dir))
    out = write_figures(figures, base.var_dir)
    click.echo(f"figures written to {out}")


def profile_summary(profile_dir: Path, top: int = 30) -> str:
    """The workers' profiles merged: the functions with the most time of their own, then the most time in all."""
    files = sorted(profile_dir.glob("segment-*.pstats"))
    if not files:
        return f"no profile written in {profile_dir}"
    out = io.StringIO()
    stats = pstats.Stats(str(files[0]), stream=out)
    for more in files[1:]:
        stats.add(str(more))
    stats.strip_dirs()
    out.write(f"profile of {len(files)} segments (merged into {profile_dir}/all.pstats)\n")
    stats.dump_stats(str(profile_dir / "all.pstats"))
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def write_figures(figures: Figures, var_dir: Path) -> Path:
    folder = Path(var_dir) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"rating-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(figures.as_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    return out
