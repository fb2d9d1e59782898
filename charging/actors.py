"""Charging jobs: usage files, billing runs, invoice PDFs."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from mvne.charging import billing, rerating, usage
from mvne.infra.jobs import QUEUE_BILLING, QUEUE_CHARGING, job
from mvne.infra.runtime import Runtime, current_runtime, periodic


@job("charging.ingest_usage_file", queue=QUEUE_CHARGING)
def ingest_usage_file(usage_file_id: str) -> None:
    """Rate the records of one host-network usage file."""
    rt = current_runtime()
    window = usage.UsageWindow.of(rt.settings.usage_clock_skew_s, rt.settings.usage_retention_days)
    usage.ingest_usage_file(rt.db, rt.storage, usage_file_id, window=window)


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
    usage.discover_usage_files(rt.db, rt.storage)
