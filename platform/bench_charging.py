"""`mvne bench charging`: online charging measured three ways on a scratch PostgreSQL and a Redis of its own.

- the engine without HTTP: processes of threads, each running sessions (open, update, release) on its share
  of the lines, for a fixed time; operations per second and latencies;
- Nchf over HTTP to gunicorn (the production configuration; processes x threads = the connections it
  serves at once), driven by client processes holding keep-alive connections that carry the concurrent
  sessions; beside it, `GET /healthz` of the same app through the same clients: the ceiling of this HTTP
  stack on this machine, in the same run;
- Diameter Gy: `mvne diameter` in a process of its own, and client processes of python-diameter over TCP.

The Redis is started here with `appendonly yes` and `appendfsync always`, as production must run it: every
answer waits for its change to be on disk. Settled usage is written to PostgreSQL by the ledger after each
phase, timed on its own. Everything shares this machine's CPUs with the database and the load generators,
so only the ratios hold from run to run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import psycopg
import redis

from mvne.charging.online.credit import OnlineCharging
from mvne.charging.online.ledger import drain
from mvne.charging.online.messages import ChargingRequest, RequestKind, Service, UnitRequest
from mvne.charging.online.store import ChargingStore
from mvne.infra.db import Database
from mvne.infra.ids import new_id
from mvne.infra.migrate import upgrade
from mvne.infra.runtime import current_runtime_or_none, set_runtime
from mvne.infra.settings import Settings, load_settings
from mvne.platform.app import create_app
from mvne.platform.auth import OPERATOR_SCOPES
from mvne.platform.bench import _tenant, _token
from mvne.platform.bench_rating import Line, _copy_rows, _insert_lines, _libpq, scratch_postgres
from mvne.platform.gunicorn_process import free_port, gunicorn_server
from mvne.platform.wiring import build_runtime
from mvne.tenants.service import issue_api_client

TARGET_ENGINE_OPS = 10_000
TARGET_HTTP_RPS = 2_500
TARGET_HTTP_P99_MS = 20.0
TARGET_HTTP_RATIO = 0.70
TARGET_GY_ANSWERS = 2_000
MB = 1_000_000
NAMESPACE = "bench:chg:"
NCHF = "/nchf-convergedcharging/v3/chargingdata"


@dataclass
class Figures:
    params: dict[str, Any]
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _percentile(samples: list[float], share: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] * 1000


def _merged(results: list[tuple[int, float, list[float], int]]) -> dict[str, Any]:
    """Processes' results as one figure: requests per second over the longest, latencies, errors."""
    count, seconds = sum(r[0] for r in results), max(r[1] for r in results)
    return {**_timing(count, seconds, [s for r in results for s in r[2]]), "errors": sum(r[3] for r in results)}


def _timing(count: int, seconds: float, latencies: list[float]) -> dict[str, Any]:
    return {
        "count": count,
        "seconds": round(seconds, 3),
        "per_s": round(count / seconds, 1) if seconds else 0.0,
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
    }


@contextlib.contextmanager
def durable_redis(folder: Path) -> Iterator[str]:
    """A redis-server that writes every change to its append-only file before it answers."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise click.ClickException("mvne bench charging starts a Redis of its own: install redis-server")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 (a local server with our own arguments)
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--maxmemory-policy",
            "noeviction",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.BusyLoadingError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise click.ClickException("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def _prepay(owner_url: str, tenant_id: str, lines: list[Line], since: dt.datetime) -> None:
    """Every other line prepaid, with a balance no run spends."""
    with psycopg.connect(_libpq(owner_url)) as conn:
        _copy_rows(
            conn,
            "money_balances",
            ("id", "tenant_id", "subscription_id", "currency", "amount", "created_at", "updated_at"),
            (
                (new_id("mbl"), tenant_id, line.subscription_id, "EUR", "1000000.000000", since, since)
                for line in lines[::2]
            ),
        )


# The engine, without HTTP ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What one load thread did: requests, those answered badly, and how long each took (seconds)."""

    count: int = 0
    errors: int = 0
    samples: list[float] = field(default_factory=list)

    def took(self, started: float, *, ok: bool = True) -> None:
        self.samples.append(time.perf_counter() - started)
        self.count += 1
        self.errors += 0 if ok else 1


Result = tuple[int, float, list[float], int]


