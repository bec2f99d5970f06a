"""The accounts interface the API talks to: who is calling, may they, and what they owe.

One request goes through it as:

    principal = await accounts.authenticate(bearer_token)      # AuthenticationFailed
    admission = await accounts.admit(principal, charge)        # RateLimited, InsufficientBalance
    ... generate ...
    await accounts.settle(admission, outcome)                  # commit on delivered, else release

`admission.headers` (balance before the request, rate-limit state) go on the response whatever
its outcome. `note_failure` feeds Venice's failed-request budget. Every implementation (the
settings-based one here, the SQL one, the in-memory test twin) keeps these semantics.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol, runtime_checkable

__all__ = [
    "Accounts",
    "Admission",
    "Charge",
    "Outcome",
    "Principal",
]


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. `balance_usd` None means unlimited; `rpm` None means the
    model's default requests-per-minute limit applies."""

    key_id: str
    name: str
    is_admin: bool = False
    balance_usd: Decimal | None = None
    anonymous: bool = False
    rpm: int | None = None


@dataclass(frozen=True, slots=True)
class Charge:
    """What one request will cost if delivered: `images` at `unit_price_usd` each."""

    model_id: str
    images: int
    unit_price_usd: Decimal
    endpoint: str = "image/generate"

    @property
    def total_usd(self) -> Decimal:
        return self.unit_price_usd * self.images


class Outcome(enum.StrEnum):
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"
    CONTENT_VIOLATION = "content_violation"
    TIMEOUT = "timeout"


@dataclass(slots=True)
class Admission:
    """A request let through: its reservation (if any) and the headers to send back."""

    principal: Principal
    charge: Charge
    reservation_id: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    # Set by the payments layer (x402): settles this admission instead of the accounts
    # ledger, and may add headers (PAYMENT-RESPONSE) to `headers` before the response.
    settle_hook: Callable[[Outcome], Awaitable[None]] | None = None


@runtime_checkable
class Accounts(Protocol):
    """Keys, balances and rate limits; see the module docstring for the call order."""

    auth_required: bool
    # The admin key created on first start with an empty store, for the server to print
    # once; None whenever no key was created by this start.
    bootstrap_key: str | None

    async def start(self) -> None:
        """Open connections, migrate, release reservations left by a crash."""

    async def close(self) -> None: ...

    async def authenticate(self, token: str | None) -> Principal:
        """The principal for a bearer token; AuthenticationFailed when it is not valid."""

    async def admit(self, principal: Principal, charge: Charge) -> Admission:
        """Check the rate limit and reserve `charge.total_usd`; raise RateLimited or
        InsufficientBalance (both carrying headers) when the request may not go on, and
        DependencyUnavailable when the database or Redis cannot be reached."""

    async def settle(
        self, admission: Admission, outcome: Outcome, *, timings_ms: dict[str, float] | None = None
    ) -> None:
        """Commit the reservation when `outcome` is DELIVERED, release it otherwise, and
        record usage. Idempotent: a second call for the same admission does nothing. It
        never raises because the database is away: the outcome is kept durably and
        reaches the database when it is back."""

    async def note_failure(self, principal: Principal, model_id: str, status: int) -> None:
        """Count a failed (4xx) request against the caller's failure budget."""
