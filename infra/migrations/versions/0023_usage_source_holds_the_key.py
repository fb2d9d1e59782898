"""usage records and rejections keep their whole source

A source is "api", or "file:" and the usage file's storage key, which may be 500 characters. Cut at
300, two keys alike in their first 295 characters shared a source, and a segment run again could take
a record of the other file for one of its own.

Revision ID: 0023
Revises: 0022
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

TABLES = ("usage_records", "usage_rejections")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("source", existing_type=sa.String(300), type_=sa.String(512), existing_nullable=False)


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("source", existing_type=sa.String(512), type_=sa.String(300), existing_nullable=False)
