"""rate cards, their dated versions and prefix lines

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = ("rate_cards", "rate_card_versions", "rate_card_lines")


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
    op.create_table(
        "rate_cards",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("network_agreement_id", sa.String(length=40), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("rounding_mode", sa.String(length=10), nullable=False),
        sa.Column("precision", sa.Integer(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["network_agreement_id"],
            ["network_agreements.id"],
            name=op.f("fk_rate_cards_network_agreement_id_network_agreements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_cards")),
    )
    with op.batch_alter_table("rate_cards", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rate_cards_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "rate_card_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("rate_card_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=False),
        sa.Column("effective_to", sa.Date(), nullable=True),
        sa.Column("effective_from_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("effective_to_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("time_bands", json_type, nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("published_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["rate_card_id"], ["rate_cards.id"], name=op.f("fk_rate_card_versions_rate_card_id_rate_cards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_card_versions")),
        sa.UniqueConstraint("rate_card_id", "number", name=op.f("uq_rate_card_versions_rate_card_id_number")),
    )
    with op.batch_alter_table("rate_card_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rate_card_versions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "rate_card_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("version_id", sa.String(length=40), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("service", sa.String(length=10), nullable=False),
        sa.Column("connect_fee", mvne.infra.db.Amount(precision=20, scale=6), nullable=False),
        sa.Column("price", mvne.infra.db.Amount(precision=20, scale=6), nullable=False),
        sa.Column("first_increment", sa.Integer(), nullable=False),
        sa.Column("next_increment", sa.Integer(), nullable=False),
        sa.Column("time_band", sa.String(length=32), nullable=False),
        sa.Column("zero_rated", sa.Boolean(), nullable=False),
        sa.Column("premium", sa.Boolean(), nullable=False),
        sa.Column("premium_cap", mvne.infra.db.Amount(precision=20, scale=6), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["rate_card_versions.id"], name=op.f("fk_rate_card_lines_version_id_rate_card_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rate_card_lines")),
        sa.UniqueConstraint(
            "version_id",
            "service",
            "prefix",
            "time_band",
            name=op.f("uq_rate_card_lines_version_id_service_prefix_time_band"),
        ),
    )
    with op.batch_alter_table("rate_card_lines", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_rate_card_lines_tenant_id"), ["tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    for table in ("rate_card_lines", "rate_card_versions", "rate_cards"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_tenant_id"))
        op.drop_table(table)
