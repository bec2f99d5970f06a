"""Bring a database to the current accounts schema with Alembic, from inside the process.

The server calls `upgrade()` at every start (so an upgraded murano keeps its keys and
balances), and so does each CLI command. On PostgreSQL a transaction-scoped advisory lock
makes replicas that start together migrate one after the other; SQLite takes its write
lock on the first DDL statement.

To write a new revision: add `migrations/versions/vNNNN_<what>.py` by hand (copy the
last one), set `down_revision` to the previous id, and update `_tables.py` to match.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["MIGRATIONS_DIR", "alembic_config", "current_revision", "head_revision", "upgrade"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; this one is "murano" in ASCII.
_LOCK_KEY = 0x6D7572616E6F


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply every revision up to `revision`, in one transaction where the database
    allows transactional DDL (PostgreSQL does; SQLite commits DDL as it goes)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        await conn.run_sync(_upgrade, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
