"""tenants remember their standing: suspension, offboarding and the export's location

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suspended_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("suspension_reason", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("offboarded_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("export_location", sa.String(length=300), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("export_location")
        batch_op.drop_column("offboarded_at")
        batch_op.drop_column("suspension_reason")
        batch_op.drop_column("suspended_at")
