"""the person behind each audit event, the local mailbox, and tenant brands

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 09:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = ("tenant_brands",)


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("actor_id", sa.String(length=40), nullable=True))
    op.create_table(
        "mailbox_messages",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("to_address", sa.String(length=254), nullable=False),
        sa.Column("sender", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=60), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mailbox_messages")),
    )
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mailbox_messages_to_address"), ["to_address"], unique=False)
    op.create_table(
        "tenant_brands",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("display_name", sa.String(length=100), nullable=False),
        sa.Column("primary_color", sa.String(length=7), nullable=False),
        sa.Column("accent_color", sa.String(length=7), nullable=False),
        sa.Column("logo_key", sa.String(length=300), nullable=True),
        sa.Column("logo_content_type", sa.String(length=40), nullable=True),
        sa.Column("support_email", sa.String(length=254), nullable=True),
        sa.Column("support_phone", sa.String(length=20), nullable=True),
        sa.Column("support_url", sa.String(length=500), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_brands")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_tenant_brands_tenant_id")),
    )
    with op.batch_alter_table("tenant_brands", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenant_brands_tenant_id"), ["tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("tenant_brands", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenant_brands_tenant_id"))
    op.drop_table("tenant_brands")
    with op.batch_alter_table("mailbox_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mailbox_messages_to_address"))
    op.drop_table("mailbox_messages")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("actor_id")
