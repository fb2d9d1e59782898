"""prepaid money balances per line, their movements, and usage paid from them

A line with a money balance is prepaid: the overage of its usage is taken from the balance when it is
rated (online or from a record) and never invoiced; `usage_records.prepaid` marks what was paid so.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-01 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

TENANT_TABLES = ("money_balances", "balance_movements")


def upgrade() -> None:
    op.create_table(
        "money_balances",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_money_balances_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_money_balances")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_money_balances_subscription_id")),
    )
    op.create_table(
        "balance_movements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("balance_after", mvne.infra.db.Amount(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=300), nullable=False),
        sa.Column("records", sa.Integer(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_balance_movements_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_movements")),
        sa.UniqueConstraint("tenant_id", "reference", name=op.f("uq_balance_movements_tenant_id_reference")),
    )
    with op.batch_alter_table("balance_movements", schema=None) as batch_op:
        batch_op.create_index("ix_balance_movements_line", ["subscription_id", "created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_balance_movements_tenant_id"), ["tenant_id"], unique=False)
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("prepaid", sa.Boolean(), server_default=sa.false(), nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        batch_op.drop_column("prepaid")
    op.drop_table("balance_movements")
    op.drop_table("money_balances")
