"""usage files read in segments by several workers: each segment's counts kept on the file

Revision ID: 0020
Revises: 0017
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # usage_files is a platform table: no row-level security to add.
    with op.batch_alter_table("usage_files", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segments_total", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("segment_results", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_files", schema=None) as batch_op:
        batch_op.drop_column("segment_results")
        batch_op.drop_column("segments_total")
