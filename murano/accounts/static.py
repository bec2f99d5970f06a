"""The two accounts without a store.

- `StaticKeyAccounts`: the keys listed in settings (`MURANO_API_KEYS`), each an admin
  with an unlimited balance, under the same rate limits and failure budget as stored
  keys. Nothing is reserved or recorded; there is no key administration.
- `OpenAccounts` (`--no-auth`): everyone is the same anonymous, unlimited caller. No
  rate limits either: without identities, one shared limit would only throttle the
  operator's own clients.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence

from murano.accounts._gate import RequestGate
from murano.accounts._keygen import hash_key, verify
from murano.accounts.base import Admission, Charge, Outcome, Principal
from murano.accounts.dependencies import Dependencies
from murano.accounts.management import LimitStatus
from murano.accounts.ratelimit import MemoryRateLimiter, RateLimiter
from murano.accounts.redis_limiter import RedisRateLimiter
from murano.errors import AuthenticationFailed, DependencyUnavailable

__all__ = ["ANONYMOUS", "OpenAccounts", "StaticKeyAccounts"]

ANONYMOUS = Principal(key_id="anonymous", name="anonymous", anonymous=True)


class StaticKeyAccounts:
    auth_required: bool = True

    def __init__(
        self,
        keys: Sequence[str],
        *,
        limiter: RateLimiter | None = None,
        default_rpm: int = 20,
        model_rpm: Mapping[str, int] | None = None,
        failure_budget: int = 20,
        failure_window_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys or any(not key for key in keys):
            raise ValueError("StaticKeyAccounts needs at least one key, and no empty one")
        self.bootstrap_key: str | None = None
        # Principals are named by a digest, never by the key itself.
        self._principals = {
            hash_key(key): Principal(
                key_id=f"static-{hash_key(key)[:12]}", name=f"settings key {n}", is_admin=True
            )
            for n, key in enumerate(keys, start=1)
        }
        self.gate = RequestGate(
            limiter or MemoryRateLimiter(clock),
            default_rpm=default_rpm,
            model_rpm=model_rpm,
            failure_budget=failure_budget,
            failure_window_s=failure_window_s,
            clock=clock,
        )
        # Redis's reachability, for /readyz and the metrics (None: limits kept in memory).
        self.dependencies: Dependencies | None = getattr(self.gate.limiter, "dependencies", None)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.gate.limiter.close()

    async def authenticate(self, token: str | None) -> Principal:
        found = None
        # Compare with every key, so the time taken says nothing about which matched.
        for digest, principal in self._principals.items():
            if token and verify(token, digest):
                found = principal
        if found is None:
            raise AuthenticationFailed()
        return found

    async def admit(self, principal: Principal, charge: Charge) -> Admission:
        headers = await self.gate.admit(
            principal.key_id, principal.rpm, charge.model_id, charge.images
        )
        return Admission(principal, charge, headers=headers)

    async def settle(
        self, admission: Admission, outcome: Outcome, *, timings_ms: dict[str, float] | None = None
    ) -> None:
        admission.settled = True

    async def note_failure(self, principal: Principal, model_id: str, status: int) -> None:
        with contextlib.suppress(DependencyUnavailable):
            await self.gate.note_failure(principal.key_id, status)

    async def check_dependencies(self) -> dict[str, bool]:
        """Whether Redis answers, when limits are kept there (for /readyz)."""
        try:
            await self.gate.limiter.ping()
        except DependencyUnavailable:
            return {"redis": False}
        return {"redis": True} if isinstance(self.gate.limiter, RedisRateLimiter) else {}

    async def limit_status(
        self, principal: Principal, model_ids: Sequence[str] = ()
    ) -> LimitStatus:
        return LimitStatus(
            balance_usd=None,
            expires_at=None,
            failures_exceeded=await self.gate.failures_exceeded(principal.key_id) is not None,
            next_window_ms=self.gate.next_window_ms(),
            limits=await self.gate.limits(principal.key_id, principal.rpm, model_ids),
        )


class OpenAccounts:
    auth_required: bool = False

    def __init__(self) -> None:
        self.bootstrap_key: str | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def authenticate(self, token: str | None) -> Principal:
        return ANONYMOUS

    async def admit(self, principal: Principal, charge: Charge) -> Admission:
        return Admission(principal, charge)

    async def settle(
        self, admission: Admission, outcome: Outcome, *, timings_ms: dict[str, float] | None = None
    ) -> None:
        admission.settled = True

    async def note_failure(self, principal: Principal, model_id: str, status: int) -> None:
        return None

    async def limit_status(
        self, principal: Principal, model_ids: Sequence[str] = ()
    ) -> LimitStatus:
        window_ms = 60_000
        return LimitStatus(
            balance_usd=None,
            expires_at=None,
            failures_exceeded=False,
            next_window_ms=(int(time.time() * 1000) // window_ms + 1) * window_ms,
            limits=[],
        )
