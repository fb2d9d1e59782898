"""usage rejections kept, and what explains a rated record

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 10:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = ("usage_rejections",)


def upgrade() -> None:
    op.create_table(
        "usage_rejections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("record_id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=300), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("raw", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False),
        sa.Column(
            "fixes", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("reason_code", sa.String(length=40), nullable=False),
        sa.Column("reason_detail", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("received_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("usage_record_id", sa.String(length=40), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_rejections")),
    )
    with op.batch_alter_table("usage_rejections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_rejections_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_usage_rejections_status", ["tenant_id", "status", "reason_code"], unique=False)
        batch_op.create_index(
            "uq_usage_rejections_open_record",
            ["tenant_id", "record_id"],
            unique=True,
            postgresql_where=sa.text("status = 'open'"),
            sqlite_where=sa.text("status = 'open'"),
        )
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("offer_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("allowance_before", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("overage_unit_price", mvne.infra.db.Amount(), nullable=True))
        batch_op.add_column(sa.Column("amount_exact", mvne.infra.db.ExactAmount(), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("amount_exact")
        batch_op.drop_column("overage_unit_price")
        batch_op.drop_column("allowance_before")
        batch_op.drop_column("offer_id")
    with op.batch_alter_table("usage_rejections", schema=None) as batch_op:
        batch_op.drop_index("uq_usage_rejections_open_record")
        batch_op.drop_index("ix_usage_rejections_status")
        batch_op.drop_index(batch_op.f("ix_usage_rejections_tenant_id"))
    op.drop_table("usage_rejections")
