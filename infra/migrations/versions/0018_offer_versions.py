"""offer versions, subscription terms, purchases and promotions

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 13:00:00
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import mvne.infra.db
from mvne.infra.migrate import tenant_isolation_sql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TENANT_TABLES = ("offer_versions", "subscription_terms", "promotions", "promotion_redemptions", "offer_purchases")
# Terms moved from offers into their versions; stated units as the offer had them.
FLAT_COLUMNS = (
    "price",
    "data_mb",
    "voice_minutes",
    "sms",
    "overage_data_per_mb",
    "overage_voice_per_minute",
    "overage_sms_per_message",
)
# Old usage keeps rating on version 1: it is in force from long before any line.
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql")


def _money() -> mvne.infra.db.Amount:
    return mvne.infra.db.Amount(precision=20, scale=6)


def _when() -> mvne.infra.db.UTCDateTime:
    return mvne.infra.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("description", sa.String(length=2000), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="plan"))
        batch_op.add_column(sa.Column("public", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("retired_at", _when(), nullable=True))

    op.create_table(
        "offer_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("offer_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("effective_from", sa.Date(), nullable=True),
        sa.Column("effective_from_at", _when(), nullable=True),
        sa.Column("effective_to_at", _when(), nullable=True),
        sa.Column("price", _money(), nullable=False),
        sa.Column("tax_category", sa.String(length=20), nullable=False),
        sa.Column("charges", _json(), nullable=False),
        sa.Column("allowances", _json(), nullable=False),
        sa.Column("usage_prices", _json(), nullable=False),
        sa.Column("rate_card_id", sa.String(length=40), nullable=True),
        sa.Column("validity_days", sa.Integer(), nullable=True),
        sa.Column("includes", _json(), nullable=False),
        sa.Column("existing_subscribers", sa.String(length=20), nullable=False),
        sa.Column("move_on", sa.Date(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("published_at", _when(), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["offer_id"], ["offers.id"], name=op.f("fk_offer_versions_offer_id_offers")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_versions")),
        sa.UniqueConstraint("offer_id", "number", name=op.f("uq_offer_versions_offer_id_number")),
    )
    with op.batch_alter_table("offer_versions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offer_versions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_offer_versions_in_force", ["offer_id", "status", "effective_from_at"], unique=False)

    op.create_table(
        "subscription_terms",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("offer_id", sa.String(length=40), nullable=False),
        sa.Column("offer_version_id", sa.String(length=40), nullable=False),
        sa.Column("valid_from", _when(), nullable=False),
        sa.Column("valid_to", _when(), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["offer_id"], ["offers.id"], name=op.f("fk_subscription_terms_offer_id_offers")),
        sa.ForeignKeyConstraint(
            ["offer_version_id"],
            ["offer_versions.id"],
            name=op.f("fk_subscription_terms_offer_version_id_offer_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_subscription_terms_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_terms")),
    )
    with op.batch_alter_table("subscription_terms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscription_terms_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_subscription_terms_line", ["subscription_id", "valid_from"], unique=False)
        batch_op.create_index("ix_subscription_terms_version", ["offer_version_id", "valid_to"], unique=False)

    op.create_table(
        "promotions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("code_key", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("value", _money(), nullable=False),
        sa.Column("cycles", sa.Integer(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("redemptions", sa.Integer(), nullable=False),
        sa.Column("valid_from", _when(), nullable=True),
        sa.Column("valid_until", _when(), nullable=True),
        sa.Column("offer_ids", _json(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("disabled_at", _when(), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotions")),
        sa.UniqueConstraint("tenant_id", "code_key", name=op.f("uq_promotions_tenant_id_code_key")),
    )
    with op.batch_alter_table("promotions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promotions_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "promotion_redemptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("promotion_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("purchase_id", sa.String(length=40), nullable=True),
        sa.Column("cycles_used", sa.Integer(), nullable=False),
        sa.Column("last_invoice_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["promotion_id"], ["promotions.id"], name=op.f("fk_promotion_redemptions_promotion_id_promotions")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_promotion_redemptions_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_redemptions")),
    )
    with op.batch_alter_table("promotion_redemptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_promotion_redemptions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_promotion_redemptions_line", ["subscription_id"], unique=False)

    op.create_table(
        "offer_purchases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("offer_id", sa.String(length=40), nullable=False),
        sa.Column("offer_version_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("tax_category", sa.String(length=20), nullable=False),
        sa.Column("promotion_id", sa.String(length=40), nullable=True),
        sa.Column("discount", _money(), nullable=False),
        sa.Column("valid_from", _when(), nullable=False),
        sa.Column("valid_to", _when(), nullable=False),
        sa.Column("created_at", _when(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(["offer_id"], ["offers.id"], name=op.f("fk_offer_purchases_offer_id_offers")),
        sa.ForeignKeyConstraint(
            ["offer_version_id"],
            ["offer_versions.id"],
            name=op.f("fk_offer_purchases_offer_version_id_offer_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"], ["subscriptions.id"], name=op.f("fk_offer_purchases_subscription_id_subscriptions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offer_purchases")),
    )
    with op.batch_alter_table("offer_purchases", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_offer_purchases_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_offer_purchases_unbilled", ["subscription_id", "invoice_id"], unique=False)

    _move_terms_into_versions()
    with op.batch_alter_table("offers", schema=None) as batch_op:
        for column in FLAT_COLUMNS:
            batch_op.drop_column(column)

    if op.get_bind().dialect.name == "postgresql":
        for table in TENANT_TABLES:
            for statement in tenant_isolation_sql(table):
                op.execute(statement)


def _move_terms_into_versions() -> None:
    """Each offer's flat terms become its version 1; every line gets its first terms row, set-based."""
    bind = op.get_bind()
    offers = bind.execute(
        sa.text(
            "SELECT id, tenant_id, status, price, data_mb, voice_minutes, sms, overage_data_per_mb, "
            "overage_voice_per_minute, overage_sms_per_message, published_at, created_at FROM offers"
        ).columns(
            price=_money(),
            overage_data_per_mb=_money(),
            overage_voice_per_minute=_money(),
            overage_sms_per_message=_money(),
            published_at=_when(),
            created_at=_when(),
        )
    ).all()
    versions = sa.table(
        "offer_versions",
        sa.column("id", sa.String()),
        sa.column("tenant_id", sa.String()),
        sa.column("offer_id", sa.String()),
        sa.column("number", sa.Integer()),
        sa.column("status", sa.String()),
        sa.column("effective_from", sa.Date()),
        sa.column("effective_from_at", _when()),
        sa.column("price", _money()),
        sa.column("tax_category", sa.String()),
        sa.column("charges", _json()),
        sa.column("allowances", _json()),
        sa.column("usage_prices", _json()),
        sa.column("includes", _json()),
        sa.column("existing_subscribers", sa.String()),
        sa.column("created_at", _when()),
        sa.column("published_at", _when()),
    )
    values = []
    for row in offers:
        published = row.status != "draft"
        allowances = [
            {"service": service, "zone": "home", "amount": int(amount), "priority": 100}
            for service, amount in (("data", row.data_mb), ("voice", row.voice_minutes), ("sms", row.sms))
        ]
        home = {
            "data": str(Decimal(str(row.overage_data_per_mb))),
            "voice": str(Decimal(str(row.overage_voice_per_minute))),
            "sms": str(Decimal(str(row.overage_sms_per_message))),
        }
        values.append(
            {
                "id": "ofv_" + row.id.split("_", 1)[-1],
                "tenant_id": row.tenant_id,
                "offer_id": row.id,
                "number": 1,
                "status": "published" if published else "draft",
                "effective_from": EPOCH.date() if published else None,
                "effective_from_at": EPOCH if published else None,
                "price": Decimal(str(row.price)),
                "tax_category": "standard",
                "charges": [],
                "allowances": allowances,
                "usage_prices": {"home": home},
                "includes": [],
                "existing_subscribers": "keep",
                "created_at": row.created_at,
                "published_at": row.published_at,
            }
        )
    if values:
        op.bulk_insert(versions, values)
    # One statement for every line: its offer's version 1, from the epoch, open-ended.
    bind.execute(
        sa.text(
            "INSERT INTO subscription_terms (id, tenant_id, subscription_id, offer_id, offer_version_id, "
            "valid_from, valid_to, created_at) "
            "SELECT 'stm_' || substr(s.id, 5), s.tenant_id, s.id, s.offer_id, v.id, :epoch, NULL, :now "
            "FROM subscriptions s JOIN offer_versions v ON v.offer_id = s.offer_id AND v.number = 1"
        ).bindparams(sa.bindparam("epoch", type_=_when()), sa.bindparam("now", type_=_when())),
        {"epoch": EPOCH, "now": dt.datetime.now(dt.UTC)},
    )


