"""Venice's two request limits on top of a `RateLimiter`, and the headers they send.

- Requests per minute, per key and model, each image counting as one request. The limit
  is the key's own `rpm` if set, else the model's configured one, else `default_rpm`.
  Refused → `RateLimited("Rate limit exceeded")`.
- The failed-request budget, per key: 4xx responses other than 429 are counted in
  windows of `failure_window_s`; once a window holds more than `failure_budget` of them,
  every request of that key is refused with 429 until the window ends.

Headers (on every admission and on both 429s): `x-ratelimit-limit-requests`,
`x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests` (Unix time in ms at which
the window ends) and `x-ratelimit-type: api_key`; a 429 adds `Retry-After` (seconds), and
the failure 429 adds `x-ratelimit-remaining` / `x-ratelimit-resets` for the budget.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping

from murano.accounts.management import ModelLimit
from murano.accounts.ratelimit import RateLimiter, Window
from murano.errors import RateLimited

__all__ = ["RPM_WINDOW_S", "RequestGate"]

RPM_WINDOW_S = 60


class RequestGate:
    def __init__(
        self,
        limiter: RateLimiter,
        *,
        default_rpm: int,
        model_rpm: Mapping[str, int] | None = None,
        failure_budget: int,
        failure_window_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        limits = {"default_rpm": default_rpm}
        limits |= {f"the rpm of {m}": r for m, r in (model_rpm or {}).items()}
        for what, value in limits.items():
            if value < 1:
                raise ValueError(f"{what} must be >= 1, got {value}")
        if failure_budget < 0 or failure_window_s < 1:
            raise ValueError(
                f"failure_budget must be >= 0 and failure_window_s >= 1, "
                f"got {failure_budget} and {failure_window_s}"
            )
        self.limiter = limiter
        self.default_rpm = default_rpm
        self.model_rpm = dict(model_rpm or {})
        self.failure_budget = failure_budget
        self.failure_window_s = failure_window_s
        self.models_seen: set[str] = set()
        self._clock = clock

    def rpm_for(self, key_rpm: int | None, model_id: str) -> int:
        return key_rpm or self.model_rpm.get(model_id, self.default_rpm)

    async def admit(
        self,
        key_id: str,
        key_rpm: int | None,
        model_id: str,
        images: int,
        extra_headers: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """The rate-limit headers for a request let through; RateLimited otherwise."""
        extra = dict(extra_headers or {})
        await self._check_failures(key_id, key_rpm, model_id, extra)
        self.models_seen.add(model_id)
        limit = self.rpm_for(key_rpm, model_id)
        window = await self.limiter.hit(_rpm_key(key_id, model_id), images, limit, RPM_WINDOW_S)
        headers = _rpm_headers(limit, window) | extra
        if not window.allowed:
            raise RateLimited(headers=headers | self._retry_after(window.reset_ms))
        return headers

    async def note_failure(self, key_id: str, status: int) -> None:
        if 400 <= status < 500 and status != 429:
            await self.limiter.hit(_failure_key(key_id), 1, None, self.failure_window_s)

    async def failures_exceeded(self, key_id: str) -> Window | None:
        """The failure window when the budget is spent, else None."""
        window = await self.limiter.hit(_failure_key(key_id), 0, None, self.failure_window_s)
        return window if window.used > self.failure_budget else None

    async def limits(
        self, key_id: str, key_rpm: int | None, model_ids: Iterable[str]
    ) -> list[ModelLimit]:
        models = sorted(set(model_ids) | self.model_rpm.keys() | self.models_seen)
        result = []
        for model_id in models:
            limit = self.rpm_for(key_rpm, model_id)
            window = await self.limiter.hit(_rpm_key(key_id, model_id), 0, None, RPM_WINDOW_S)
            result.append(ModelLimit(model_id, limit, max(0, limit - window.used), window.reset_ms))
        return result

    async def _check_failures(
        self, key_id: str, key_rpm: int | None, model_id: str, extra: dict[str, str]
    ) -> None:
        failures = await self.failures_exceeded(key_id)
        if failures is None:
            return
        limit = self.rpm_for(key_rpm, model_id)
        window = await self.limiter.hit(_rpm_key(key_id, model_id), 0, None, RPM_WINDOW_S)
        retry_after = self._retry_after(failures.reset_ms)
        headers = _rpm_headers(limit, window) | extra | retry_after
        headers |= {"x-ratelimit-remaining": "0", "x-ratelimit-resets": str(failures.reset_ms)}
        # The wait named is the one Retry-After gives: what is left of the failure window.
        raise RateLimited(
            f"Too many failed attempts (> {self.failure_budget}) resulting in a non-success "
            f"status code. Please wait {retry_after['Retry-After']}s and try again.",
            headers=headers,
        )

    def next_window_ms(self) -> int:
        """When the next requests-per-minute window begins (Unix ms)."""
        window_ms = RPM_WINDOW_S * 1000
        return (int(self._clock() * 1000) // window_ms + 1) * window_ms

    def _retry_after(self, reset_ms: int) -> dict[str, str]:
        seconds = math.ceil((reset_ms - self._clock() * 1000) / 1000)
        return {"Retry-After": str(max(1, seconds))}


def _rpm_key(key_id: str, model_id: str) -> str:
    return f"rpm:{key_id}:{model_id}"


def _failure_key(key_id: str) -> str:
    return f"fail:{key_id}"


def _rpm_headers(limit: int, window: Window) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(0, limit - window.used)),
        "x-ratelimit-reset-requests": str(window.reset_ms),
        "x-ratelimit-type": "api_key",
    }
