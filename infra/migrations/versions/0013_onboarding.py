"""onboarding: tenant settings, host network agreements, launch date, sandbox test scenarios

Payment terms move from the legal profile to the tenant's settings (one place for them); each legal
profile's terms are carried over.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.ids import new_id
from mvne.infra.migrate import tenant_isolation_sql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Tenant-owned tables: row-level security binds the application role to the session's tenant.
TENANT_TABLES = ("tenant_settings",)

# The platform's network simulator, one agreement per country with a numbering plan, so a sandbox
# tenant can complete its checklist on a fresh platform. Its SIMs carry IMSIs of the ITU test
# network (MCC 001, MNC 01), which is what the simulated host network answers to.
SIMULATED_COUNTRIES = ("FR", "DE", "ES", "GB", "IT", "BE", "NL")
SEEDED_AT = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.UTC)

network_agreements = sa.table(
    "network_agreements",
    sa.column("id", sa.String),
    sa.column("name", sa.String),
    sa.column("host_mno", sa.String),
    sa.column("mcc", sa.String),
    sa.column("mnc", sa.String),
    sa.column("country", sa.String),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("created_at", mvne.infra.db.UTCDateTime(timezone=True)),
)
legal_profiles = sa.table(
    "tenant_legal_profiles",
    sa.column("tenant_id", sa.String),
    sa.column("payment_terms_days", sa.Integer),
)
tenant_settings = sa.table(
    "tenant_settings",
    sa.column("id", sa.String),
    sa.column("tenant_id", sa.String),
    sa.column("payment_terms_days", sa.Integer),
    sa.column("created_at", mvne.infra.db.UTCDateTime(timezone=True)),
    sa.column("updated_at", mvne.infra.db.UTCDateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("launched_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_scenario", sa.String(length=32), nullable=True))

    op.create_table(
        "network_agreements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("host_mno", sa.String(length=200), nullable=False),
        sa.Column("mcc", sa.String(length=3), nullable=False),
        sa.Column("mnc", sa.String(length=3), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_agreements")),
    )
    with op.batch_alter_table("network_agreements", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_network_agreements_country"), ["country"], unique=False)
    op.bulk_insert(
        network_agreements,
        [
            {
                "id": f"nag_sim_{country.lower()}",
                "name": f"Simulated host network ({country})",
                "host_mno": "MVNE network simulator",
                "mcc": "001",
                "mnc": "01",
                "country": country,
                "kind": "simulated",
                "status": "active",
                "created_at": SEEDED_AT,
            }
            for country in SIMULATED_COUNTRIES
        ],
    )

    op.create_table(
        "tenant_settings",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column(
            "languages", sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"), nullable=True
        ),
        sa.Column("tax_rate", mvne.infra.db.Amount(precision=20, scale=6), nullable=True),
        sa.Column("host_network_agreement_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_series", sa.String(length=10), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["host_network_agreement_id"],
            ["network_agreements.id"],
            name=op.f("fk_tenant_settings_host_network_agreement_id_network_agreements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_settings")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_tenant_settings_tenant_id")),
    )
    with op.batch_alter_table("tenant_settings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tenant_settings_tenant_id"), ["tenant_id"], unique=False)

    # Payment terms move to the settings: one row per tenant that had a legal profile, same terms.
    bind = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    carried = [
        {"id": new_id("tst"), "tenant_id": tenant, "payment_terms_days": days, "created_at": now, "updated_at": now}
        for tenant, days in bind.execute(sa.select(legal_profiles.c.tenant_id, legal_profiles.c.payment_terms_days))
    ]
    if carried:
        op.bulk_insert(tenant_settings, carried)
    with op.batch_alter_table("tenant_legal_profiles", schema=None) as batch_op:
        batch_op.drop_column("payment_terms_days")

    if bind.dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("tenant_legal_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_terms_days", sa.Integer(), nullable=False, server_default="14"))
    terms = sa.select(tenant_settings.c.payment_terms_days).where(
        tenant_settings.c.tenant_id == legal_profiles.c.tenant_id
    )
    op.execute(legal_profiles.update().values(payment_terms_days=terms.scalar_subquery()).where(terms.exists()))
    with op.batch_alter_table("tenant_legal_profiles", schema=None) as batch_op:
        batch_op.alter_column("payment_terms_days", server_default=None)

    with op.batch_alter_table("tenant_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tenant_settings_tenant_id"))
    op.drop_table("tenant_settings")
    with op.batch_alter_table("network_agreements", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_network_agreements_country"))
    op.drop_table("network_agreements")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("test_scenario")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("launched_at")
