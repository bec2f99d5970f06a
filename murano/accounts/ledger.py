"""`Accounts` over a key store: `SqlAccounts` (the real one) and `MemoryAccounts` (its
in-memory twin for tests of other layers), which differ only in their `KeyStore`.

A request goes: authenticate (the key exists, is not revoked, has not expired) → the
failed-request budget and the requests-per-minute limit (`_gate`) → reserve
`charge.total_usd` in the store → ... → settle: commit when delivered, release
otherwise. `x-venice-balance-usd` is what the key could spend before the request (its
balance less other requests' reservations); unlimited keys do not get it.

At start, reservations still pending from an earlier run (a crash) are released:
all of them by default, or, with `reclaim_after_s` > 0 (several servers sharing one
PostgreSQL), only those older than that; a key whose balance is short then also reclaims
its own reservations older than that before refusing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TypedDict, Unpack

from murano.accounts._gate import RequestGate
from murano.accounts._money import format_usd
from murano.accounts.base import Admission, Charge, Outcome, Principal
from murano.accounts.management import LimitStatus
from murano.accounts.ratelimit import MemoryRateLimiter, RateLimiter
from murano.accounts.records import ApiKey, CreatedKey, KeyNotFound, Reservation, UsageRecord
from murano.accounts.sql import SqlStore
from murano.accounts.store import KeyStore, MemoryStore, utcnow
from murano.errors import AuthenticationFailed, InsufficientBalance

__all__ = ["BALANCE_HEADER", "LedgerAccounts", "LedgerOptions", "MemoryAccounts", "SqlAccounts"]

log = logging.getLogger("murano.accounts")

BALANCE_HEADER = "x-venice-balance-usd"
# The embedded default model, for the curl example printed with the first key.
_EXAMPLE_MODEL = "murano-tiny"


class LedgerOptions(TypedDict, total=False):
    """`LedgerAccounts`' keyword arguments, for the classes that pass them on."""

    limiter: RateLimiter | None
    default_rpm: int
    model_rpm: Mapping[str, int] | None
    failure_budget: int
    failure_window_s: int
    seed_keys: Sequence[str]
    bootstrap: bool
    public_url: str
    reclaim_after_s: float
    clock: Callable[[], float]


