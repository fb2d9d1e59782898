"""Charging jobs: usage files, billing runs, invoice PDFs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mvne.charging import billing, purchases, rerating, usage, usage_files

# Imported for its hooks: records rated in this process are counted by the lines' online charging accounts.
from mvne.charging.online import service as _online_service  # noqa: F401
from mvne.infra.jobs import QUEUE_BILLING, QUEUE_CHARGING, job
from mvne.infra.runtime import Runtime, current_runtime, periodic


def _usage_window(rt: Runtime) -> usage.UsageWindow:
    return usage.UsageWindow.of(rt.settings.usage_clock_skew_s, rt.settings.usage_retention_days)


def _usage_file_dead_lettered(session: Session, payload: dict[str, Any], error: str) -> None:
    """A job of a usage file failed for good: the file shows it failed, and why."""
    usage_files.fail_usage_file(session, payload["usage_file_id"], error)


def _usage_file_replayed(session: Session, payload: dict[str, Any]) -> None:
    """The failed job was replayed: the file proceeds again."""
    usage_files.resume_usage_file(session, payload["usage_file_id"])


@job(
    "charging.ingest_usage_file",
    queue=QUEUE_CHARGING,
    on_dead_letter=_usage_file_dead_lettered,
    on_replay=_usage_file_replayed,
)
def ingest_usage_file(usage_file_id: str) -> None:
    """Cut a host-network usage file into segments, each rated by its own job."""
    rt = current_runtime()
    usage_files.ingest_usage_file(
        rt.db, rt.storage, usage_file_id, window=_usage_window(rt), segment_bytes=rt.settings.usage_segment_bytes
    )


@job(
    "charging.ingest_usage_segment",
    queue=QUEUE_CHARGING,
    on_dead_letter=_usage_file_dead_lettered,
    on_replay=_usage_file_replayed,
)
def ingest_usage_segment(
    usage_file_id: str,
    *,
    segment: int,
    header: str | None,
    start: int = 0,
    end: int | None = None,
    first_line: int = 1,
    partition: str | None = None,
) -> None:
    """Rate the records of one segment of a usage file (a partition by line, or a byte range); the last segment
    completes the file."""
    rt = current_runtime()
    usage_files.ingest_usage_segment(
        rt.db,
        rt.storage,
        usage_file_id,
        segment=segment,
        header=header,
        start=start,
        end=end,
        first_line=first_line,
        partition=partition,
        window=_usage_window(rt),
    )


def _billing_run_dead_lettered(session: Session, payload: dict[str, Any], error: str) -> None:
    """A job of a billing run failed for good: the run shows it failed, and why."""
    billing.fail_billing_run(
        session, tenant_id=payload["tenant_id"], billing_run_id=payload["billing_run_id"], reason=error
    )


def _billing_run_replayed(session: Session, payload: dict[str, Any]) -> None:
    """The failed job was replayed: the run proceeds again."""
    billing.resume_billing_run(session, tenant_id=payload["tenant_id"], billing_run_id=payload["billing_run_id"])


@job(
    "charging.execute_billing_run",
    queue=QUEUE_BILLING,
    on_dead_letter=_billing_run_dead_lettered,
    on_replay=_billing_run_replayed,
)
def execute_billing_run(tenant_id: str, billing_run_id: str) -> None:
    """Start a billing run: fix its customers and queue a job per chunk of them."""
    billing.execute_billing_run(current_runtime().db, tenant_id=tenant_id, billing_run_id=billing_run_id)


@job(
    "charging.invoice_billing_chunk",
    queue=QUEUE_BILLING,
    on_dead_letter=_billing_run_dead_lettered,
    on_replay=_billing_run_replayed,
)
def invoice_billing_chunk(tenant_id: str, billing_run_id: str, chunk: int, customer_ids: list[str]) -> None:
    """Invoice one chunk of a billing run's customers; the last chunk completes the run."""
    billing.invoice_billing_chunk(
        current_runtime().db,
        tenant_id=tenant_id,
        billing_run_id=billing_run_id,
        chunk=chunk,
        customer_ids=customer_ids,
    )


def _rerating_run_dead_lettered(session: Session, payload: dict[str, Any], error: str) -> None:
    """A re-rating run's job failed for good: the run shows it failed, and why."""
    rerating.fail_rerating_run(
        session, tenant_id=payload["tenant_id"], rerating_run_id=payload["rerating_run_id"], reason=error
    )


def _rerating_run_replayed(session: Session, payload: dict[str, Any]) -> None:
    rerating.resume_rerating_run(session, tenant_id=payload["tenant_id"], rerating_run_id=payload["rerating_run_id"])


@job(
    "charging.execute_rerating_run",
    queue=QUEUE_CHARGING,
    on_dead_letter=_rerating_run_dead_lettered,
    on_replay=_rerating_run_replayed,
)
def execute_rerating_run(tenant_id: str, rerating_run_id: str) -> None:
    """Re-rate a period chunk by chunk of lines; resumes after the last chunk done."""
    rerating.execute_rerating_run(current_runtime().db, tenant_id=tenant_id, rerating_run_id=rerating_run_id)


@job("charging.render_invoice_pdf", queue=QUEUE_BILLING)
def render_invoice_pdf(tenant_id: str, invoice_id: str) -> None:
    """Render an issued invoice to PDF and store it."""
    rt = current_runtime()
    billing.render_invoice(rt.db, rt.storage, tenant_id=tenant_id, invoice_id=invoice_id)


@periodic("charging.discover_usage_files", every_s=2)
def discover_usage_files(rt: Runtime) -> None:
    usage_files.discover_usage_files(rt.db, rt.storage)


@periodic("charging.sweep_usage_partitions", every_s=3600)
def sweep_usage_partitions(rt: Runtime) -> None:
    usage_files.sweep_partitions(rt.db, rt.storage)


@job("charging.renew_purchase", queue=QUEUE_BILLING)
def renew_purchase(tenant_id: str, purchase_id: str) -> None:
    """Make the next term of a bundle whose term has ended (nothing when it was renewed or stopped meanwhile)."""
    with current_runtime().db.transaction(tenant_id=tenant_id) as session:
        purchases.renew_purchase(session, purchase_id)


@periodic("charging.queue_due_renewals", every_s=30)
def queue_due_renewals(rt: Runtime) -> None:
    purchases.queue_due_renewals(rt.db)


@periodic("charging.write_online_usage", every_s=1)
def write_online_usage(rt: Runtime) -> None:
    """Settled online usage into PostgreSQL as usage records (the scheduler is one process: one ledger)."""
    from mvne.charging.online.ledger import drain
    from mvne.charging.online.service import online_charging

    if "online_charging" not in rt.parts and rt.settings.charging_url.startswith("memory://"):
        return  # an in-process store nobody has charged through holds nothing
    engine = online_charging(rt)
    drain(rt.db, engine.store, window=_usage_window(rt))


@periodic("charging.settle_stale_sessions", every_s=5)
def settle_stale_sessions(rt: Runtime) -> None:
    """Settle the charging sessions no request renewed within their validity and grace."""
    from mvne.charging.online.service import online_charging

    if "online_charging" not in rt.parts and rt.settings.charging_url.startswith("memory://"):
        return
    online_charging(rt).sweep()
