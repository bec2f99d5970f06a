"""The schema is created and upgraded by the server at start, keeping what is stored."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import insert
from sqlalchemy.engine import Connection

from murano.accounts import Charge, Outcome, SqlStore, migrate
from murano.accounts._keygen import generate_key, hash_key, key_prefix
from murano.accounts._tables import api_keys, metadata
from murano.accounts.store import utcnow

from .conftest import Database


async def test_an_upgrade_keeps_keys_and_balances(database: Database) -> None:
    old = SqlStore(database.url, schema=database.schema)
    if old.url.get_backend_name() == "sqlite":  # what start() does first
        Path(old.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    await migrate.upgrade(old.engine, "0001")
    assert await migrate.current_revision(old.engine) == "0001"
    secret = generate_key()
    # The first release's columns only: no last_used_at yet.
    row = {
        "id": "0d7c6a55-0000-4000-8000-000000000001",
        "name": "from 0.0",
        "prefix": key_prefix(secret),
        "key_hash": hash_key(secret),
        "is_admin": False,
        "balance_micros": 2_500_000,
        "reserved_micros": 0,
        "created_at": utcnow(),
    }
    async with old.engine.begin() as conn:
        await conn.execute(insert(api_keys).values(row))
    await old.close()

    accounts = database.accounts()
    await accounts.start()
    try:
        assert await migrate.current_revision(accounts.store.engine) == migrate.head_revision()
        principal = await accounts.authenticate(secret)
        assert (principal.name, principal.balance_usd) == ("from 0.0", Decimal("2.5"))
        assert (await accounts.get_key(principal.key_id)).last_used_at is None
        admission = await accounts.admit(principal, Charge("m", 1, Decimal("0.5")))
        await accounts.settle(admission, Outcome.DELIVERED)
        key = await accounts.get_key(principal.key_id)
        assert key.balance_usd == Decimal(2) and key.last_used_at is not None
    finally:
        await accounts.close()


async def test_a_restart_keeps_keys_balances_and_usage(database: Database) -> None:
    first = database.accounts()
    await first.start()
    created = await first.create_key(name="k", balance_usd=Decimal(1), rpm=100)
    admission = await first.admit(
        await first.authenticate(created.secret), Charge("m", 2, Decimal("0.1"))
    )
    await first.settle(admission, Outcome.DELIVERED)
    await first.close()
    second = database.accounts()
    await second.start()
    try:
        key = await second.get_key(created.key.id)
        assert (key.balance_usd, key.rpm) == (Decimal("0.8"), 100)
        assert [u.charged_usd for u in await second.list_usage()] == [Decimal("0.2")]
    finally:
        await second.close()


async def test_the_tables_match_the_head_revision(database: Database) -> None:
    store = SqlStore(database.url, schema=database.schema)
    await store.start()
    try:
        async with store.engine.connect() as conn:
            differences = await conn.run_sync(_differences)
    finally:
        await store.close()
    assert differences == []


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))
