"""Fixtures for the edit endpoints: the fake-engine app of `tests/conftest.py`, optionally
with URL fetching from 127.0.0.1 allowed, and a billing app on SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from murano.accounts import SqlAccounts
from murano.engine.params import GenerationParams
from tests.accounts.conftest import make_database
from tests.conftest import FakeEngineParts, fake_engine, make_settings, running

# The x402 fixtures, for the edit endpoints' payment tests.
from tests.payments.conftest import buyer, facilitator, token  # noqa: F401
from tests.payments.test_http import paid  # noqa: F401


@pytest.fixture
async def fetching(tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[httpx.AsyncClient]:
    """An app that fetches input URLs from 127.0.0.1."""
    settings = make_settings(tmp_path, fetch_allow=["127.0.0.1"])
    async with running(settings, fake_engine(parts)) as client:
        yield client


def last_job(parts: FakeEngineParts, model: str = "test-model") -> GenerationParams:
    return parts.backends[model].batches[-1][0]


@dataclass
class Billing:
    client: httpx.AsyncClient
    accounts: SqlAccounts
    parts: FakeEngineParts

    async def key(self, balance: str) -> dict[str, str]:
        created = await self.accounts.create_key(name="t", balance_usd=Decimal(balance))
        return {"Authorization": f"Bearer {created.secret}"}

    async def balance(self, headers: dict[str, str]) -> Decimal:
        key = await self.accounts.authenticate(headers["Authorization"].split()[1])
        assert key.balance_usd is not None
        return key.balance_usd


@pytest.fixture
async def billing(tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[Billing]:
    async with make_database("sqlite", tmp_path) as db:
        accounts = db.accounts(default_rpm=1000, failure_budget=1000)
        # "forbidden" is a blocked term: the prompt-policy tests use it.
        settings = make_settings(tmp_path, blocked_terms=["forbidden"])
        async with running(settings, fake_engine(parts), accounts) as client:
            yield Billing(client, accounts, parts)
