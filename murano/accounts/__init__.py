"""API keys, balances and rate limits, as Venice enforces them.

    Accounts (base.py)             the protocol the API layer calls
    ├── SqlAccounts                keys and ledger in SQLite or PostgreSQL (ledger.py, sql.py)
    ├── MemoryAccounts             the same in memory, for tests (ledger.py, store.py)
    ├── StaticKeyAccounts          keys from settings, unlimited (static.py)
    └── OpenAccounts               --no-auth: everyone is anonymous (static.py)

    RateLimiter (ratelimit.py)     fixed-window counters: MemoryRateLimiter, RedisRateLimiter
    KeyManager, LimitReporter      what the admin API and CLI use (management.py)
    WalletStore                    x402 wallets as account rows, in SqlStore and MemoryStore
                                   (store.py); `murano.payments` spends from them
    FileOutbox, MemoryOutbox       each instance's journal of settlements, replayed until the
                                   database takes them (outbox.py)
    Dependencies                   whether the database and Redis answer; outages become
                                   DependencyUnavailable, logged once (dependencies.py)

`build_accounts(settings)` picks one; nothing here touches a database at import.
"""

from murano.accounts._money import format_usd
from murano.accounts.base import Accounts, Admission, Charge, Outcome, Principal
from murano.accounts.factory import build_accounts, build_limiter
from murano.accounts.ledger import BALANCE_HEADER, LedgerAccounts, MemoryAccounts, SqlAccounts
from murano.accounts.management import KeyManager, LimitReporter, LimitStatus, ModelLimit
from murano.accounts.ratelimit import MemoryRateLimiter, RateLimiter, Window
from murano.accounts.records import (
    AmbiguousKey,
    ApiKey,
    CreatedKey,
    KeyNotFound,
    UsageRecord,
)
from murano.accounts.redis_limiter import RedisRateLimiter
from murano.accounts.sql import SqlStore
from murano.accounts.static import OpenAccounts, StaticKeyAccounts
from murano.accounts.store import KeyStore, MemoryStore, WalletStore

__all__ = [
    "BALANCE_HEADER",
    "Accounts",
    "Admission",
    "AmbiguousKey",
    "ApiKey",
    "Charge",
    "CreatedKey",
    "KeyManager",
    "KeyNotFound",
    "KeyStore",
    "LedgerAccounts",
    "LimitReporter",
    "LimitStatus",
    "MemoryAccounts",
    "MemoryRateLimiter",
    "MemoryStore",
    "ModelLimit",
    "OpenAccounts",
    "Outcome",
    "Principal",
    "RateLimiter",
    "RedisRateLimiter",
    "SqlAccounts",
    "SqlStore",
    "StaticKeyAccounts",
    "UsageRecord",
    "WalletStore",
    "Window",
    "build_accounts",
    "build_limiter",
    "format_usd",
]