def downgrade() -> None:
    with op.batch_alter_table("offers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("price", _money(), nullable=False, server_default="0"))
        for column in ("data_mb", "voice_minutes", "sms"):
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
        for column in ("overage_data_per_mb", "overage_voice_per_minute", "overage_sms_per_message"):
            batch_op.add_column(sa.Column(column, _money(), nullable=False, server_default="0"))
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT offer_id, price, allowances, usage_prices FROM offer_versions ORDER BY offer_id, number")
    ).all()
    latest = {row.offer_id: row for row in rows}
    for offer_id, row in latest.items():
        allowances = row.allowances if not isinstance(row.allowances, str) else json.loads(row.allowances)
        prices = row.usage_prices if not isinstance(row.usage_prices, str) else json.loads(row.usage_prices)
        home_amounts = {a["service"]: a.get("amount") or 0 for a in allowances if a.get("zone") == "home"}
        home = prices.get("home", {})
        bind.execute(
            sa.text(
                "UPDATE offers SET price = :price, data_mb = :data, voice_minutes = :voice, sms = :sms, "
                "overage_data_per_mb = :per_mb, overage_voice_per_minute = :per_min, "
                "overage_sms_per_message = :per_sms WHERE id = :id"
            ),
            {
                "id": offer_id,
                "price": str(row.price),
                "data": int(home_amounts.get("data", 0)),
                "voice": int(home_amounts.get("voice", 0)),
                "sms": int(home_amounts.get("sms", 0)),
                "per_mb": str(home.get("data", "0")),
                "per_min": str(home.get("voice", "0")),
                "per_sms": str(home.get("sms", "0")),
            },
        )
    for table in ("offer_purchases", "promotion_redemptions", "promotions", "subscription_terms", "offer_versions"):
        op.drop_table(table)
    with op.batch_alter_table("offers", schema=None) as batch_op:
        for column in ("retired_at", "public", "kind", "description"):
            batch_op.drop_column(column)
