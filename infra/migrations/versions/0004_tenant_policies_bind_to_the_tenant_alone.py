"""Tenant policies bind to the tenant alone: platform work uses a BYPASSRLS role, not a setting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 20:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TENANT_TABLES = (
    "allowance_balances",
    "billing_runs",
    "counters",
    "customers",
    "events",
    "invoice_lines",
    "invoices",
    "offers",
    "phone_numbers",
    "sims",
    "subscriptions",
    "usage_records",
    "webhook_endpoints",
    "webhook_deliveries",
)
STRICT = "tenant_id = current_setting('mvne.tenant_id', true)"
WITH_PLATFORM = f"{STRICT} OR current_setting('mvne.platform', true) = 'on'"


def _replace_policies(scope: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TENANT_TABLES:
        op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
        op.execute(f"CREATE POLICY tenant_isolation ON {table} USING ({scope}) WITH CHECK ({scope})")


def upgrade() -> None:
    _replace_policies(STRICT)


def downgrade() -> None:
    _replace_policies(WITH_PLATFORM)
