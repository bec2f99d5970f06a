"""Wallet credits (Venice's x402 flow): a wallet tops up its balance with an x402 payment
and then pays for inference from it, signed in with Sign-In-With-X instead of an API key.

`WalletLedger` holds the balances. Its calls mirror an API key's ledger (the accounts
`KeyStore`'s `reserve` and `settle`) so that a wallet is drawn on exactly as a key is:
reserve the charge before generating, then settle: commit when the images were delivered,
release otherwise. `credit` is idempotent per `payment_id`, so a top-up that is retried
after it was settled credits the wallet once.

`MemoryWalletLedger` is the in-memory twin: balances are lost when the process stops, so
it is for tests and trials; real deployments keep wallets in the accounts store.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from murano.accounts.base import Charge, Outcome

__all__ = ["InsufficientWalletBalance", "MemoryWalletLedger", "WalletHold", "WalletLedger"]


@dataclass(frozen=True, slots=True)
class WalletHold:
    """`amount_usd` reserved on `address`; `available_usd` is what the wallet could spend
    before this hold (its balance less other holds)."""

    id: str
    address: str
    amount_usd: Decimal
    available_usd: Decimal


class InsufficientWalletBalance(Exception):
    def __init__(self, address: str, available_usd: Decimal, needed_usd: Decimal) -> None:
        super().__init__(f"wallet {address} has {available_usd} USD, needs {needed_usd}")
        self.address = address
        self.available_usd = available_usd
        self.needed_usd = needed_usd


@runtime_checkable
class WalletLedger(Protocol):
    """Balances of wallets, keyed by lower-case address."""

    async def available(self, address: str) -> Decimal:
        """Balance less pending holds; 0 for a wallet never seen."""

    async def credit(self, address: str, usd: Decimal, *, payment_id: str) -> Decimal:
        """Add a settled top-up; the new balance. A `payment_id` already credited adds
        nothing (and returns the current balance)."""

    async def reserve(self, address: str, charge: Charge) -> WalletHold:
        """Hold `charge.total_usd`; InsufficientWalletBalance when the available balance
        is short."""

    async def settle(self, hold: WalletHold, outcome: Outcome) -> Decimal:
        """Spend the hold when `outcome` is DELIVERED, drop it otherwise; the balance
        left. Idempotent: a hold already settled changes nothing."""


class MemoryWalletLedger:
    """`WalletLedger` in a dict, guarded by one lock."""

    def __init__(self) -> None:
        self._balances: dict[str, Decimal] = {}
        self._holds: dict[str, WalletHold] = {}
        self._payments: set[str] = set()
        self._lock = asyncio.Lock()

    async def available(self, address: str) -> Decimal:
        return self._available(address.lower())

    async def credit(self, address: str, usd: Decimal, *, payment_id: str) -> Decimal:
        if usd <= 0:
            raise ValueError(f"a top-up must be positive, not {usd}")
        key = address.lower()
        async with self._lock:
            if payment_id not in self._payments:
                self._payments.add(payment_id)
                self._balances[key] = self._balances.get(key, Decimal(0)) + usd
            return self._balances.get(key, Decimal(0))

    async def reserve(self, address: str, charge: Charge) -> WalletHold:
        key, usd = address.lower(), charge.total_usd
        async with self._lock:
            available = self._available(key)
            if available < usd:
                raise InsufficientWalletBalance(key, available, usd)
            hold = WalletHold(uuid.uuid4().hex, key, usd, available)
            self._holds[hold.id] = hold
            return hold

    async def settle(self, hold: WalletHold, outcome: Outcome) -> Decimal:
        async with self._lock:
            held = self._holds.pop(hold.id, None)
            if held is not None and outcome is Outcome.DELIVERED:
                self._balances[hold.address] -= hold.amount_usd
            return self._balances.get(hold.address, Decimal(0))

    def _available(self, key: str) -> Decimal:
        held = sum((h.amount_usd for h in self._holds.values() if h.address == key), Decimal(0))
        return self._balances.get(key, Decimal(0)) - held
