"""spend caps: the most a line, or a customer's lines, may spend beyond their buckets in a period

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

TENANT_TABLES = ("spend_caps",)


def upgrade() -> None:
    op.create_table(
        "spend_caps",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.CheckConstraint("(subscription_id IS NULL) <> (customer_id IS NULL)", name=op.f("ck_spend_caps_one_holder")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_spend_caps_customer_id_customers")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_spend_caps_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_spend_caps")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_spend_caps_customer_id")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_spend_caps_subscription_id")),
    )
    with op.batch_alter_table("spend_caps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_spend_caps_tenant_id"), ["tenant_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("spend_caps")
