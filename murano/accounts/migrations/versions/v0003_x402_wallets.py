"""x402 wallets: a wallet is an `api_keys` row marked with its address, and every credited
top-up is recorded once in `x402_payments`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-05-11
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("wallet_address", sa.String(42), nullable=True))
    op.create_table(
        "x402_payments",
        sa.Column("payment_id", sa.String(255), primary_key=True),
        sa.Column("address", sa.String(42), nullable=False),
        sa.Column("micros", sa.BigInteger, nullable=False),
        sa.Column("tx", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_x402_payments_address", "x402_payments", ["address"])


def downgrade() -> None:
    op.drop_table("x402_payments")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("wallet_address")
