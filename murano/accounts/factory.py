"""Which `Accounts` a server gets from its settings.

    auth off (`--no-auth`)            → OpenAccounts
    accounts_backend = "static"       → StaticKeyAccounts(settings.api_keys)
    accounts_backend = "sql"          → SqlAccounts: `database_url`, else
                                        `<data_dir>/murano.db`; keys in `api_keys` are
                                        added to it as admin keys at start

Rate limits are shared through Redis when `redis_url` is set, else kept in-process.
"""

from __future__ import annotations

from collections.abc import Mapping

from murano.accounts.base import Accounts
from murano.accounts.dependencies import Dependencies
from murano.accounts.ledger import SqlAccounts
from murano.accounts.ratelimit import MemoryRateLimiter, RateLimiter
from murano.accounts.redis_limiter import RedisRateLimiter
from murano.accounts.sql import sqlite_url
from murano.accounts.static import OpenAccounts, StaticKeyAccounts
from murano.settings import Settings

__all__ = ["build_accounts", "build_limiter", "database_url"]


def database_url(settings: Settings) -> str:
    return settings.database_url or sqlite_url(settings.data_dir)


def build_limiter(settings: Settings, dependencies: Dependencies | None = None) -> RateLimiter:
    if not settings.redis_url:
        return MemoryRateLimiter()
    return RedisRateLimiter(
        settings.redis_url, dependencies=dependencies, timeout_s=settings.redis_timeout_s
    )


def build_accounts(settings: Settings, *, model_rpm: Mapping[str, int] | None = None) -> Accounts:
    """`model_rpm` maps model ids to their requests-per-minute limit where it is not
    `settings.default_rpm`."""
    if not settings.auth:
        return OpenAccounts()
    if settings.accounts_backend == "static":
        if not settings.api_keys:
            raise ValueError(
                "accounts_backend 'static' needs at least one key in MURANO_API_KEYS "
                "(comma-separated), or turn auth off with --no-auth"
            )
        return StaticKeyAccounts(
            settings.api_keys,
            limiter=build_limiter(
                settings, Dependencies(retry_after_s=settings.outage_retry_after_s)
            ),
            default_rpm=settings.default_rpm,
            model_rpm=model_rpm,
            failure_budget=settings.failure_budget,
            failure_window_s=settings.failure_window_s,
        )
    url = database_url(settings)
    dependencies = Dependencies(retry_after_s=settings.outage_retry_after_s)
    return SqlAccounts(
        url,
        timeout_s=settings.database_timeout_s,
        dependencies=dependencies,
        limiter=build_limiter(settings, dependencies),
        default_rpm=settings.default_rpm,
        model_rpm=model_rpm,
        failure_budget=settings.failure_budget,
        failure_window_s=settings.failure_window_s,
        seed_keys=settings.api_keys,
        public_url=f"http://{settings.host}:{settings.port}",
        # Reservations made before instance tracking (schema 0004) carry no instance: on
        # a shared PostgreSQL, only old ones can safely be taken for a crash's leftovers.
        reclaim_after_s=0.0 if "sqlite" in url.split(":", 1)[0] else 2 * settings.request_timeout_s,
        lease_s=settings.reservation_lease_s,
        outbox_dir=settings.data_dir / "outbox",
    )