class LedgerAccounts:
    """Keys, balances and limits kept in `store`; see the module docstring.

    `seed_keys` (from settings) are added as admin keys at start when missing; with
    `bootstrap` and still no key at all, one admin key is created and logged once.
    `public_url` goes into that log line's curl example; `clock` is for tests.
    """

    auth_required: bool = True

    def __init__(
        self,
        store: KeyStore,
        *,
        limiter: RateLimiter | None = None,
        default_rpm: int = 20,
        model_rpm: Mapping[str, int] | None = None,
        failure_budget: int = 20,
        failure_window_s: int = 30,
        seed_keys: Sequence[str] = (),
        bootstrap: bool = True,
        public_url: str = "http://127.0.0.1:8000",
        reclaim_after_s: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if reclaim_after_s < 0:
            raise ValueError(f"reclaim_after_s must be >= 0, got {reclaim_after_s}")
        self.store = store
        self.gate = RequestGate(
            limiter or MemoryRateLimiter(clock),
            default_rpm=default_rpm,
            model_rpm=model_rpm,
            failure_budget=failure_budget,
            failure_window_s=failure_window_s,
            clock=clock,
        )
        self.bootstrap_key: str | None = None
        self._seed_keys = tuple(seed_keys)
        self._bootstrap = bootstrap
        self._public_url = public_url.rstrip("/")
        self._reclaim_after = timedelta(seconds=reclaim_after_s)

    async def start(self) -> None:
        await self.store.start()
        released = await self.store.release_pending(older_than=self._reclaim_cutoff())
        if released:
            log.warning("released %d reservation(s) left pending by an earlier run", released)
        await self._seed()
        if self._bootstrap and await self.store.count_keys() == 0:
            await self._create_bootstrap_key()

    async def close(self) -> None:
        await self.store.close()
        await self.gate.limiter.close()

    async def authenticate(self, token: str | None) -> Principal:
        key = await self.store.find_by_secret(token) if token else None
        if key is None or key.state(utcnow()) != "active":
            raise AuthenticationFailed()
        return Principal(
            key_id=key.id,
            name=key.name,
            is_admin=key.is_admin,
            balance_usd=key.available_usd,
            rpm=key.rpm,
        )

    async def admit(self, principal: Principal, charge: Charge) -> Admission:
        _check_charge(charge)
        balance = {} if principal.balance_usd is None else _balance(principal.balance_usd)
        headers = await self.gate.admit(
            principal.key_id, principal.rpm, charge.model_id, charge.images, balance
        )
        try:
            reservation = await self.reserve(principal.key_id, charge)
        except KeyNotFound:
            # Revoked between authenticate and admit.
            raise AuthenticationFailed() from None
        if reservation.available_usd is not None:
            headers |= _balance(reservation.available_usd)
        if reservation.id is None:
            raise InsufficientBalance(headers=headers)
        return Admission(principal, charge, reservation_id=reservation.id, headers=headers)

    async def settle(
        self, admission: Admission, outcome: Outcome, *, timings_ms: dict[str, float] | None = None
    ) -> None:
        if admission.settled:
            return
        if admission.reservation_id is not None:
            settled = await self.store.settle(admission.reservation_id, outcome, timings_ms)
            if not settled:
                log.warning(
                    "reservation %s was already settled or reclaimed", admission.reservation_id
                )
        admission.settled = True

    async def note_failure(self, principal: Principal, model_id: str, status: int) -> None:
        if not principal.anonymous:
            await self.gate.note_failure(principal.key_id, status)

    async def limit_status(
        self, principal: Principal, model_ids: Sequence[str] = ()
    ) -> LimitStatus:
        try:
            key = await self.store.get_key(principal.key_id)
        except KeyNotFound:
            raise AuthenticationFailed() from None
        return LimitStatus(
            balance_usd=key.available_usd,
            expires_at=key.expires_at,
            failures_exceeded=await self.gate.failures_exceeded(key.id) is not None,
            next_window_ms=self.gate.next_window_ms(),
            limits=await self.gate.limits(key.id, key.rpm, model_ids),
        )

    # Key administration (`KeyManager`), for the admin API.

    async def create_key(
        self,
        *,
        name: str,
        is_admin: bool = False,
        balance_usd: Decimal | None = None,
        rpm: int | None = None,
        expires_at: datetime | None = None,
    ) -> CreatedKey:
        return await self.store.create_key(
            name=name, is_admin=is_admin, balance_usd=balance_usd, rpm=rpm, expires_at=expires_at
        )

    async def get_key(self, ref: str) -> ApiKey:
        return await self.store.get_key(ref)

    async def list_keys(self) -> list[ApiKey]:
        return await self.store.list_keys()

    async def revoke_key(self, ref: str) -> ApiKey:
        return await self.store.revoke_key(ref)

    async def top_up(self, ref: str, usd: Decimal) -> ApiKey:
        return await self.store.top_up(ref, usd)

    async def list_usage(self, *, key_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        return await self.store.list_usage(key_id=key_id, limit=limit)

    async def reserve(self, key_id: str, charge: Charge) -> Reservation:
        """Hold `charge.total_usd` of account `key_id` in the store (the balance is short
        when the reservation has no id), reclaiming its own stale reservations first if
        that is what stands in the way. KeyNotFound when it is gone or revoked. The x402
        wallet ledger draws on wallets through this too."""
        args = (key_id, charge.model_id, charge.images, charge.total_usd)
        reservation = await self.store.reserve(*args)
        if reservation.id is None and self._reclaim_after:
            cutoff = self._reclaim_cutoff()
            if await self.store.release_pending(older_than=cutoff, key_id=key_id):
                reservation = await self.store.reserve(*args)
        return reservation

    def _reclaim_cutoff(self) -> datetime:
        return utcnow() - self._reclaim_after

    async def _seed(self) -> None:
        added = 0
        for number, secret in enumerate(self._seed_keys, start=1):
            if await self.store.find_by_secret(secret) is None:
                await self.store.create_key(
                    name=f"settings key {number}", is_admin=True, secret=secret
                )
                added += 1
        if added:
            log.info("added %d admin key(s) from settings (MURANO_API_KEYS)", added)

    async def _create_bootstrap_key(self) -> None:
        created = await self.store.create_key(name="bootstrap admin", is_admin=True)
        self.bootstrap_key = created.secret
        # The one place a key is ever logged: it exists nowhere else yet.
        log.warning(
            "No API keys yet, so an admin key was created. It is shown only this once; "
            'store it now:\n\n    %s\n\nTry it:\n\n    curl -H "Authorization: Bearer %s" '
            "%s/api/v1/image/generate -H 'Content-Type: application/json' "
            '-d \'{"model": "%s", "prompt": "a lighthouse at dusk"}\'\n\n'
            "Create more keys with `murano keys create --name NAME`.",
            created.secret,
            created.secret,
            self._public_url,
            _EXAMPLE_MODEL,
        )


class SqlAccounts(LedgerAccounts):
    """Accounts in SQLite (`sqlite+aiosqlite:///path`) or PostgreSQL (`postgresql://...`)."""

    store: SqlStore

    def __init__(
        self, database_url: str, *, schema: str | None = None, **options: Unpack[LedgerOptions]
    ) -> None:
        super().__init__(SqlStore(database_url, schema=schema), **options)


class MemoryAccounts(LedgerAccounts):
    """`SqlAccounts`' twin in memory, for tests of other layers. No bootstrap key unless
    asked: tests create the keys they need with `create_key`."""

    def __init__(self, **options: Unpack[LedgerOptions]) -> None:
        options.setdefault("bootstrap", False)
        super().__init__(MemoryStore(), **options)


def _check_charge(charge: Charge) -> None:
    if charge.images < 1 or not charge.unit_price_usd.is_finite() or charge.unit_price_usd < 0:
        raise ValueError(
            f"a charge needs images >= 1 and a finite unit price >= 0, got "
            f"{charge.images} x {charge.unit_price_usd}"
        )


def _balance(usd: Decimal) -> dict[str, str]:
    return {BALANCE_HEADER: format_usd(usd)}
