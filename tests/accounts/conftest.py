"""Fixtures for the accounts tests: every store test runs on SQLite (a file in a temp
dir) and on PostgreSQL (a fresh schema per test, dropped after), and the ledger tests on
the in-memory twin as well. Redis tests use a key prefix of their own."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from murano.accounts import LedgerAccounts, MemoryAccounts, Principal, SqlAccounts
from murano.accounts.records import CreatedKey
from murano.accounts.sql import normalize_url

POSTGRES_URL = os.environ.get(
    "MURANO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MURANO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
LEDGERS = ["memory", *STORES]


@dataclass
class Database:
    """Where one test's tables live: a URL and, on PostgreSQL, a schema of its own."""

    url: str
    schema: str | None = None

    def accounts(self, **options: Any) -> SqlAccounts:
        options.setdefault("bootstrap", False)
        return SqlAccounts(self.url, schema=self.schema, **options)

    def raw_engine(self) -> AsyncEngine:
        """An engine on the same tables, for looking under the store."""
        args = {} if self.schema is None else {"server_settings": {"search_path": self.schema}}
        return create_async_engine(normalize_url(self.url), connect_args=args)


@asynccontextmanager
async def postgres_schema() -> AsyncIterator[str]:
    schema = f"t_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@asynccontextmanager
async def make_database(kind: str, tmp_path: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        yield Database(f"sqlite+aiosqlite:///{tmp_path / 'data' / 'murano.db'}")
        return
    async with postgres_schema() as schema:
        yield Database(POSTGRES_URL, schema)


@pytest.fixture(params=STORES)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with make_database(request.param, tmp_path) as db:
        yield db


AccountsFactory = Callable[..., Awaitable[LedgerAccounts]]


@asynccontextmanager
async def accounts_factory(kind: str, tmp_path: Path) -> AsyncIterator[AccountsFactory]:
    """Opens started accounts of one kind, closed at the end. On SQL kinds every call opens
    another instance on the same database: another server, or the same after a restart."""
    opened: list[LedgerAccounts] = []

    @asynccontextmanager
    async def where() -> AsyncIterator[Database | None]:
        if kind == "memory":
            yield None
        else:
            async with make_database(kind, tmp_path) as db:
                yield db

    async with where() as db:

        async def factory(**options: Any) -> LedgerAccounts:
            accounts = MemoryAccounts(**options) if db is None else db.accounts(**options)
            await accounts.start()
            opened.append(accounts)
            return accounts

        try:
            yield factory
        finally:
            for accounts in opened:
                await accounts.close()


@pytest.fixture(params=LEDGERS)
async def open_accounts(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AccountsFactory]:
    """Accounts on the in-memory twin, SQLite and PostgreSQL."""
    async with accounts_factory(request.param, tmp_path) as factory:
        yield factory


@pytest.fixture(params=STORES)
async def open_sql_accounts(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AccountsFactory]:
    """Accounts on SQLite and PostgreSQL, for tests of several instances on one database."""
    async with accounts_factory(request.param, tmp_path) as factory:
        yield factory


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix for one test, whose keys are deleted after it."""
    prefix = f"murano-test:{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
    finally:
        await client.aclose()


async def new_key(
    accounts: LedgerAccounts, *, usd: str | None = "1", **options: Any
) -> tuple[CreatedKey, Principal]:
    """A key (balance `usd`, None: unlimited) and its authenticated principal."""
    options.setdefault("rpm", 1000)
    created = await accounts.create_key(
        name=options.pop("name", "test"),
        balance_usd=None if usd is None else Decimal(usd),
        **options,
    )
    return created, await accounts.authenticate(created.secret)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def cli_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[list[str]]:
    """The CLI options naming a fresh database: a data dir, or a PostgreSQL database of
    its own (the CLI has no schema option)."""
    if request.param == "sqlite":
        yield ["--data-dir", str(tmp_path / "data")]
        return
    name = f"t_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield ["--database-url", POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
