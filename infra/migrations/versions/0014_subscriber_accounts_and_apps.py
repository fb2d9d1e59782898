"""subscriber accounts, their sign-in codes and OAuth grants; public API clients (apps)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = (
    "subscriber_accounts",
    "subscriber_one_time_codes",
    "subscriber_authorization_codes",
    "subscriber_refresh_tokens",
)


def upgrade() -> None:
    json_type = sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="confidential"))
        batch_op.add_column(sa.Column("redirect_uris", json_type, nullable=False, server_default=sa.text("'[]'")))

    op.create_table(
        "subscriber_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriber_accounts_customer_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_accounts")),
        sa.UniqueConstraint("tenant_id", "customer_id", name=op.f("uq_subscriber_accounts_tenant_id_customer_id")),
        sa.UniqueConstraint("tenant_id", "email", name=op.f("uq_subscriber_accounts_tenant_id_email")),
    )
    with op.batch_alter_table("subscriber_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_accounts_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_accounts_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "subscriber_one_time_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=255), nullable=False),
        sa.Column("expires_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("used_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["subscriber_accounts.id"],
            name=op.f("fk_subscriber_one_time_codes_account_id_subscriber_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_one_time_codes")),
    )
    with op.batch_alter_table("subscriber_one_time_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_one_time_codes_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_one_time_codes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "subscriber_authorization_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("redirect_uri", sa.String(length=2000), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=False),
        sa.Column("code_challenge_method", sa.String(length=10), nullable=False),
        sa.Column("expires_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["subscriber_accounts.id"],
            name=op.f("fk_subscriber_authorization_codes_account_id_subscriber_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["api_clients.id"], name=op.f("fk_subscriber_authorization_codes_client_id_api_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_authorization_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_subscriber_authorization_codes_code_hash")),
    )
    with op.batch_alter_table("subscriber_authorization_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_authorization_codes_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_authorization_codes_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_authorization_codes_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "subscriber_refresh_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=40), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("family_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["subscriber_accounts.id"],
            name=op.f("fk_subscriber_refresh_tokens_account_id_subscriber_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["client_id"], ["api_clients.id"], name=op.f("fk_subscriber_refresh_tokens_client_id_api_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriber_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_subscriber_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("subscriber_refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriber_refresh_tokens_account_id"), ["account_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_refresh_tokens_client_id"), ["client_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_refresh_tokens_family_id"), ["family_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_subscriber_refresh_tokens_tenant_id"), ["tenant_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    for table, indexes in (
        ("subscriber_refresh_tokens", ("account_id", "client_id", "family_id", "tenant_id")),
        ("subscriber_authorization_codes", ("account_id", "client_id", "tenant_id")),
        ("subscriber_one_time_codes", ("account_id", "tenant_id")),
        ("subscriber_accounts", ("customer_id", "tenant_id")),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in indexes:
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
        op.drop_table(table)
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_column("redirect_uris")
        batch_op.drop_column("kind")
