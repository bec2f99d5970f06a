"""Counting requests in fixed time windows, in this process or shared through Redis.

Windows are fixed and aligned to the Unix epoch: the window of a `window_s`-second limit
that contains time t is `[floor(t / window_s) * window_s, ... + window_s)`. Every process
(and Redis, whose clock the shared limiter uses) therefore agrees on the windows without
coordination, and a window's reset time is a plain fact worth a header. The price of
fixed windows is that a client may spend one window's quota at its end and the next at
the start of the next one.

`RateLimiter.hit` is the one primitive: count `cost` against a key's current window if
the total stays within `limit` (or unconditionally when `limit` is None; `cost` 0 only
looks). A hit that would pass the limit counts nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["MemoryRateLimiter", "RateLimiter", "Window", "check_hit"]


@dataclass(frozen=True, slots=True)
class Window:
    """A key's current window after a hit: was it let through, how much of the window
    is used, and when (Unix ms) the window ends and its count starts again from 0."""

    allowed: bool
    used: int
    reset_ms: int


@runtime_checkable
class RateLimiter(Protocol):
    async def hit(self, key: str, cost: int, limit: int | None, window_s: int) -> Window: ...

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the counters can be reached."""

    async def close(self) -> None: ...


class MemoryRateLimiter:
    """`RateLimiter` for one process: one (window, count) pair per key, replaced when a
    new window starts, so memory stays one entry per key. `clock` is for tests."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    async def hit(self, key: str, cost: int, limit: int | None, window_s: int) -> Window:
        check_hit(cost, limit, window_s)
        window_ms = window_s * 1000
        index = int(self._clock() * 1000) // window_ms
        seen, used = self._windows.get(key, (index, 0))
        if seen != index:
            used = 0
        allowed = limit is None or used + cost <= limit
        if allowed:
            used += cost
        self._windows[key] = (index, used)
        return Window(allowed, used, (index + 1) * window_ms)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._windows.clear()


def check_hit(cost: int, limit: int | None, window_s: int) -> None:
    if cost < 0 or window_s < 1 or (limit is not None and limit < 0):
        raise ValueError(f"bad hit: cost={cost}, limit={limit}, window_s={window_s}")
