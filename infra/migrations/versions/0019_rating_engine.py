"""rating engine: zones, rate card lines and wholesale on usage records, re-rating runs and adjustments

Revision ID: 0019
Revises: 0017
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

TENANT_TABLES = ("rerating_runs", "usage_adjustments")
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("rate_cards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purpose", sa.String(length=20), server_default="retail", nullable=False))

    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("zone", sa.String(length=10), server_default="home", nullable=False))
        batch_op.add_column(sa.Column("visited_plmn", sa.String(length=7), nullable=True))
        batch_op.add_column(sa.Column("called_number", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("rating_group", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("offer_version_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("billed_quantity", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("rate_card_version_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("rate_prefix", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("time_band", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("wholesale_amount", mvne.infra.db.Amount(), nullable=True))
        batch_op.add_column(sa.Column("wholesale_exact", mvne.infra.db.ExactAmount(), nullable=True))
        batch_op.add_column(sa.Column("wholesale_rate_version_id", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("wholesale_prefix", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("bucket_parts", JSON, nullable=True))
        batch_op.add_column(sa.Column("throttled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("rerated_count", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_usage_records_replay", ["subscription_id", "period", "started_at"], unique=False)

    op.create_table(
        "rerating_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("records_total", sa.Integer(), nullable=False),
        sa.Column("records_done", sa.Integer(), nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("records_changed", sa.Integer(), nullable=False),
        sa.Column("adjustments", sa.Integer(), nullable=False),
        sa.Column("failure_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("completed_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rerating_runs")),
    )
    with op.batch_alter_table("rerating_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rerating_runs_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "usage_adjustments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("usage_record_id", sa.String(length=40), nullable=False),
        sa.Column("rerating_run_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("service", sa.String(length=10), nullable=False),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("wholesale_amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["usage_record_id"], ["usage_records.id"], name=op.f("fk_usage_adjustments_usage_record_id_usage_records")
        ),
        sa.ForeignKeyConstraint(
            ["rerating_run_id"],
            ["rerating_runs.id"],
            name=op.f("fk_usage_adjustments_rerating_run_id_rerating_runs"),
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_usage_adjustments_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_adjustments")),
        sa.UniqueConstraint(
            "rerating_run_id",
            "usage_record_id",
            name=op.f("uq_usage_adjustments_rerating_run_id_usage_record_id"),
        ),
    )
    with op.batch_alter_table("usage_adjustments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_usage_adjustments_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_usage_adjustments_record", ["usage_record_id"], unique=False)
        batch_op.create_index("ix_usage_adjustments_unbilled", ["subscription_id", "invoice_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("usage_adjustments", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_adjustments_unbilled")
        batch_op.drop_index("ix_usage_adjustments_record")
        batch_op.drop_index(batch_op.f("ix_usage_adjustments_tenant_id"))
    op.drop_table("usage_adjustments")
    with op.batch_alter_table("rerating_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rerating_runs_tenant_id"))
    op.drop_table("rerating_runs")
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_records_replay")
        for column in (
            "rerated_count",
            "throttled",
            "bucket_parts",
            "wholesale_prefix",
            "wholesale_rate_version_id",
            "wholesale_exact",
            "wholesale_amount",
            "time_band",
            "rate_prefix",
            "rate_card_version_id",
            "billed_quantity",
            "offer_version_id",
            "rating_group",
            "called_number",
            "visited_plmn",
            "zone",
        ):
            batch_op.drop_column(column)
    with op.batch_alter_table("rate_cards", schema=None) as batch_op:
        batch_op.drop_column("purpose")
