"""`RateLimiter` in Redis, so that every server process sharing it shares each limit.

A hit is one Lua script, which Redis runs atomically: read the window's counter, add
`cost` if it fits, set the counter to expire just after its window. The window is taken
from Redis's own clock (`TIME`), so processes with drifting clocks still agree. Counter
keys are `<prefix>{<key>}:<window index>`; the braces keep all of a key's windows in one
cluster slot. Needs Redis >= 5 (scripts that write after reading `TIME`).

Every call has a deadline (`timeout_s`) and runs under `Dependencies.guard("redis")`: an
unreachable Redis is `DependencyUnavailable`, so limiting fails closed (503, nothing
admitted) until Redis is back.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis

from murano.accounts.dependencies import Dependencies
from murano.accounts.ratelimit import Window, check_hit

__all__ = ["RedisRateLimiter"]

# KEYS[1]: the counter's base name. ARGV: cost, limit (-1: none), window in ms.
_HIT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local cost = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local window_ms = tonumber(ARGV[3])
local index = math.floor(now_ms / window_ms)
local reset_ms = (index + 1) * window_ms
local key = KEYS[1] .. ':' .. index
local used = tonumber(redis.call('GET', key) or '0')
if limit >= 0 and used + cost > limit then
  return {0, used, reset_ms}
end
if cost > 0 then
  used = redis.call('INCRBY', key, cost)
  redis.call('PEXPIREAT', key, reset_ms + 1000)
end
return {1, used, reset_ms}
"""


class RedisRateLimiter:
    """Shared fixed-window counters. `prefix` namespaces the keys (tests use one each)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "murano:rl:",
        dependencies: Dependencies | None = None,
        timeout_s: float = 2.0,
    ) -> None:
        self._client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._prefix = prefix
        self._script = self._client.register_script(_HIT)
        self.dependencies = dependencies or Dependencies()
        self.dependencies.watch("redis")

    async def hit(self, key: str, cost: int, limit: int | None, window_s: int) -> Window:
        check_hit(cost, limit, window_s)
        name = f"{self._prefix}{{{key}}}"
        args = [cost, -1 if limit is None else limit, window_s * 1000]
        async with self.dependencies.guard("redis"):
            reply: Any = await self._script(keys=[name], args=args)
        allowed, used, reset_ms = (int(value) for value in reply)
        return Window(bool(allowed), used, reset_ms)

    async def ping(self) -> None:
        async with self.dependencies.guard("redis"):
            await self._client.ping()

    async def close(self) -> None:
        await self._client.aclose()
