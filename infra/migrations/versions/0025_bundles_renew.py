"""a bundle renews at the end of each term until it is cancelled

`renews` marks the purchase that will renew at its end (the latest term of a bundle); the renewal is a
new purchase naming the one it renews (`renewed_from_id`, unique: a term renews once, however many
workers race). `renewal_stopped` says why a bundle stopped renewing (cancelled, or its line ended).
Bundles bought before this migration do not start renewing.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 02:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("offer_purchases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("renews", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("renewed_from_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("renewal_stopped", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("renewal_stopped_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_offer_purchases_renewed_from_id"), ["renewed_from_id"])
        batch_op.create_index(
            "ix_offer_purchases_renewing",
            ["valid_to"],
            postgresql_where=sa.text("renews"),
            sqlite_where=sa.text("renews"),
        )


def downgrade() -> None:
    with op.batch_alter_table("offer_purchases", schema=None) as batch_op:
        batch_op.drop_index("ix_offer_purchases_renewing")
        batch_op.drop_constraint(batch_op.f("uq_offer_purchases_renewed_from_id"), type_="unique")
        batch_op.drop_column("renewal_stopped_at")
        batch_op.drop_column("renewal_stopped")
        batch_op.drop_column("renewed_from_id")
        batch_op.drop_column("renews")
