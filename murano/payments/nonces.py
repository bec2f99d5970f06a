"""Single use of payments and sign-ins: a payment authorization (payer, token, nonce) or a
Sign-In-With-X nonce may be presented once.

A key is *claimed* before the payment is checked, so two concurrent requests carrying the
same payment cannot both go on; it is released only when nothing was settled (a failed
check, or generation that did not deliver), so the payer may present the same signed
payment again. A claimed key is kept until `ttl_s` passes: by then the authorization has
expired and the facilitator refuses it anyway, so the store stays bounded.

`MemoryNonces` is per process. Several server processes must share `RedisNonces`
(`SET NX EX`), or one payment could be spent once per process.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import redis.asyncio as redis

__all__ = ["MemoryNonces", "Nonces", "RedisNonces"]


@runtime_checkable
class Nonces(Protocol):
    async def claim(self, key: str, ttl_s: float) -> bool:
        """True when `key` was free and is now held for `ttl_s` seconds; False when it is
        already held (a replay, or the same payment in flight)."""

    async def release(self, key: str) -> None:
        """Free `key` again (idempotent)."""

    async def close(self) -> None: ...


class MemoryNonces:
    """In-process store; expired keys are dropped as new ones are claimed."""

    def __init__(self) -> None:
        self._held: dict[str, float] = {}

    async def claim(self, key: str, ttl_s: float) -> bool:
        now = time.monotonic()
        self._prune(now)
        if key in self._held:
            return False
        self._held[key] = now + max(ttl_s, 1.0)
        return True

    async def release(self, key: str) -> None:
        self._held.pop(key, None)

    async def close(self) -> None:
        self._held.clear()

    def __len__(self) -> int:
        return len(self._held)

    def _prune(self, now: float) -> None:
        expired = [key for key, until in self._held.items() if until <= now]
        for key in expired:
            del self._held[key]


class RedisNonces:
    """Shared store for several processes: one `SET key 1 NX EX ttl` per claim."""

    def __init__(self, url: str, *, prefix: str = "murano:x402:nonce:") -> None:
        self._client: redis.Redis = redis.Redis.from_url(url)
        self._prefix = prefix

    async def claim(self, key: str, ttl_s: float) -> bool:
        ttl = max(int(ttl_s + 0.999), 1)
        return bool(await self._client.set(self._prefix + key, b"1", nx=True, ex=ttl))

    async def release(self, key: str) -> None:
        await self._client.delete(self._prefix + key)

    async def close(self) -> None:
        await self._client.aclose()
