"""Charging jobs: usage files, billing runs, invoice PDFs."""

from __future__ import annotations

from mvne.charging import billing, usage
from mvne.infra.jobs import QUEUE_BILLING, QUEUE_CHARGING, job
from mvne.infra.runtime import Runtime, current_runtime, periodic


@job("charging.ingest_usage_file", queue=QUEUE_CHARGING)
def ingest_usage_file(usage_file_id: str) -> None:
    """Rate the records of one host-network usage file."""
    rt = current_runtime()
    usage.ingest_usage_file(rt.db, rt.storage, usage_file_id)


@job("charging.execute_billing_run", queue=QUEUE_BILLING, time_limit_ms=6 * 3600 * 1000)
def execute_billing_run(tenant_id: str, billing_run_id: str) -> None:
    """Invoice every billable customer of a tenant for the run's period."""
    billing.execute_billing_run(current_runtime().db, tenant_id=tenant_id, billing_run_id=billing_run_id)


@job("charging.render_invoice_pdf", queue=QUEUE_BILLING)
def render_invoice_pdf(tenant_id: str, invoice_id: str) -> None:
    """Render an issued invoice to PDF and store it."""
    rt = current_runtime()
    billing.render_invoice(rt.db, rt.storage, tenant_id=tenant_id, invoice_id=invoice_id)


@periodic("charging.discover_usage_files", every_s=2)
def discover_usage_files(rt: Runtime) -> None:
    usage.discover_usage_files(rt.db, rt.storage)
