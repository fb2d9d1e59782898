"""`mvne bench rating` on tiny numbers: every figure is there, positive, and the rows add up (no timing asserted)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import pytest

from mvne.charging.usage import period_of, period_window
from mvne.infra.runtime import Runtime
from mvne.infra.settings import Settings
from mvne.platform.bench_rating import _within_one_period, render, run_rating_bench, write_figures
from mvne.tenants.models import Tenant
from tests.support.api import TenantHandle

RECORDS = 2_000
LINES = 200


def test_the_rating_bench_measures_every_path_against_the_copy_ceiling(
    postgres_settings: Settings, tmp_path: Path
) -> None:
    server_url = postgres_settings.migration_database_url or postgres_settings.database_url
    figures = run_rating_bench(
        postgres_settings,
        server_url,
        records=RECORDS,
        lines=LINES,
        batch=500,
        orm_sample=100,
        api_sample=1_000,
        prefixes=2_000,
        pricing_events=1_000,
        workers=2,
        segment_bytes=32 * 1024,  # the file of about 200 KB then spans several segments
        writer_sample=1_000,
    )
    phases = figures.phases
    writers = ("write_copy", "write_staging", "write_insert")
    apis = ("batch_api", "batch_api_http")
    for name in ("parse", "current_path", "ceiling_copy", "orm_per_record", *apis, "pricing", *writers):
        assert phases[name]["records"] > 0, name
        assert phases[name]["seconds"] > 0, name
        assert phases[name]["records_per_s"] > 0, name
        assert phases[name]["peak_rss_bytes"] > 0, name

    current = phases["current_path"]
    # Every record of the file was rated once and committed: the rows in the table are the records.
    assert phases["parse"]["records"] == RECORDS
    assert current["records"] == RECORDS
    assert current["records_in_file"] == RECORDS
    assert current["file_status"] == "processed"
    assert current["rejected"] == 0
    assert current["duplicates"] == 0
    assert current["rows_in_usage_records"] == RECORDS
    # The segments were jobs run by two worker processes, not by the bench's own process.
    assert current["worker_processes"] == 2
    assert current["segments"] > 2
    assert current["segments_run_by_workers"] == current["segments"]
    assert current["parse_s"] > 0
    assert current["rate_s"] > 0
    assert current["write_s"] > 0
    assert current["worker_peak_rss_bytes"] > 0
    # Each way of writing wrote every row once, and a batch sent again wrote nothing.
    for name in writers:
        assert (phases[name]["records"], phases[name]["rewritten"]) == (1_000, 0), name

    ceiling = phases["ceiling_copy"]
    assert ceiling["records"] == RECORDS
    assert ceiling["rows_after_copy"] == RECORDS
    assert ceiling["row_level_security"] == {"enabled": True, "forced": False}
    assert 0 < ceiling["ratio_current_to_ceiling"] < 10

    assert phases["orm_per_record"]["records"] == 100
    assert phases["orm_per_record"]["speed_up_current_over_orm"] > 0
    assert phases["batch_api"]["records"] == 1_000
    assert phases["batch_api"]["requests"] == 2
    # Over HTTP: gunicorn's processes, as many as the workers, each batch answered 200 with every record accepted.
    assert (phases["batch_api_http"]["records"], phases["batch_api_http"]["requests"]) == (1_000, 2)
    assert (phases["batch_api_http"]["server_processes"], phases["batch_api_http"]["clients"]) == (2, 4)
    assert phases["pricing"]["rate_card_prefixes"] == 2_000
    assert phases["pricing"]["compile_s"] > 0
    assert figures.params["rls_binds_application"] is True
    assert phases["rate_card_setup"]["records"] == 2_000
    assert 0 < phases["peak_memory"]["current_path_peak_rss_bytes"] <= phases["peak_memory"]["process_peak_rss_bytes"]

    table = render(figures)
    assert "ratio file path/ceiling" in table
    assert "2 worker processes" in table
    assert "100,000" in table
    assert "per record (worker time): parse" in table  # the split in µs a record, beside the 20 µs the target leaves
    written = write_figures(figures, tmp_path)
    assert written.parent == tmp_path / "bench"
    assert json.loads(written.read_text())["phases"]["current_path"]["records"] == RECORDS


def test_the_rating_bench_refuses_sqlite(postgres_settings: Settings) -> None:
    with pytest.raises(click.ClickException, match="needs PostgreSQL"):
        run_rating_bench(postgres_settings, "sqlite:///bench.db", records=10, lines=1)


def test_the_benchs_records_fall_in_one_billing_period_even_on_its_first_day(
    runtime: Runtime, tenant: TenantHandle
) -> None:
    with runtime.db.transaction(tenant_id=tenant.id) as session:
        owner = session.get(Tenant, tenant.id)
        assert owner is not None
        timezone = owner.timezone
    began, _ = period_window("2026-12", timezone)

    early = began + dt.timedelta(hours=10)  # the records' day would start in November
    assert _within_one_period(runtime, tenant.id, early) == began
    assert period_of(began - dt.timedelta(days=1), timezone) == period_of(began - dt.timedelta(seconds=60), timezone)
    later = began + dt.timedelta(days=3)  # the day before is December's already
    assert _within_one_period(runtime, tenant.id, later) == later
