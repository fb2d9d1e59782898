"""usage records keep their line in their usage file

A segment of a file run again after its worker died finds the records the dead run committed: the
same file and the same line is that very record, rated once already (counted as accepted, not as a
duplicate); another line with the same record id is a duplicate.

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 21:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("position")
