"""Wallet credits (Venice's x402 flow): a wallet tops up its balance with an x402 payment
and then pays for inference from it, signed in with Sign-In-With-X instead of an API key.

`WalletLedger` holds the balances. Its calls mirror an API key's ledger (the accounts
`KeyStore`'s `reserve` and `settle`) so that a wallet is drawn on exactly as a key is:
reserve the charge before generating, then settle: commit when the images were delivered,
release otherwise. `credit` is idempotent per `payment_id`, so a top-up that is retried
after it was settled credits the wallet once.

    AccountsWalletLedger    wallets as account rows of the accounts' `WalletStore`: in
                            SQLite or PostgreSQL (`SqlAccounts`), so balances bought with
                            USDC survive restarts, crash recovery at start releases their
                            holds, and their spending is in the usage records
    MemoryWalletLedger      the same on `MemoryAccounts`, for tests and trials: balances
                            are lost when the process stops

`build_wallet_ledger(settings, accounts)` is what the app calls (`x402_wallets`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

from murano.accounts.base import Accounts, Charge, Outcome
from murano.accounts.ledger import LedgerAccounts, MemoryAccounts
from murano.accounts.outbox import Settlement
from murano.accounts.records import ApiKey, KeyNotFound
from murano.accounts.store import WalletStore
from murano.errors import AuthenticationFailed
from murano.settings import Settings

__all__ = [
    "AccountsWalletLedger",
    "InsufficientWalletBalance",
    "MemoryWalletLedger",
    "WalletHold",
    "WalletLedger",
    "build_wallet_ledger",
    "wallet_ledger_for",
]

_ZERO = Decimal(0)


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

    async def credit(
        self, address: str, usd: Decimal, *, payment_id: str, tx: str | None = None
    ) -> Decimal:
        """Add a settled top-up (`tx`: its transaction, for the record); the new balance.
        A `payment_id` already credited adds nothing (and returns the current balance)."""

    async def reserve(self, address: str, charge: Charge) -> WalletHold:
        """Hold `charge.total_usd`; InsufficientWalletBalance when the available balance
        is short."""

    async def settle(self, hold: WalletHold, outcome: Outcome) -> Decimal:
        """Spend the hold when `outcome` is DELIVERED, drop it otherwise; the balance
        left. Idempotent: a hold already settled changes nothing."""


class AccountsWalletLedger:
    """`WalletLedger` on `accounts`' key store, which must be a `WalletStore`.

    A wallet never credited has nothing to spend; one whose account the operator revoked
    (`murano keys revoke <its prefix>`) is refused with AuthenticationFailed.
    """

    def __init__(self, accounts: LedgerAccounts) -> None:
        if not isinstance(accounts.store, WalletStore):
            raise TypeError(f"{type(accounts.store).__name__} cannot keep x402 wallets")
        self.accounts = accounts
        self.store: WalletStore = accounts.store

    async def available(self, address: str) -> Decimal:
        return _spendable(await self.store.find_wallet(address))

    async def credit(
        self, address: str, usd: Decimal, *, payment_id: str, tx: str | None = None
    ) -> Decimal:
        return await self.store.credit_wallet(address, usd, payment_id=payment_id, tx=tx)

    async def reserve(self, address: str, charge: Charge) -> WalletHold:
        account, address, usd = self.store.wallet_id(address), address.lower(), charge.total_usd
        try:
            reservation = await self.accounts.reserve(account, charge)
        except KeyNotFound:
            return await self._no_account(address, usd)
        available = reservation.available_usd or _ZERO
        if reservation.id is None:
            raise InsufficientWalletBalance(address, available, usd)
        return WalletHold(reservation.id, address, usd, available)

    async def settle(self, hold: WalletHold, outcome: Outcome) -> Decimal:
        if hold.id:
            # Journalled first, like a key's settlement: an outage or a crash loses nothing.
            await self.accounts.settle_reservation(Settlement(hold.id, outcome))
        wallet = await self.store.find_wallet(hold.address)
        return _ZERO if wallet is None else wallet.balance_usd or _ZERO

    async def _no_account(self, address: str, usd: Decimal) -> WalletHold:
        if await self.store.find_wallet(address) is not None:
            raise AuthenticationFailed("This wallet has been blocked on this server.")
        if usd > 0:
            raise InsufficientWalletBalance(address, _ZERO, usd)
        # A free request from a wallet never credited: there is nothing to hold.
        return WalletHold("", address, usd, _ZERO)


class MemoryWalletLedger(AccountsWalletLedger):
    """`AccountsWalletLedger` on accounts of its own in memory."""

    def __init__(self) -> None:
        super().__init__(MemoryAccounts())


def wallet_ledger_for(accounts: Accounts) -> WalletLedger | None:
    """A ledger keeping wallets in `accounts`' own store (`SqlAccounts`, `MemoryAccounts`);
    None for accounts without one (static keys, --no-auth)."""
    if isinstance(accounts, LedgerAccounts) and isinstance(accounts.store, WalletStore):
        return AccountsWalletLedger(accounts)
    return None


def build_wallet_ledger(settings: Settings, accounts: Accounts) -> WalletLedger | None:
    """The ledger for wallet credits when `settings.x402_wallets` is on, else None."""
    if not settings.x402_wallets:
        return None
    ledger = wallet_ledger_for(accounts)
    if ledger is None:
        raise ValueError(
            "x402_wallets keeps wallet balances in the accounts database, which these "
            f"accounts ({type(accounts).__name__}) do not have: use accounts_backend 'sql' "
            "with auth on, or turn x402_wallets off"
        )
    return ledger


def _spendable(wallet: ApiKey | None) -> Decimal:
    return _ZERO if wallet is None else wallet.available_usd or _ZERO
