"""`Accounts` over a key store: `SqlAccounts` (the real one) and `MemoryAccounts` (its
in-memory twin for tests of other layers), which differ only in their `KeyStore`.

A request goes: authenticate (the key exists, is not revoked, has not expired) → the
failed-request budget and the requests-per-minute limit (`_gate`) → reserve
`charge.total_usd` in the store → ... → settle: commit when delivered, release
otherwise. `x-venice-balance-usd` is what the key could spend before the request (its
balance less other requests' reservations); unlimited keys do not get it.

Money is never lost to a fault:

- `settle` writes the outcome to this instance's journal (`outbox`) before telling the
  store, and never raises for an unreachable store: a background task retries what the
  store has not taken until it does. A reservation that may have been made when the store
  went away during `reserve` is journalled as failed, so it is released once it is back.
- Every server start is an instance with a heartbeat, and reservations carry it. At start
  a server replays the journals of dead instances in its data directory (outcomes first)
  and then releases their remaining reservations; every `lease_s / 4` seconds it beats
  and releases the reservations of any instance silent for more than `lease_s`, so no key
  waits for a restart. Reservations made before instances existed (schema 0004) are
  released once older than `reclaim_after_s`.
- An unreachable database or Redis is `DependencyUnavailable` (503 + Retry-After),
  logged once per outage by `Dependencies`. Rate limiting fails closed: without Redis no
  request is admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TypedDict, Unpack

from murano.accounts._gate import RequestGate
from murano.accounts._money import format_usd
from murano.accounts.base import Admission, Charge, Outcome, Principal
from murano.accounts.dependencies import Dependencies
from murano.accounts.management import LimitStatus
from murano.accounts.outbox import FileOutbox, MemoryOutbox, Orphan, Outbox, Settlement
from murano.accounts.ratelimit import MemoryRateLimiter, RateLimiter
from murano.accounts.records import ApiKey, CreatedKey, KeyNotFound, Reservation, UsageRecord
from murano.accounts.sql import SqlStore
from murano.accounts.store import KeyStore, MemoryStore, utcnow
from murano.errors import AuthenticationFailed, DependencyUnavailable, InsufficientBalance

__all__ = ["BALANCE_HEADER", "LedgerAccounts", "LedgerOptions", "MemoryAccounts", "SqlAccounts"]

log = logging.getLogger("murano.accounts")

BALANCE_HEADER = "x-venice-balance-usd"
# The embedded default model, for the curl example printed with the first key.
_EXAMPLE_MODEL = "murano-tiny"
_RETRY_FIRST_S, _RETRY_MAX_S = 0.25, 5.0


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
    lease_s: float
    outbox_dir: Path | None
    dependencies: Dependencies | None
    clock: Callable[[], float]


class LedgerAccounts:
    """Keys, balances and limits kept in `store`; see the module docstring.

    `seed_keys` (from settings) are added as admin keys at start when missing; with
    `bootstrap` and still no key at all, one admin key is created and logged once.
    `public_url` goes into that log line's curl example; `outbox_dir` holds the
    settlement journals (None: kept in memory, not across a crash); `clock` is for tests.
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
        lease_s: float = 60.0,
        outbox_dir: Path | None = None,
        dependencies: Dependencies | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if reclaim_after_s < 0 or lease_s <= 0:
            raise ValueError(
                f"reclaim_after_s must be >= 0 and lease_s > 0, got {reclaim_after_s}, {lease_s}"
            )
        self.store = store
        self.gate = RequestGate(
            limiter or MemoryRateLimiter(clock),
            default_rpm=default_rpm,
            model_rpm=model_rpm,
            failure_budget=failure_budget,
            failure_window_s=failure_window_s,
            clock=clock,
        )
        self.dependencies: Dependencies = (
            dependencies or getattr(store, "dependencies", None) or Dependencies()
        )
        self.instance_id = str(uuid.uuid4())
        self.bootstrap_key: str | None = None
        self._seed_keys = tuple(seed_keys)
        self._bootstrap = bootstrap
        self._public_url = public_url.rstrip("/")
        self._reclaim_after = timedelta(seconds=reclaim_after_s)
        self.lease = timedelta(seconds=lease_s)
        self._outbox_dir = outbox_dir
        self.outbox: Outbox = MemoryOutbox()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._abandoned = False

    async def start(self) -> None:
        await self.store.start()
        orphans: list[Orphan] = []
        if self._outbox_dir is not None:
            orphans = FileOutbox.orphans(self._outbox_dir)
            self.outbox = FileOutbox(self._outbox_dir, self.instance_id)
        await self.store.register_instance(self.instance_id)
        await self._recover(orphans)
        await self._seed()
        if self._bootstrap and await self.store.count_keys() == 0:
            await self._create_bootstrap_key()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._flusher()), loop.create_task(self._upkeep())]

    async def close(self) -> None:
        if self._abandoned:
            return
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(DependencyUnavailable):
            await self._flush()
            await self.store.stop_instance(self.instance_id)
        self.outbox.close()
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
        admission.settled = True
        if admission.reservation_id is not None:
            timings = dict(timings_ms) if timings_ms else None
            await self.settle_reservation(Settlement(admission.reservation_id, outcome, timings))

    async def settle_reservation(self, entry: Settlement) -> None:
        """Journal `entry`, then hand it to the store; an unreachable store leaves it to
        the background retry (it never raises for that)."""
        try:
            await self.outbox.record(entry)
        except OSError:
            log.exception("could not journal reservation %s; kept in memory", entry.reservation_id)
        await self._deliver(entry)

    async def abandon(self) -> None:
        """Stop as a killed process does (for tests): background tasks end, nothing is
        flushed or marked stopped, the journal stays behind unlocked."""
        for task in self._tasks:
            task.cancel()
        self._abandoned = True
        abandon = getattr(self.outbox, "abandon", None)
        if abandon is not None:
            abandon()
        await self.store.close()

    async def sweep(self) -> int:
        """Beat this instance's heartbeat and release the reservations of silent ones;
        the number released. Runs every `lease_s / 4` seconds on its own."""
        await self.store.heartbeat(self.instance_id)
        released = await self._reclaim_stale()
        if released:
            log.warning("released %d reservation(s) of silent servers", released)
        return released

    async def note_failure(self, principal: Principal, model_id: str, status: int) -> None:
        if not principal.anonymous:
            # The budget is advice; an outage already answers every request with 503.
            with contextlib.suppress(DependencyUnavailable):
                await self.gate.note_failure(principal.key_id, status)

    async def check_dependencies(self) -> dict[str, bool]:
        """Ask each service the accounts live in (the database, Redis) once; whether
        each answered (for /readyz). In-memory parts are not listed."""
        states: dict[str, bool] = {}
        for name, part in (("database", self.store), ("redis", self.gate.limiter)):
            watched: Dependencies | None = getattr(part, "dependencies", None)
            if watched is None or name not in watched.snapshot():
                continue
            try:
                await part.ping()
            except DependencyUnavailable:
                states[name] = False
            else:
                states[name] = True
        return states

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
        when the reservation has no id). KeyNotFound when it is gone or revoked;
        DependencyUnavailable when the store is away, after journalling a release of the
        reservation in case it was made before the connection was lost. The x402 wallet
        ledger draws on wallets through this too."""
        reservation_id = str(uuid.uuid4())
        try:
            return await self.store.reserve(
                key_id,
                charge.model_id,
                charge.images,
                charge.total_usd,
                reservation_id=reservation_id,
                instance_id=self.instance_id,
            )
        except DependencyUnavailable:
            await self.settle_reservation(Settlement(reservation_id, Outcome.FAILED))
            raise

    # Durability: the journal, recovery at start, and the two background tasks.

    async def _deliver(self, entry: Settlement) -> bool:
        try:
            settled = await self.store.settle(
                entry.reservation_id, Outcome(entry.outcome), entry.timings_ms
            )
        except DependencyUnavailable:
            self._wake.set()
            return False
        if not settled:
            log.debug("reservation %s was already settled", entry.reservation_id)
        await self.outbox.done(entry.reservation_id)
        return True

    async def _flush(self) -> None:
        """Hand every journalled settlement to the store; DependencyUnavailable when it
        is away (what is left stays journalled)."""
        for entry in self.outbox.pending():
            if not await self._deliver(entry):
                raise self.dependencies.unavailable("database")

    async def _flusher(self) -> None:
        delay = _RETRY_FIRST_S
        while True:
            if not self.outbox.pending():
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._flush()
            except DependencyUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX_S)
                continue
            except Exception:
                log.exception("settling journalled reservations failed; retrying")
                await asyncio.sleep(_RETRY_MAX_S)
                continue
            delay = _RETRY_FIRST_S

    async def _recover(self, orphans: list[Orphan]) -> None:
        """Settle what dead instances journalled, then release what they still held."""
        for orphan in orphans:
            for entry in orphan.entries:
                await self.outbox.record(entry)
        await self._flush()
        dead = [orphan.instance_id for orphan in orphans]
        released = await self.store.reclaim(
            instance_ids=dead, reason="its server stopped without settling it"
        )
        for orphan in orphans:
            await self.store.stop_instance(orphan.instance_id)
            orphan.discard()
        released += await self._reclaim_stale()
        if orphans:
            log.warning(
                "recovered %d stopped server instance(s): %d journalled settlement(s) replayed",
                len(orphans),
                sum(len(orphan.entries) for orphan in orphans),
            )
        if released:
            log.warning("released %d reservation(s) held by stopped servers", released)

    async def _reclaim_stale(self) -> int:
        now = utcnow()
        released = await self.store.reclaim(
            lease_cutoff=now - self.lease,
            exclude=self.instance_id,
            reason=f"its server sent no heartbeat for {self.lease.total_seconds():g} s",
        )
        released += await self.store.reclaim(
            legacy_before=now - self._reclaim_after,
            reason="left pending by a server older than instance tracking",
        )
        return released

    async def _upkeep(self) -> None:
        period = max(0.2, self.lease.total_seconds() / 4)
        while True:
            await asyncio.sleep(period)
            try:
                await self.sweep()
            except DependencyUnavailable:
                continue
            except Exception:
                log.exception("heartbeat or reservation sweep failed")

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
        self,
        database_url: str,
        *,
        schema: str | None = None,
        timeout_s: float = 5.0,
        **options: Unpack[LedgerOptions],
    ) -> None:
        dependencies = options.get("dependencies") or Dependencies()
        options["dependencies"] = dependencies
        store = SqlStore(
            database_url, schema=schema, dependencies=dependencies, timeout_s=timeout_s
        )
        super().__init__(store, **options)


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
