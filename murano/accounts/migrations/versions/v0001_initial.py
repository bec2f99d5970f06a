"""API keys, reservations and usage records.

Revision ID: 0001
Revises:
Create Date: 2026-05-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Time = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("balance_micros", sa.BigInteger, nullable=True),
        sa.Column("reserved_micros", sa.BigInteger, nullable=False),
        sa.Column("rpm", sa.Integer, nullable=True),
        sa.Column("expires_at", _Time, nullable=True),
        sa.Column("revoked_at", _Time, nullable=True),
        sa.Column("created_at", _Time, nullable=False),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "reservations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("key_id", sa.String(36), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("amount_micros", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", _Time, nullable=False),
        sa.Column("settled_at", _Time, nullable=True),
    )
    op.create_index("ix_reservations_key_id", "reservations", ["key_id"])
    op.create_index("ix_reservations_state_created_at", "reservations", ["state", "created_at"])
    op.create_table(
        "usage_records",
        sa.Column("id", _BigId, primary_key=True, autoincrement=True),
        sa.Column("key_id", sa.String(36), sa.ForeignKey("api_keys.id"), nullable=False),
        sa.Column("reservation_id", sa.String(36), nullable=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("charged_micros", sa.BigInteger, nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("timings_ms", sa.JSON, nullable=True),
        sa.Column("created_at", _Time, nullable=False),
    )
    op.create_index("ix_usage_records_key_id_created_at", "usage_records", ["key_id", "created_at"])


def downgrade() -> None:
    op.drop_table("usage_records")
    op.drop_table("reservations")
    op.drop_table("api_keys")
