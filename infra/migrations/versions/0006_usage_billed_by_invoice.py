"""usage records remember the invoice that billed them; invoice lines name a late usage's period

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invoice_id", sa.String(length=40), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_usage_records_invoice_id_invoices"), "invoices", ["invoice_id"], ["id"]
        )
        batch_op.create_index("ix_usage_records_unbilled", ["subscription_id", "invoice_id"], unique=False)
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("service_period", sa.String(length=7), nullable=True))
    # Overage rated before this revision was billed by the invoice of its own period, if there is one.
    op.execute(
        """
        UPDATE usage_records SET invoice_id = (
            SELECT invoices.id FROM invoices
            JOIN subscriptions ON subscriptions.customer_id = invoices.customer_id
            WHERE subscriptions.id = usage_records.subscription_id AND invoices.period = usage_records.period
        )
        WHERE overage_quantity > 0
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("invoice_lines", schema=None) as batch_op:
        batch_op.drop_column("service_period")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_unbilled")
        batch_op.drop_constraint(batch_op.f("fk_usage_records_invoice_id_invoices"), type_="foreignkey")
        batch_op.drop_column("invoice_id")
