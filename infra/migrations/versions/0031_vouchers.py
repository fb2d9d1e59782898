"""top-up vouchers: batches, and each voucher kept as a keyed digest of its code

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None

TENANT_TABLES = ("voucher_batches", "vouchers")


def upgrade() -> None:
    op.create_table(
        "voucher_batches",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("expires_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voucher_batches")),
    )
    with op.batch_alter_table("voucher_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_voucher_batches_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "vouchers",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=False),
        sa.Column("code_digest", sa.String(length=64), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("movement_id", sa.String(length=40), nullable=True),
        sa.Column("redeemed_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["voucher_batches.id"], name=op.f("fk_vouchers_batch_id_voucher_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("tenant_id", "code_digest", name=op.f("uq_vouchers_tenant_id_code_digest")),
    )
    with op.batch_alter_table("vouchers", schema=None) as batch_op:
        batch_op.create_index("ix_vouchers_batch", ["batch_id", "status"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("vouchers")
    op.drop_table("voucher_batches")
