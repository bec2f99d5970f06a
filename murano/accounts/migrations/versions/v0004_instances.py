"""Server instances and their heartbeats; reservations name the instance holding them;
usage records say why a reservation was released.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("reservations", sa.Column("instance_id", sa.String(36), nullable=True))
    op.create_index("ix_reservations_instance_id", "reservations", ["instance_id"])
    op.add_column("usage_records", sa.Column("reason", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("reason")
    op.drop_index("ix_reservations_instance_id", "reservations")
    with op.batch_alter_table("reservations") as batch:
        batch.drop_column("instance_id")
    op.drop_table("instances")