def run_threads(threads: int, seconds: float, work: Callable[[int, Tally, Callable[[], bool]], None]) -> Result:
    """`work(index, tally, running)` on `threads` threads started together, `running()` true for `seconds`: the
    requests, the time they took in all, their latencies, the errors."""
    tallies = [Tally() for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    deadline = [0.0]

    def run(index: int) -> None:
        start.wait()
        work(index, tallies[index], lambda: time.perf_counter() < deadline[0])

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for worker in workers:
        worker.join()
    samples = [sample for tally in tallies for sample in tally.samples]
    return sum(t.count for t in tallies), time.perf_counter() - began, samples, sum(t.errors for t in tallies)


def _session_cycle(engine: OnlineCharging, msisdn: str, tally: Tally) -> None:
    """One session: open, report and ask again, release."""
    session_id = f"bench;{secrets.token_hex(8)}"
    steps = (
        (RequestKind.INITIAL, UnitRequest(1, requested=MB), msisdn),
        (RequestKind.UPDATE, UnitRequest(1, used=MB, requested=MB), ""),
        (RequestKind.TERMINATION, UnitRequest(1, used=MB // 2), ""),
    )
    for sequence, (kind, unit, subscriber) in enumerate(steps):
        started = time.perf_counter()
        engine.handle(ChargingRequest(session_id, kind, sequence, Service.DATA, subscriber, units=(unit,)))
        tally.took(started)


def _engine_process(args: tuple[str, str, str, list[str], int, float]) -> Result:
    app_url, platform_url, redis_url, msisdns, threads, seconds = args
    db = Database(app_url, platform_url=platform_url)
    store = ChargingStore(redis.Redis.from_url(redis_url, decode_responses=True), namespace=NAMESPACE)
    engine = OnlineCharging(db, store)

    def warm(index: int) -> None:
        tally = Tally()
        for msisdn in msisdns[index::threads]:
            _session_cycle(engine, msisdn, tally)

    # Each line's account and terms read from PostgreSQL once, before the clock runs, by the threads that will run
    # (one thread alone can take longer than the terms are kept, and the clock would then time their reading).
    warmers = [threading.Thread(target=warm, args=(i,)) for i in range(threads)]
    for warmer in warmers:
        warmer.start()
    for warmer in warmers:
        warmer.join()

    def work(index: int, tally: Tally, running: Callable[[], bool]) -> None:
        mine = msisdns[index::threads] or msisdns
        n = 0
        while running():
            _session_cycle(engine, mine[n % len(mine)], tally)
            n += 1

    result = run_threads(threads, seconds, work)
    db.dispose()
    return result


# The store's own ceiling: per operation the same two round trips to the same Redis (a read of a line's hash, a
# script writing a counter and a stream entry, each write on disk before the answer), with no rating in between.
_CEILING_READ = "return redis.call('HGETALL', KEYS[1])"
_CEILING_WRITE = """
redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 10000, '*', 'e', ARGV[1])
return 1
"""


def _ceiling_process(args: tuple[str, list[str], int, float]) -> Result:
    redis_url, msisdns, threads, seconds = args
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    read, write = client.register_script(_CEILING_READ), client.register_script(_CEILING_WRITE)
    payload = json.dumps({"c": {"1": {"s": "2026-12-01T10:00:00+00:00", "u": MB, "g": MB, "p": {}, "m": 10000}}})

    def work(index: int, tally: Tally, running: Callable[[], bool]) -> None:
        mine = msisdns[index::threads] or msisdns
        n = 0
        while running():
            key = f"bench:ceiling:{mine[n % len(mine)]}"
            n += 1
            started = time.perf_counter()
            read(keys=[key])
            write(keys=[key, "bench:ceiling:stream"], args=[payload])
            tally.took(started)

    return run_threads(threads, seconds, work)


def _measure_engine(
    figures: Figures, urls: tuple[str, str, str], msisdns: list[str], *, processes: int, threads: int, seconds: float
) -> None:
    slices = [msisdns[i::processes] for i in range(processes)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes) as pool:
        engine = _merged(pool.map(_engine_process, [(*urls, part, threads, seconds) for part in slices]))
    with context.Pool(processes) as pool:
        ceiling = _merged(pool.map(_ceiling_process, [(urls[2], part, threads, seconds) for part in slices]))
    figures.phases["engine_ceiling"] = ceiling
    figures.phases["engine"] = {
        **engine,
        "processes": processes,
        "threads": threads,
        "target_per_s": TARGET_ENGINE_OPS,
        "ratio_to_store_ceiling": round(engine["per_s"] / ceiling["per_s"], 3) if ceiling["per_s"] else 0.0,
    }


def _measure_ledger(figures: Figures, rt: Any, store: ChargingStore, name: str) -> None:
    backlog = store.backlog()
    started = time.perf_counter()
    written = 0
    while store.backlog():
        written += drain(rt.db, store, max_batches=1000, reclaim_after_ms=0)
    seconds = time.perf_counter() - started
    figures.phases[name] = {
        "records": written,
        "backlog_before": backlog,
        "seconds": round(seconds, 3),
        "per_s": round(written / seconds, 1) if seconds else 0.0,
    }


# Nchf over HTTP -------------------------------------------------------------------------------------------


_ASK = '{"ratingGroup":1,"requestedUnit":{"totalVolume":1000000}}'
_REPORT_AND_ASK = (
    '{"ratingGroup":1,"requestedUnit":{"totalVolume":1000000},"usedUnitContainer":[{"totalVolume":1000000}]}'
)
_REPORT = '{"ratingGroup":1,"usedUnitContainer":[{"totalVolume":500000}]}'


def _nchf_body(sequence: int, units: str, subscriber: str = "") -> str:
    """A ChargingDataRequest, written as text: the load generator must not cost what the server does."""
    now = dt.datetime.now(dt.UTC).isoformat()
    who = f'"subscriberIdentifier":"msisdn-{subscriber}",' if subscriber else ""
    return (
        f'{{{who}"nfConsumerIdentification":{{"nodeFunctionality":"SMF","nFName":"bench"}},'
        f'"invocationTimeStamp":"{now}","invocationSequenceNumber":{sequence},"multipleUnitUsage":[{units}]}}'
    )


def _nchf_step(conn: http.client.HTTPConnection, state: list[Any], headers: dict[str, str]) -> bool:
    """The session's next request (create, update or release) on the connection; whether it was answered well."""
    reference, step, msisdn = state
    if step == 0:
        conn.request("POST", NCHF, _nchf_body(0, _ASK, msisdn), headers)
    elif step == 1:
        conn.request("POST", f"{NCHF}/{reference}/update", _nchf_body(1, _REPORT_AND_ASK), headers)
    else:
        conn.request("POST", f"{NCHF}/{reference}/release", _nchf_body(2, _REPORT), headers)
    response = conn.getresponse()
    response.read()
    ok = response.status == (201, 200, 204)[step]
    if step == 0:
        state[0] = (response.getheader("Location") or "").rsplit("/", 1)[-1]
    state[1] = (step + 1) % 3 if ok else 0
    return ok


def _http_process(args: tuple[str, str, list[str], int, int, float, str]) -> Result:
    """Threads over keep-alive connections, each carrying its share of the sessions; `mode` nchf, healthz or warm
    (each line once, a whole session each, untimed: the server reads terms and accounts before the clock)."""
    base, token, msisdns, connections, sessions, seconds, mode = args
    host = urlsplit(base)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    per_connection = max(1, sessions // connections)

    def work(index: int, tally: Tally, running: Callable[[], bool]) -> None:
        conn = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=60)
        mine = msisdns[index::connections] or msisdns
        if mode == "warm":
            for msisdn in mine:
                state: list[Any] = [None, 0, msisdn.lstrip("+")]
                for _ in range(3):
                    _nchf_step(conn, state, headers)
            conn.close()
            return
        # Each connection carries several sessions at once, each at its own step (create, update, release).
        live: list[list[Any]] = [[None, 0, mine[(index + k) % len(mine)].lstrip("+")] for k in range(per_connection)]
        turn = 0
        while running():
            started = time.perf_counter()
            if mode == "healthz":
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            else:
                ok = _nchf_step(conn, live[turn % len(live)], headers)
                turn += 1
            tally.took(started, ok=ok)
        conn.close()

    return run_threads(connections, seconds, work)


def _http_load(
    base: str,
    token: str,
    msisdns: list[str],
    *,
    clients: int,
    connections: int,
    sessions: int,
    seconds: float,
    mode: str,
) -> tuple[dict[str, Any], int]:
    context = multiprocessing.get_context("spawn")
    share = connections // clients
    with context.Pool(clients) as pool:
        results = pool.map(
            _http_process,
            [(base, token, msisdns[i::clients], share, sessions // clients, seconds, mode) for i in range(clients)],
        )
    merged = _merged(results)
    return merged, merged.pop("errors")


def _measure_http(
    figures: Figures, settings: Settings, token: str, msisdns: list[str], *, workers: int, threads: int, seconds: float
) -> None:
    env = {
        **os.environ,
        "MVNE_DATABASE_URL": settings.database_url,
        "MVNE_PLATFORM_DATABASE_URL": settings.platform_database_url,
        "MVNE_MIGRATION_DATABASE_URL": settings.migration_database_url,
        "MVNE_STORAGE_URL": settings.storage_url,
        "MVNE_BROKER_URL": "memory://",
        "MVNE_CHARGING_URL": settings.charging_url,
        "MVNE_BROKER_NAMESPACE": "bench",
        "MVNE_VAR_DIR": str(settings.var_dir),
        "MVNE_PUBLIC_URL": settings.public_url,
        "MVNE_SECRET_KEY": settings.secret_key,
        "MVNE_JWT_PRIVATE_KEY": settings.jwt_private_key,
        "MVNE_SIM_KEY": settings.sim_key,
        "MVNE_LOG_LEVEL": "WARNING",
        "MVNE_RATE_LIMIT_DEFAULT": "10000000/minute",
    }
    connections = workers * threads
    sessions = figures.params["sessions"]
    clients = 2
    log = Path(settings.var_dir) / "bench-charging-gunicorn.log"
    with gunicorn_server(env, log, workers=workers, threads=threads, request_timeout_s=60) as base:
        # The server processes read the lines' terms and accounts before the clock runs: every line twice, each
        # time on connections of their own (a connection stays with one process), so most lines reach both.
        for _ in range(2):
            _http_load(
                base,
                token,
                msisdns,
                clients=clients,
                connections=connections,
                sessions=sessions,
                seconds=0,
                mode="warm",
            )
        nchf, errors = _http_load(
            base,
            token,
            msisdns,
            clients=clients,
            connections=connections,
            sessions=sessions,
            seconds=seconds,
            mode="nchf",
        )
        empty, _ = _http_load(
            base,
            token,
            msisdns,
            clients=clients,
            connections=connections,
            sessions=sessions,
            seconds=seconds,
            mode="healthz",
        )
    ratio = nchf["per_s"] / empty["per_s"] if empty["per_s"] else 0.0
    figures.phases["nchf_http"] = {
        **nchf,
        "errors": errors,
        "sessions": sessions,
        "connections": connections,
        "gunicorn": f"{workers} processes x {threads} threads",
        "target_per_s": TARGET_HTTP_RPS,
        "target_p99_ms": TARGET_HTTP_P99_MS,
        "ratio_to_empty": round(ratio, 3),
        "target_ratio": TARGET_HTTP_RATIO,
    }
    figures.phases["empty_http"] = {**empty, "endpoint": "GET /healthz"}


# Diameter Gy ----------------------------------------------------------------------------------------------


def _gy_process(args: tuple[int, str, list[str], int, float]) -> Result:
    """Threads sharing one python-diameter client, each running sessions (CCR-I, CCR-U, CCR-T) on its lines; with no
    time given, each line once (warming)."""
    from mvne.charging.online.gy_client import GyClient, UnitReport

    port, origin, msisdns, threads, seconds = args
    client = GyClient(
        "127.0.0.1",
        port,
        origin_host=origin,
        origin_realm="bench.example",
        destination_realm="mvne.localhost",
        peer_host="ocs.mvne.localhost",
    )
    client.start()

    def work(index: int, tally: Tally, running: Callable[[], bool]) -> None:
        mine = msisdns[index::threads] or msisdns
        n = 0
        while (n < len(mine)) if seconds == 0 else running():
            session = client.new_session_id()
            msisdn = mine[n % len(mine)].lstrip("+")
            n += 1
            steps = (
                (RequestKind.INITIAL, [UnitReport(1, requested=MB)], msisdn),
                (RequestKind.UPDATE, [UnitReport(1, used=MB, requested=MB)], None),
                (RequestKind.TERMINATION, [UnitReport(1, used=MB // 2, ask=False, final=True)], None),
            )
            for number, (kind, units, subscriber) in enumerate(steps):
                started = time.perf_counter()
                answer = client.credit_control(session, kind, number, subscriber=subscriber, units=units, timeout=30)
                tally.took(started, ok=answer.result_code == 2001)

    result = run_threads(threads, seconds, work)
    client.stop()
    return result


def _measure_gy(figures: Figures, settings: Settings, msisdns: list[str], *, clients: int, seconds: float) -> None:
    port = free_port()
    origins = [f"pgw{i}.bench.example" for i in range(clients)]
    env = {
        **os.environ,
        "MVNE_DATABASE_URL": settings.database_url,
        "MVNE_PLATFORM_DATABASE_URL": settings.platform_database_url,
        "MVNE_CHARGING_URL": settings.charging_url,
        "MVNE_BROKER_NAMESPACE": "bench",
        "MVNE_VAR_DIR": str(settings.var_dir),
        "MVNE_SECRET_KEY": settings.secret_key,
        "MVNE_JWT_PRIVATE_KEY": settings.jwt_private_key,
        "MVNE_SIM_KEY": settings.sim_key,
        "MVNE_LOG_LEVEL": "WARNING",
    }
    peers = [arg for origin in origins for arg in ("--peer", origin)]
    log = Path(settings.var_dir) / "bench-diameter.log"
    with log.open("wb") as out:
        server = subprocess.Popen(  # noqa: S603 (our own command)
            [str(Path(sys.executable).with_name("mvne")), "diameter", "--port", str(port), *peers],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while "Gy on" not in log.read_text(errors="replace"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException(f"mvne diameter did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
        context = multiprocessing.get_context("spawn")
        with context.Pool(clients) as pool:
            jobs = [(port, origins[i], msisdns[i::clients], 32, seconds) for i in range(clients)]
            pool.map(_gy_process, [(p, o, m, t, 0.0) for p, o, m, t, _ in jobs])  # each line once, untimed
            results = pool.map(_gy_process, jobs)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    figures.phases["gy"] = {
        **_merged(results),
        "client_processes": clients,
        "target_per_s": TARGET_GY_ANSWERS,
    }


# The run --------------------------------------------------------------------------------------------------


def run_charging_bench(
    base: Settings,
    server_url: str,
    *,
    lines: int,
    sessions: int,
    seconds: float,
    processes: int,
    threads: int,
    http_workers: int,
    http_threads: int,
    gy_clients: int,
) -> Figures:
    """Build the scratch database and the Redis, run the three measurements, and return the figures."""
    if not server_url.startswith("postgresql"):
        raise click.ClickException(
            "mvne bench charging needs PostgreSQL: set MVNE_DATABASE_URL to a server URL such as "
            "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    figures = Figures(
        params={
            "lines": lines,
            "sessions": sessions,
            "seconds": seconds,
            "engine_processes": processes,
            "engine_threads": threads,
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
            "session": "open (1 MB asked), update (1 MB used, 1 MB asked), release (0.5 MB used); half the lines "
            "prepaid",
        }
    )
    previous = current_runtime_or_none()
    with (
        tempfile.TemporaryDirectory() as scratch,
        durable_redis(Path(scratch)) as redis_url,
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
            broker_namespace="bench",
            charging_url=redis_url,
            smdp_url="",
            network_url="",
            public_url="",
        )
        figures.params["rls_binds_application"] = bound
        upgrade(settings)
        rt = build_runtime(settings)
        if previous is not None:
            set_runtime(previous)
        try:
            client = create_app(rt=rt).test_client()
            _, offer_id, tenant_id = _tenant(rt, client)
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
            inserted = _insert_lines(owner, tenant_id, offer_id, lines, since)
            _prepay(owner, tenant_id, inserted, since)
            msisdns = [line.msisdn for line in inserted]
            store = ChargingStore(redis.Redis.from_url(redis_url, decode_responses=True), namespace=NAMESPACE)
            _measure_engine(
                figures,
                (app_url, platform_url, redis_url),
                msisdns,
                processes=processes,
                threads=threads,
                seconds=seconds,
            )
            _measure_ledger(figures, rt, store, "ledger_after_engine")
            with rt.db.transaction(platform=True) as session:
                network = issue_api_client(
                    session, tenant_id=None, name="bench core", scopes=["charging:network"], allowed=OPERATOR_SCOPES
                )
            token = _token(client, network.client_id, network.client_secret)["Authorization"].split()[1]
            settings = settings.with_overrides(public_url=rt.settings.public_url)
            _measure_http(
                figures, rt.settings, token, msisdns, workers=http_workers, threads=http_threads, seconds=seconds
            )
            _measure_ledger(
                figures, rt, ChargingStore(redis.Redis.from_url(redis_url), namespace="bench:chg:"), "ledger_after_http"
            )
            _measure_gy(figures, rt.settings, msisdns, clients=gy_clients, seconds=seconds)
            _measure_ledger(
                figures, rt, ChargingStore(redis.Redis.from_url(redis_url), namespace="bench:chg:"), "ledger_after_gy"
            )
        finally:
            rt.db.dispose()
            set_runtime(previous)
    figures.params["load_average_at_end"] = os.getloadavg()[0]
    return figures


def render(figures: Figures) -> str:
    p, ph = figures.params, figures.phases
    out = [
        f"online charging: {p['lines']:,} lines, {p['cpus']} CPUs, load {p['load_average_at_start']:.1f} at start, "
        f"{p['load_average_at_end']:.1f} at end; a session: {p['session']}",
        "",
        f"{'':34}{'per s':>10}{'p50 ms':>9}{'p99 ms':>9}{'target':>10}",
    ]

    def row(label: str, phase: dict[str, Any], target: str) -> None:
        out.append(f"{label:34}{phase['per_s']:>10,.0f}{phase['p50_ms']:>9.2f}{phase['p99_ms']:>9.2f}{target:>10}")

    row(
        f"engine ({ph['engine']['processes']} proc x {ph['engine']['threads']} thr)",
        ph["engine"],
        f"{TARGET_ENGINE_OPS:,}",
    )
    row("ceiling: the store's round trips", ph["engine_ceiling"], "")
    out.append(f"{'engine / ceiling':34}{ph['engine']['ratio_to_store_ceiling']:>10.1%}")
    row(f"Nchf over HTTP ({ph['nchf_http']['sessions']} sessions)", ph["nchf_http"], f"{TARGET_HTTP_RPS:,}")
    row("ceiling: GET /healthz, same clients", ph["empty_http"], "")
    out.append(
        f"{'Nchf / ceiling':34}{ph['nchf_http']['ratio_to_empty']:>10.1%}{'':18}{TARGET_HTTP_RATIO:>10.0%}"
        f"   (gunicorn {ph['nchf_http']['gunicorn']}, errors {ph['nchf_http']['errors']})"
    )
    row(f"Diameter Gy ({ph['gy']['client_processes']} client processes)", ph["gy"], f"{TARGET_GY_ANSWERS:,}")
    out.append(f"{'':34}(errors {ph['gy']['errors']}; p99 target over HTTP {TARGET_HTTP_P99_MS:g} ms)")
    for name in ("ledger_after_engine", "ledger_after_http", "ledger_after_gy"):
        phase = ph[name]
        out.append(
            f"{'ledger: ' + name.removeprefix('ledger_'):34}{phase['per_s']:>10,.0f}  records/s "
            f"({phase['records']:,} settled sessions' records into PostgreSQL)"
        )
    out.extend(["", *figures.notes])
    return "\n".join(out)


def write_figures(figures: Figures, var_dir: Path) -> Path:
    folder = Path(var_dir) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"charging-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps({"params": figures.params, "phases": figures.phases, "notes": figures.notes}, indent=2))
    return path


@click.command("charging")
@click.option("--lines", default=2000, show_default=True, help="Active lines charged.")
@click.option("--sessions", default=100, show_default=True, help="Concurrent sessions over HTTP.")
@click.option("--seconds", default=10.0, show_default=True, help="How long each measurement runs.")
@click.option("--processes", default=2, show_default=True, help="Engine processes (without HTTP).")
@click.option("--threads", default=4, show_default=True, help="Threads of each engine process.")
@click.option("--http-workers", default=2, show_default=True, help="gunicorn processes.")
@click.option("--http-threads", default=8, show_default=True, help="Threads of each gunicorn process.")
@click.option("--gy-clients", default=2, show_default=True, help="Diameter client processes.")
def charging(**options: Any) -> None:
    """Measure online charging: the engine, Nchf over HTTP against an empty endpoint, and Diameter Gy."""
    base = load_settings()
    figures = run_charging_bench(base, base.migration_database_url or base.database_url, **options)
    click.echo(render(figures))
    click.echo(f"figures written to {write_figures(figures, base.var_dir)}")
