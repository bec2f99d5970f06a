"""The services the accounts live in (the database, Redis), whether each can be reached,
and how their failures become one domain error.

`Dependencies` is told of every call's fate by the store and the limiter: `down()` when a
call failed for want of the service, `up()` when one succeeded. It logs each outage once,
when it begins and when it ends (never once per request), and counts outages for the
`murano_dependency_outages` metric. `unreachable()` says whether an exception means the
service is away (a refused or dropped connection, a timeout) rather than a bug or a bad
value; `guard()` turns those into `DependencyUnavailable`, which the API answers with 503
and `Retry-After`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import exc as sa_exc

from murano.errors import DependencyUnavailable

__all__ = ["Dependencies", "DependencyState", "unreachable"]

log = logging.getLogger("murano.accounts")

# asyncpg and redis are imported lazily by their users; match their errors by module.
_UNREACHABLE_MODULES = ("asyncpg.exceptions", "redis.exceptions")
_UNREACHABLE_NAMES = frozenset(
    {
        "ConnectionDoesNotExistError",
        "ConnectionFailureError",
        "CannotConnectNowError",
        "InterfaceError",
        "InternalClientError",
        "PostgresConnectionError",
        "TooManyConnectionsError",
        "ConnectionError",
        "TimeoutError",
        "BusyLoadingError",
    }
)


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says a service could not be reached (or answered too late)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return True
        return exc.orig is not None and unreachable(exc.orig)
    if isinstance(exc, sa_exc.TimeoutError | OSError | TimeoutError | EOFError):
        return True
    kind = type(exc)
    if any(
        base.__module__.startswith(_UNREACHABLE_MODULES) and base.__name__ in _UNREACHABLE_NAMES
        for base in kind.__mro__
    ):
        return True
    # SQLAlchemy's asyncpg adapter raises its own `Error` for a connection lost while it is
    # being made, with asyncpg's error as the cause.
    cause = exc.__cause__
    return cause is not None and cause is not exc and unreachable(cause)


@dataclass(slots=True)
class DependencyState:
    up: bool = True
    outages: int = 0
    since: float = 0.0
    reason: str = ""


class Dependencies:
    """Reachability of each named service; see the module docstring."""

    def __init__(self, retry_after_s: int = 5) -> None:
        self.retry_after_s = retry_after_s
        self._states: dict[str, DependencyState] = {}

    def watch(self, name: str) -> None:
        """List `name` (as up) before its first call, so /readyz and metrics show it."""
        self._states.setdefault(name, DependencyState())

    def down(self, name: str, exc: BaseException) -> None:
        state = self._states.setdefault(name, DependencyState())
        if not state.up:
            return
        state.up, state.since = False, time.monotonic()
        state.outages += 1
        state.reason = f"{type(exc).__name__}: {exc}"[:300]
        log.error(
            "%s unreachable (%s): requests that need it get 503 until it is back",
            name,
            state.reason,
        )

    def up(self, name: str) -> None:
        state = self._states.get(name)
        if state is None or state.up:
            return
        log.warning("%s reachable again after %.1f s", name, time.monotonic() - state.since)
        state.up, state.reason = True, ""

    def is_up(self, name: str) -> bool:
        state = self._states.get(name)
        return state is None or state.up

    def snapshot(self) -> dict[str, DependencyState]:
        """Each service's state (copies)."""
        return {
            name: DependencyState(s.up, s.outages, s.since, s.reason)
            for name, s in self._states.items()
        }

    def unavailable(self, name: str) -> DependencyUnavailable:
        return DependencyUnavailable(name, retry_after_s=self.retry_after_s)

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Run a call to `name`: its unreachability becomes DependencyUnavailable (and an
        outage), its success ends any outage."""
        try:
            yield
        except DependencyUnavailable:
            raise
        except Exception as exc:
            if not unreachable(exc):
                raise
            self.down(name, exc)
            raise self.unavailable(name) from exc
        self.up(name)
