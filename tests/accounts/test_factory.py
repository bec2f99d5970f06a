"""`build_accounts`: which accounts a server gets from its settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from murano.accounts import (
    MemoryRateLimiter,
    OpenAccounts,
    RedisRateLimiter,
    SqlAccounts,
    StaticKeyAccounts,
    build_accounts,
)
from murano.settings import Settings


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=None, redis_url=None, **values)


async def test_no_auth_lets_everyone_in(tmp_path: Path) -> None:
    accounts = build_accounts(settings(tmp_path, auth=False, api_keys=["ignored-key-0000"]))
    assert isinstance(accounts, OpenAccounts) and not accounts.auth_required


async def test_the_static_backend_serves_the_settings_keys(tmp_path: Path) -> None:
    accounts = build_accounts(
        settings(tmp_path, accounts_backend="static", api_keys=["k-000000000000"], default_rpm=3)
    )
    assert isinstance(accounts, StaticKeyAccounts)
    assert accounts.gate.default_rpm == 3
    assert (await accounts.authenticate("k-000000000000")).is_admin
    with pytest.raises(ValueError, match="MURANO_API_KEYS"):
        build_accounts(settings(tmp_path, accounts_backend="static"))


async def test_the_sql_backend_defaults_to_a_file_in_the_data_dir(tmp_path: Path) -> None:
    accounts = build_accounts(
        settings(tmp_path, api_keys=["a-settings-key-0123456789"], failure_budget=7)
    )
    assert isinstance(accounts, SqlAccounts)
    assert isinstance(accounts.gate.limiter, MemoryRateLimiter)
    assert accounts.gate.failure_budget == 7
    await accounts.start()
    try:
        assert (tmp_path / "data" / "murano.db").exists()
        assert accounts.bootstrap_key is None
        assert (await accounts.authenticate("a-settings-key-0123456789")).is_admin
    finally:
        await accounts.close()


async def test_database_and_redis_urls_are_used(tmp_path: Path) -> None:
    accounts = build_accounts(
        Settings(
            data_dir=tmp_path,
            database_url="postgresql://someone@db.example/murano",
            redis_url="redis://cache.example:6379/2",
        )
    )
    assert isinstance(accounts, SqlAccounts)
    assert accounts.store.display_url == "postgresql+asyncpg://someone@db.example/murano"
    assert isinstance(accounts.gate.limiter, RedisRateLimiter)
    await accounts.close()
