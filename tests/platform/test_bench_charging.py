"""`mvne bench charging` runs end to end on PostgreSQL (briefly): every phase answers, and none fails."""

from __future__ import annotations

import shutil

from mvne.infra.settings import Settings, load_settings
from mvne.platform.bench_charging import render, run_charging_bench
from tests.conftest import postgres_server_url, skip_or_fail


def test_the_charging_bench_measures_every_phase_without_an_error(postgres_settings: Settings) -> None:
    if shutil.which("redis-server") is None:
        skip_or_fail("needs redis-server")
    server = postgres_server_url()
    assert server is not None
    figures = run_charging_bench(
        load_settings({"MVNE_LOG_LEVEL": "WARNING"}),
        server,
        lines=20,
        sessions=8,
        seconds=0.5,
        processes=1,
        threads=2,
        http_workers=1,
        http_threads=2,
        gy_clients=1,
    )

    phases = figures.phases
    for name in ("engine", "engine_ceiling", "nchf_http", "empty_http", "gy"):
        assert phases[name]["count"] > 0, name
    assert phases["nchf_http"]["errors"] == phases["gy"]["errors"] == 0
    # Every session the phases settled was written by the ledger.
    assert sum(phases[f"ledger_after_{n}"]["records"] for n in ("engine", "http", "gy")) > 0
    assert "engine / ceiling" in render(figures)
