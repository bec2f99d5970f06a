"""The tables `SqlStore` queries, as SQLAlchemy Core. The schema itself is created and
changed only by the Alembic revisions in `migrations/versions/`; these definitions must
match the head revision (a test compares them).

Money columns are integer micro-USD (see `_money`); times are UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

__all__ = [
    "api_keys",
    "instances",
    "jobs",
    "metadata",
    "reservations",
    "usage_records",
    "webhook_deliveries",
    "x402_payments",
]


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out. SQLite keeps no zone, so values are stored there
    as naive UTC (which also keeps its text comparisons in time order)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
_BigId = BigInteger().with_variant(Integer(), "sqlite")

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("prefix", String(32), nullable=False, index=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False),
    Column("balance_micros", BigInteger, nullable=True),
    Column("reserved_micros", BigInteger, nullable=False),
    Column("rpm", Integer, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    # Set on an x402 wallet's row (lower-case 0x address): an account without a usable
    # secret, credited by top-ups and drawn on by Sign-In-With-X requests.
    Column("wallet_address", String(42), nullable=True),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("key_id", String(36), ForeignKey("api_keys.id"), nullable=False, index=True),
    Column("amount_micros", BigInteger, nullable=False),
    Column("model", String(200), nullable=False),
    Column("images", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("settled_at", UTCDateTime, nullable=True),
    # The server instance that holds it (None: made before revision 0004).
    Column("instance_id", String(36), nullable=True, index=True),
    Index("ix_reservations_state_created_at", "state", "created_at"),
)

# One row per server start: its heartbeat tells other servers it still owns the
# reservations it made; `stopped_at` is set when it stops or is found dead.
instances = Table(
    "instances",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("stopped_at", UTCDateTime, nullable=True),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("key_id", String(36), ForeignKey("api_keys.id"), nullable=False),
    Column("reservation_id", String(36), nullable=True),
    Column("model", String(200), nullable=False),
    Column("images", Integer, nullable=False),
    Column("charged_micros", BigInteger, nullable=False),
    Column("outcome", String(32), nullable=False),
    # Why a reservation was released without a request's outcome (crash, lease expiry).
    Column("reason", String(200), nullable=True),
    Column("timings_ms", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_usage_records_key_id_created_at", "key_id", "created_at"),
)

# One row per x402 top-up credited: its primary key is what makes a payment credit once.
x402_payments = Table(
    "x402_payments",
    metadata,
    Column("payment_id", String(255), primary_key=True),
    Column("address", String(42), nullable=False, index=True),
    Column("micros", BigInteger, nullable=False),
    Column("tx", String(128), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
)

# Async jobs (`murano.accounts.jobs`): one row per job, its result once delivered; deleted
# after `expires_at`. `key_id` is no foreign key: static keys and x402 payers have no row.
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("key_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("model", String(200), nullable=False),
    Column("server", String(64), nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("webhook", JSON, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_jobs_key_id_created_at", "key_id", "created_at"),
    Index("ix_jobs_expires_at", "expires_at"),
)

# Webhook deliveries still owed (`murano.webhooks`): retried until delivered or given up.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("last_error", String(500), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
)
