"""The key store: keys, balances and the reserve → commit | release ledger.

`KeyStore` is what the accounts logic (`murano.accounts.ledger`) and the CLI need from a
database; `SqlStore` (`murano.accounts.sql`) is the real one and `MemoryStore` below its
in-memory twin, with the same semantics:

- a reservation holds `amount` of the key's balance (`reserved += amount`) only if
  `balance - reserved >= amount`, atomically, so concurrent requests never overspend;
- settling moves it from `pending` to `committed` (balance decreases) or `released`
  exactly once; a second settle is a no-op that returns False;
- unlimited keys (balance None) reserve too, so every request has one settle and one
  usage record.

`WalletStore` adds x402 wallets: an account row per wallet (see `_wallets`), credited once
per top-up payment and drawn on with the same `reserve` and `settle`. Wallet rows are not
keys: `list_keys` and `count_keys` leave them out, and no secret authenticates as one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from murano.accounts._keygen import generate_key, hash_key, key_prefix, verify
from murano.accounts._money import from_micros, to_micros
from murano.accounts._wallets import WalletAccount, check_payment
from murano.accounts.base import Outcome
from murano.accounts.records import (
    AmbiguousKey,
    ApiKey,
    CreatedKey,
    KeyNotFound,
    Reservation,
    UsageRecord,
)

__all__ = ["KeyStore", "MemoryStore", "WalletStore", "check_new_key", "utcnow"]

MAX_NAME_LENGTH = 200


def utcnow() -> datetime:
    return datetime.now(UTC)


@runtime_checkable
class KeyStore(Protocol):
    """Where keys and the ledger live. Methods taking `ref` accept a key's id or prefix."""

    async def start(self) -> None:
        """Connect and bring the schema to the current version (it never releases
        reservations: a CLI run must not touch a running server's requests)."""

    async def close(self) -> None: ...

    async def create_key(
        self,
        *,
        name: str,
        is_admin: bool = False,
        balance_usd: Decimal | None = None,
        rpm: int | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> CreatedKey:
        """A new key; `secret` None generates one (a given one comes from settings)."""

    async def find_by_secret(self, secret: str) -> ApiKey | None:
        """The key whose secret this is, revoked and expired ones included."""

    async def get_key(self, ref: str) -> ApiKey: ...

    async def list_keys(self) -> list[ApiKey]: ...

    async def count_keys(self) -> int: ...

    async def revoke_key(self, ref: str) -> ApiKey:
        """Revoke (idempotent); the row stays for the usage history."""

    async def top_up(self, ref: str, usd: Decimal) -> ApiKey:
        """Add `usd` to a limited, unrevoked key's balance (ValueError otherwise)."""

    async def reserve(
        self,
        key_id: str,
        model: str,
        images: int,
        amount_usd: Decimal,
        *,
        reservation_id: str | None = None,
        instance_id: str | None = None,
    ) -> Reservation:
        """Hold `amount_usd` of an unrevoked key's balance, as `reservation_id` (None: a
        new id) held by server `instance_id`; KeyNotFound when the key is gone or revoked."""

    async def settle(
        self, reservation_id: str, outcome: Outcome, timings_ms: Mapping[str, float] | None
    ) -> bool:
        """Commit (DELIVERED) or release a pending reservation and record the usage; a
        DELIVERED for a reservation reclaimed meanwhile still commits. False when it was
        already settled (or never made)."""

    async def release_pending(
        self, *, older_than: datetime | None = None, key_id: str | None = None
    ) -> int:
        """Release pending reservations (created before `older_than`, of `key_id`), each
        with a `released` usage record; the number released."""

    async def reclaim(
        self,
        *,
        instance_ids: Sequence[str] = (),
        lease_cutoff: datetime | None = None,
        exclude: str | None = None,
        legacy_before: datetime | None = None,
        reason: str,
    ) -> int:
        """Release the pending reservations of `instance_ids`, of instances whose heartbeat
        is older than `lease_cutoff` or that stopped (never those of `exclude`), and of no
        instance made before `legacy_before`, each with a `released` usage record."""

    async def register_instance(self, instance_id: str) -> None: ...

    async def heartbeat(self, instance_id: str) -> None: ...

    async def stop_instance(self, instance_id: str) -> None: ...

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the store can be reached."""

    async def list_usage(self, *, key_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        """Newest first."""


@runtime_checkable
class WalletStore(KeyStore, Protocol):
    """A key store that also keeps x402 wallets. A wallet is spent from with `reserve` and
    `settle` under the id `wallet_id(address)`, like a key; an unknown or revoked one is
    KeyNotFound there."""

    def wallet_id(self, address: str) -> str:
        """The account id of the wallet at `address` (ValueError for a malformed one)."""

    async def find_wallet(self, address: str) -> ApiKey | None:
        """The wallet's account, revoked or not; None before its first top-up."""

    async def credit_wallet(
        self, address: str, usd: Decimal, *, payment_id: str, tx: str | None = None
    ) -> Decimal:
        """Record payment `payment_id` and add `usd` to the wallet's balance (creating its
        account) in one transaction; the balance after. A `payment_id` recorded before
        adds nothing, also when it is credited concurrently or after a restart."""


def check_new_key(
    name: str,
    balance_usd: Decimal | None,
    rpm: int | None,
    expires_at: datetime | None,
    now: datetime,
) -> None:
    """Reject a new key's settings before anything is written, naming the fix."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}")
    if "\x00" in name:
        # PostgreSQL cannot store NUL in text; refuse it on every store alike.
        raise ValueError("name must not contain NUL characters")
    if balance_usd is not None:
        if not balance_usd.is_finite() or balance_usd < 0:
            raise ValueError(f"balance_usd must be >= 0 (or None: unlimited), got {balance_usd}")
        to_micros(balance_usd)
    if rpm is not None and rpm < 1:
        raise ValueError(f"rpm must be >= 1 (or None: the model's default), got {rpm}")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValueError("expires_at must carry a time zone (e.g. 2027-01-01T00:00:00Z)")
        if expires_at <= now:
            raise ValueError(f"expires_at must be in the future, got {expires_at.isoformat()}")


def check_top_up(usd: Decimal) -> int:
    if not usd.is_finite() or usd <= 0:
        raise ValueError(f"a top-up must be > 0 USD, got {usd}")
    return to_micros(usd)


@dataclass(slots=True)
class _KeyRow:
    key: ApiKey
    digest: str
    balance_micros: int | None
    reserved_micros: int = 0
    wallet: str | None = None


@dataclass(slots=True)
class _Hold:
    key_id: str
    model: str
    images: int
    amount_micros: int
    created_at: datetime
    instance_id: str | None = None
    state: str = "pending"


@dataclass(slots=True)
class _Instance:
    heartbeat_at: datetime
    stopped: bool = False


class MemoryStore:
    """`KeyStore` in a few dicts. Every method runs without an await in between, so
    each is atomic under asyncio just as the SQL statements are in the database."""

    def __init__(self) -> None:
        self._keys: dict[str, _KeyRow] = {}
        self._holds: dict[str, _Hold] = {}
        self._usage: list[UsageRecord] = []
        self._payments: dict[str, tuple[str, int, str | None]] = {}
        self._instances: dict[str, _Instance] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create_key(
        self,
        *,
        name: str,
        is_admin: bool = False,
        balance_usd: Decimal | None = None,
        rpm: int | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> CreatedKey:
        now = utcnow()
        check_new_key(name, balance_usd, rpm, expires_at, now)
        secret = secret or generate_key()
        if any(row.digest == hash_key(secret) for row in self._keys.values()):
            raise ValueError("a key with this secret already exists")
        micros = None if balance_usd is None else to_micros(balance_usd)
        key = ApiKey(
            id=str(uuid.uuid4()),
            name=name,
            prefix=key_prefix(secret),
            is_admin=is_admin,
            balance_usd=None if micros is None else from_micros(micros),
            reserved_usd=from_micros(0),
            rpm=rpm,
            created_at=now,
            expires_at=expires_at,
        )
        self._keys[key.id] = _KeyRow(key, hash_key(secret), micros)
        return CreatedKey(key, secret)

    async def find_by_secret(self, secret: str) -> ApiKey | None:
        prefix = key_prefix(secret)
        for row in self._keys.values():
            if row.key.prefix == prefix and verify(secret, row.digest):
                return row.key
        return None

    async def get_key(self, ref: str) -> ApiKey:
        return self._row(ref).key

    async def list_keys(self) -> list[ApiKey]:
        return sorted((row.key for row in self._key_rows()), key=lambda k: k.created_at)

    async def count_keys(self) -> int:
        return sum(1 for _ in self._key_rows())

    async def revoke_key(self, ref: str) -> ApiKey:
        row = self._row(ref)
        if row.key.revoked_at is None:
            row.key = replace(row.key, revoked_at=utcnow())
        return row.key

    async def top_up(self, ref: str, usd: Decimal) -> ApiKey:
        micros = check_top_up(usd)
        row = self._row(ref)
        if row.key.revoked_at is not None:
            raise ValueError(f"key {row.key.prefix} is revoked")
        if row.balance_micros is None:
            raise ValueError(f"key {row.key.prefix} has an unlimited balance")
        row.balance_micros += micros
        self._refresh(row)
        return row.key

    async def reserve(
        self,
        key_id: str,
        model: str,
        images: int,
        amount_usd: Decimal,
        *,
        reservation_id: str | None = None,
        instance_id: str | None = None,
    ) -> Reservation:
        row = self._keys.get(key_id)
        if row is None or row.key.revoked_at is not None:
            raise KeyNotFound(key_id)
        amount = to_micros(amount_usd, round_up=True)
        available = None if row.balance_micros is None else row.balance_micros - row.reserved_micros
        if available is not None and available < amount:
            return Reservation(None, from_micros(available))
        hold_id = reservation_id or str(uuid.uuid4())
        now = utcnow()
        self._holds[hold_id] = _Hold(key_id, model, images, amount, now, instance_id)
        row.reserved_micros += amount
        row.key = replace(row.key, last_used_at=now)
        self._refresh(row)
        return Reservation(hold_id, None if available is None else from_micros(available))

    async def settle(
        self, reservation_id: str, outcome: Outcome, timings_ms: Mapping[str, float] | None
    ) -> bool:
        hold = self._holds.get(reservation_id)
        commit = outcome is Outcome.DELIVERED
        if hold is not None and hold.state == "reclaimed" and commit:
            self._commit_reclaimed(reservation_id, hold, timings_ms)
            return True
        if hold is None or hold.state != "pending":
            return False
        hold.state = "committed" if commit else "released"
        row = self._keys[hold.key_id]
        row.reserved_micros -= hold.amount_micros
        if commit and row.balance_micros is not None:
            row.balance_micros -= hold.amount_micros
        self._refresh(row)
        self._record(reservation_id, hold, outcome.value, commit, timings_ms)
        return True

    def _commit_reclaimed(
        self, reservation_id: str, hold: _Hold, timings_ms: Mapping[str, float] | None
    ) -> None:
        hold.state = "committed"
        row = self._keys[hold.key_id]
        if row.balance_micros is not None:
            row.balance_micros -= hold.amount_micros
        self._refresh(row)
        self._usage = [u for u in self._usage if u.reservation_id != reservation_id]
        reason = "delivered after its reservation was reclaimed"
        self._record(reservation_id, hold, Outcome.DELIVERED.value, True, timings_ms, reason)

    def _record(
        self,
        reservation_id: str,
        hold: _Hold,
        outcome: str,
        charged: bool,
        timings_ms: Mapping[str, float] | None,
        reason: str | None = None,
    ) -> None:
        row = self._keys[hold.key_id]
        self._usage.append(
            UsageRecord(
                id=len(self._usage) + 1,
                key_id=hold.key_id,
                key_name=row.key.name,
                key_prefix=row.key.prefix,
                model=hold.model,
                images=hold.images,
                charged_usd=from_micros(hold.amount_micros if charged else 0),
                outcome=outcome,
                created_at=utcnow(),
                timings_ms=dict(timings_ms or {}),
                reason=reason,
                reservation_id=reservation_id,
            )
        )

    async def release_pending(
        self, *, older_than: datetime | None = None, key_id: str | None = None
    ) -> int:
        def chosen(hold: _Hold) -> bool:
            return (key_id is None or hold.key_id == key_id) and (
                older_than is None or hold.created_at < older_than
            )

        return self._reclaim(chosen, "released by an administrator")

    async def reclaim(
        self,
        *,
        instance_ids: Sequence[str] = (),
        lease_cutoff: datetime | None = None,
        exclude: str | None = None,
        legacy_before: datetime | None = None,
        reason: str,
    ) -> int:
        gone = set(instance_ids)
        if lease_cutoff is not None:
            gone |= {
                id_
                for id_, instance in self._instances.items()
                if (instance.stopped or instance.heartbeat_at < lease_cutoff) and id_ != exclude
            }

        def chosen(hold: _Hold) -> bool:
            if hold.instance_id is None:
                return legacy_before is not None and hold.created_at < legacy_before
            return hold.instance_id in gone

        return self._reclaim(chosen, reason)

    def _reclaim(self, chosen: Callable[[_Hold], bool], reason: str) -> int:
        released = 0
        for hold_id, hold in self._holds.items():
            if hold.state != "pending" or not chosen(hold):
                continue
            hold.state = "reclaimed"
            row = self._keys[hold.key_id]
            row.reserved_micros -= hold.amount_micros
            self._refresh(row)
            self._record(hold_id, hold, "released", False, None, reason)
            released += 1
        return released

    async def register_instance(self, instance_id: str) -> None:
        self._instances[instance_id] = _Instance(utcnow())

    async def heartbeat(self, instance_id: str) -> None:
        if instance_id in self._instances:
            self._instances[instance_id].heartbeat_at = utcnow()

    async def stop_instance(self, instance_id: str) -> None:
        if instance_id in self._instances:
            self._instances[instance_id].stopped = True

    async def ping(self) -> None:
        return None

    async def list_usage(self, *, key_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        records = [u for u in reversed(self._usage) if key_id is None or u.key_id == key_id]
        return records[:limit]

    def wallet_id(self, address: str) -> str:
        return WalletAccount.of(address).id

    async def find_wallet(self, address: str) -> ApiKey | None:
        row = self._keys.get(WalletAccount.of(address).id)
        return None if row is None else row.key

    async def credit_wallet(
        self, address: str, usd: Decimal, *, payment_id: str, tx: str | None = None
    ) -> Decimal:
        wallet = WalletAccount.of(address)
        micros = check_top_up(usd)
        check_payment(payment_id, tx)
        if payment_id not in self._payments:
            self._payments[payment_id] = (wallet.address, micros, tx)
            row = self._keys.get(wallet.id) or self._new_wallet(wallet)
            row.balance_micros = (row.balance_micros or 0) + micros
            self._refresh(row)
        after = self._keys.get(wallet.id)
        return from_micros(0 if after is None else after.balance_micros or 0)

    def _new_wallet(self, wallet: WalletAccount) -> _KeyRow:
        zero = from_micros(0)
        key = ApiKey(wallet.id, wallet.name, wallet.prefix, False, zero, zero, None, utcnow())
        row = self._keys[wallet.id] = _KeyRow(key, wallet.digest, 0, wallet=wallet.address)
        return row

    def _key_rows(self) -> list[_KeyRow]:
        return [row for row in self._keys.values() if row.wallet is None]

    def _row(self, ref: str) -> _KeyRow:
        if ref in self._keys:
            return self._keys[ref]
        matches = [row for row in self._keys.values() if row.key.prefix == ref]
        if len(matches) > 1:
            raise AmbiguousKey(ref)
        if not matches:
            raise KeyNotFound(ref)
        return matches[0]

    @staticmethod
    def _refresh(row: _KeyRow) -> None:
        balance = None if row.balance_micros is None else from_micros(row.balance_micros)
        row.key = replace(
            row.key, balance_usd=balance, reserved_usd=from_micros(row.reserved_micros)
        )
