"""tenants' legal profiles; customers' VAT ids

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = ("tenant_legal_profiles",)


def upgrade() -> None:
    op.create_table(
        "tenant_legal_profiles",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("legal_name", sa.String(length=200), nullable=False),
        sa.Column("legal_form", sa.String(length=50), nullable=True),
        sa.Column(
            "address", sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"), nullable=False
        ),
        sa.Column("registration_number", sa.String(length=50), nullable=True),
        sa.Column("rcs_city", sa.String(length=100), nullable=True),
        sa.Column("share_capital", mvne.infra.db.Amount(precision=20, scale=6), nullable=True),
        sa.Column("vat_id", sa.String(length=20), nullable=True),
        sa.Column("iban", sa.String(length=34), nullable=True),
        sa.Column("bic", sa.String(length=11), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("invoice_locale", sa.String(length=20), nullable=False),
        sa.Column("support_email", sa.String(length=254), nullable=True),
        sa.Column("support_phone", sa.String(length=20), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_legal_profiles")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_tenant_legal_profiles_tenant_id")),
    )
    with op.batch_alter_table("tenant_legal_profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenant_legal_profiles_tenant_id"), ["tenant_id"], unique=False)
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("vat_id", sa.String(length=20), nullable=True))

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("customers", schema=None) as batch_op:
        batch_op.drop_column("vat_id")
    with op.batch_alter_table("tenant_legal_profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenant_legal_profiles_tenant_id"))
    op.drop_table("tenant_legal_profiles")
