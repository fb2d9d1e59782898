"""API client secrets: argon2id hashes, the previous secret during a rotation's overlap, last use

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mvne.infra.db

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # api_clients is a platform table (no row-level security): columns only. Existing sha256 digests
    # stay as they are and are replaced by argon2id hashes at each client's next successful use.
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.alter_column(
            "secret_hash", existing_type=sa.String(length=128), type_=sa.String(length=255), existing_nullable=False
        )
        batch_op.add_column(sa.Column("previous_secret_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("previous_secret_expires_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column("last_used_at", mvne.infra.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Today's argon2id hashes (97 characters) fit the old column, but code before this revision checks
    # sha256 digests only: clients whose secret was hashed with argon2id need new credentials after it.
    with op.batch_alter_table("api_clients", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("previous_secret_expires_at")
        batch_op.drop_column("previous_secret_hash")
        batch_op.alter_column(
            "secret_hash", existing_type=sa.String(length=255), type_=sa.String(length=128), existing_nullable=False
        )
