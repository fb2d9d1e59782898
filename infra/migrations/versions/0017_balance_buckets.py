"""balance buckets: allowances per line, period, zone and purchase

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 12:00:00
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import sqlalchemy as sa
from alembic import op

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

TENANT_TABLES = ("balance_buckets",)
# Replaced by balance_buckets: its rows move there and the table goes.
DROPPED_TENANT_TABLES = ("allowance_balances",)


def upgrade() -> None:
    op.create_table(
        "balance_buckets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("service", sa.String(length=10), nullable=False),
        sa.Column("zone", sa.String(length=10), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("origin_key", sa.String(length=120), nullable=False),
        sa.Column("offer_version_id", sa.String(length=40), nullable=True),
        sa.Column("purchase_id", sa.String(length=40), nullable=True),
        sa.Column("period", sa.String(length=7), nullable=True),
        sa.Column("granted", sa.BigInteger(), nullable=True),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("fair_use", sa.BigInteger(), nullable=True),
        sa.Column("roam_like_at_home", sa.Boolean(), nullable=False),
        sa.Column("eu_fair_use", sa.BigInteger(), nullable=True),
        sa.Column("eu_used", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("valid_from", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("valid_to", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("notified_percent", sa.Integer(), nullable=False),
        sa.Column("created_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_balance_buckets_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_balance_buckets")),
        sa.UniqueConstraint(
            "subscription_id", "origin_key", name=op.f("uq_balance_buckets_subscription_id_origin_key")
        ),
    )
    with op.batch_alter_table("balance_buckets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_balance_buckets_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_balance_buckets_line", ["subscription_id", "service", "valid_to"], unique=False)

    _move_allowance_balances()
    op.drop_table("allowance_balances")

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def _move_allowance_balances() -> None:
    """Each period's allowance balance becomes that period's home plan bucket, with what it had used."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT b.id, b.tenant_id, b.subscription_id, b.period, b.service, b.granted, b.used, t.timezone "
            "FROM allowance_balances b JOIN tenants t ON t.id = b.tenant_id"
        )
    ).all()
    buckets = sa.table(
        "balance_buckets",
        *(
            sa.column(name)
            for name in (
                "id",
                "tenant_id",
                "subscription_id",
                "service",
                "zone",
                "origin",
                "origin_key",
                "period",
                "granted",
                "used",
                "roam_like_at_home",
                "eu_used",
                "priority",
                "valid_from",
                "valid_to",
                "notified_percent",
                "created_at",
            )
        ),
    )
    now = dt.datetime.now(dt.UTC)
    values = []
    for balance_id, tenant_id, sub_id, period, service, granted, used, timezone in rows:
        tz = zoneinfo.ZoneInfo(timezone)
        year, month = int(period[:4]), int(period[5:7])
        start = dt.datetime(year, month, 1, tzinfo=tz).astimezone(dt.UTC)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=tz).astimezone(dt.UTC)
        values.append(
            {
                "id": "bkt_" + balance_id.split("_", 1)[-1],
                "tenant_id": tenant_id,
                "subscription_id": sub_id,
                "service": service,
                "zone": "home",
                "origin": "plan",
                "origin_key": f"plan:{period}:{service}:home",
                "period": period,
                "granted": granted,
                "used": used,
                "roam_like_at_home": False,
                "eu_used": 0,
                "priority": 100,
                "valid_from": start,
                "valid_to": end,
                "notified_percent": 0,
                "created_at": now,
            }
        )
    if values:
        op.bulk_insert(buckets, values)


def downgrade() -> None:
    op.create_table(
        "allowance_balances",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("service", sa.String(length=10), nullable=False),
        sa.Column("granted", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_allowance_balances_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_allowance_balances")),
        sa.UniqueConstraint(
            "subscription_id", "period", "service", name=op.f("uq_allowance_balances_subscription_id_period_service")
        ),
    )
    with op.batch_alter_table("balance_buckets", schema=None) as batch_op:
        batch_op.drop_index("ix_balance_buckets_line")
        batch_op.drop_index(batch_op.f("ix_balance_buckets_tenant_id"))
    op.drop_table("balance_buckets")
