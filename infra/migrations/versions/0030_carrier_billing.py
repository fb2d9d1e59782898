"""carrier billing: the tenant's policy, lines barred, merchants, their charges to lines and the refunds

A merchant's charge is taken from a prepaid line's balance at once or billed on a postpaid line's next
invoice (`invoice_id`, claimed like usage); a refund of a charge already invoiced is credited on the next.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

TENANT_TABLES = ("carrier_billing_policies", "line_carrier_billing", "merchants", "carrier_charges", "carrier_refunds")
REFERENCE_HELD = "merchant_reference IS NOT NULL AND status <> 'refused'"
CREDIT_UNBILLED = "invoice_id IS NULL AND settlement = 'credit'"


def upgrade() -> None:
    op.create_table(
        "carrier_billing_policies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("mode", sa.String(length=10), nullable=False),
        sa.Column("monthly_cap", mvne.infra.db.Amount(), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_billing_policies")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_carrier_billing_policies_tenant_id")),
    )
    op.create_table(
        "line_carrier_billing",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("barred", sa.Boolean(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_line_carrier_billing_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_line_carrier_billing")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_line_carrier_billing_subscription_id")),
    )
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("api_client_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("suspended_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_client_id"], ["api_clients.id"], name=op.f("fk_merchants_api_client_id_api_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_merchants")),
        sa.UniqueConstraint("api_client_id", name=op.f("uq_merchants_api_client_id")),
    )
    with op.batch_alter_table("merchants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_merchants_tenant_id"), ["tenant_id"], unique=False)
    op.create_table(
        "carrier_charges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("merchant_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("line_reference", sa.String(length=64), nullable=False),
        sa.Column("msisdn", sa.String(length=16), nullable=True),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("refunded_amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("merchant_reference", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("refusal_code", sa.String(length=40), nullable=True),
        sa.Column("refusal_detail", sa.String(length=300), nullable=True),
        sa.Column("payment", sa.String(length=10), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_carrier_charges_invoice_id_invoices")),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_carrier_charges_merchant_id_merchants")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_carrier_charges_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_charges")),
    )
    with op.batch_alter_table("carrier_charges", schema=None) as batch_op:
        batch_op.create_index("ix_carrier_charges_line", ["subscription_id", "period"], unique=False)
        batch_op.create_index("ix_carrier_charges_merchant", ["merchant_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_carrier_charges_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "uq_carrier_charges_merchant_reference",
            ["merchant_id", "merchant_reference"],
            unique=True,
            postgresql_where=sa.text(REFERENCE_HELD),
            sqlite_where=sa.text(REFERENCE_HELD),
        )
    op.create_table(
        "carrier_refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("charge_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("amount", mvne.infra.db.Amount(), nullable=False),
        sa.Column("settlement", sa.String(length=10), nullable=False),
        sa.Column("requested_by", sa.String(length=10), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["carrier_charges.id"], name=op.f("fk_carrier_refunds_charge_id_carrier_charges")
        ),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_carrier_refunds_invoice_id_invoices")),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_carrier_refunds_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carrier_refunds")),
    )
    with op.batch_alter_table("carrier_refunds", schema=None) as batch_op:
        batch_op.create_index("ix_carrier_refunds_charge", ["charge_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_carrier_refunds_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_carrier_refunds_unbilled",
            ["subscription_id"],
            unique=False,
            postgresql_where=sa.text(CREDIT_UNBILLED),
            sqlite_where=sa.text(CREDIT_UNBILLED),
        )
    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    op.drop_table("carrier_refunds")
    op.drop_table("carrier_charges")
    op.drop_table("merchants")
    op.drop_table("line_carrier_billing")
    op.drop_table("carrier_billing_policies")
