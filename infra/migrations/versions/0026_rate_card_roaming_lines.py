"""rate card lines for roaming: a line may apply where the subscriber roams (eu, world)

A record made while roaming is priced on the card's lines for its zone first, then on its home lines.
Home lines keep an empty `roaming`, so one line per (service, prefix, band, roaming) stays unique.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-01 02:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None

OLD_UNIQUE = "uq_rate_card_lines_version_id_service_prefix_time_band"
NEW_UNIQUE = "uq_rate_card_lines_version_id_service_prefix_time_band_roaming"


def upgrade() -> None:
    with op.batch_alter_table("rate_card_lines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("roaming", sa.String(length=10), server_default="", nullable=False))
        batch_op.drop_constraint(OLD_UNIQUE, type_="unique")
        batch_op.create_unique_constraint(NEW_UNIQUE, ["version_id", "service", "prefix", "time_band", "roaming"])


def downgrade() -> None:
    with op.batch_alter_table("rate_card_lines", schema=None) as batch_op:
        batch_op.drop_constraint(NEW_UNIQUE, type_="unique")
        batch_op.execute(sa.text("DELETE FROM rate_card_lines WHERE roaming <> ''"))
        batch_op.create_unique_constraint(OLD_UNIQUE, ["version_id", "service", "prefix", "time_band"])
        batch_op.drop_column("roaming")
