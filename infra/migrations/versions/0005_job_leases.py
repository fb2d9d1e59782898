"""Jobs are owed until they finish: outbox leases and send counts; billing runs in chunks, failing visibly.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mvne.infra.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("lease_until", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("claimed_until", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_outbox_messages_lease", ["finished_at", "lease_until"], unique=False)
    # Rows sent before leases existed were sent once; unfinished ones are owed now (actors are idempotent).
    op.execute("UPDATE outbox_messages SET send_count = 1 WHERE sent_at IS NOT NULL")
    op.execute("UPDATE outbox_messages SET lease_until = sent_at WHERE sent_at IS NOT NULL AND finished_at IS NULL")

    # billing_runs is a tenant table: its row-level security policy stays as it is (columns only).
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.alter_column(
            "status", existing_type=sa.String(length=20), type_=sa.String(length=30), existing_nullable=False
        )
        batch_op.add_column(sa.Column("failure_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("chunks_total", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("chunk_results", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("billing_runs", schema=None) as batch_op:
        batch_op.drop_column("chunk_results")
        batch_op.drop_column("chunks_total")
        batch_op.drop_column("failure_reason")
        batch_op.alter_column(
            "status", existing_type=sa.String(length=30), type_=sa.String(length=20), existing_nullable=False
        )

    with op.batch_alter_table("outbox_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_messages_lease")
        batch_op.drop_column("claimed_until")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("send_count")
