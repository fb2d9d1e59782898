"""usage records and balance buckets lose their index on the tenant alone

Their lookups go by (tenant, record id) and by line. While a large file goes in, the planner's
statistics are stale, and the index on the tenant alone led it to read every row of the tenant and
filter each against the batch's thousand ids (half a second a statement).

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 16:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_tenant_id")
    with op.batch_alter_table("balance_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_buckets_tenant_id")


def downgrade() -> None:
    with op.batch_alter_table("balance_buckets", schema=None) as batch_op:
        batch_op.create_index("ix_balance_buckets_tenant_id", ["tenant_id"], unique=False)
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.create_index("ix_usage_records_tenant_id", ["tenant_id"], unique=False)
