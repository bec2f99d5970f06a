"""What the admin API and the CLI need beyond the request path of `Accounts`.

- `LimitReporter`: the caller's balance and rate limits (Venice's
  `GET /api_keys/rate_limits`); every accounts implementation has it.
- `KeyManager`: creating, listing, revoking and topping up keys, and reading usage;
  only implementations with a key store have it (`SqlAccounts`, `MemoryAccounts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from murano.accounts.base import Principal
from murano.accounts.records import ApiKey, CreatedKey, UsageRecord

__all__ = ["KeyManager", "LimitReporter", "LimitStatus", "ModelLimit"]


@dataclass(frozen=True, slots=True)
class ModelLimit:
    """A key's requests-per-minute limit on one model and the state of its window."""

    model_id: str
    rpm: int
    remaining: int
    reset_ms: int


@dataclass(frozen=True, slots=True)
class LimitStatus:
    """A caller's standing: balance (None: unlimited), expiry, whether the failed-request
    budget is spent, when the next rate-limit window begins, and per-model limits."""

    balance_usd: Decimal | None
    expires_at: datetime | None
    failures_exceeded: bool
    next_window_ms: int
    limits: list[ModelLimit]

    @property
    def access_permitted(self) -> bool:
        funded = self.balance_usd is None or self.balance_usd > 0
        return funded and not self.failures_exceeded


@runtime_checkable
class LimitReporter(Protocol):
    async def limit_status(
        self, principal: Principal, model_ids: Sequence[str] = ()
    ) -> LimitStatus:
        """Limits for `model_ids`, every model with a configured limit, and every model
        this process has admitted a request for."""


@runtime_checkable
class KeyManager(Protocol):
    """Key administration. `ref` is a key's id or its prefix (`mur_AbCd1234`)."""

    async def create_key(
        self,
        *,
        name: str,
        is_admin: bool = False,
        balance_usd: Decimal | None = None,
        rpm: int | None = None,
        expires_at: datetime | None = None,
    ) -> CreatedKey: ...

    async def get_key(self, ref: str) -> ApiKey: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def revoke_key(self, ref: str) -> ApiKey: ...

    async def top_up(self, ref: str, usd: Decimal) -> ApiKey: ...

    async def list_usage(
        self, *, key_id: str | None = None, limit: int = 100
    ) -> list[UsageRecord]: ...
