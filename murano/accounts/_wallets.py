"""How an x402 wallet is kept in the key store: as one more account row, so that it is
reserved on, settled, released after a crash and billed in usage records exactly like a
key. The row can never authenticate as a bearer key: its stored digest is not a SHA-256
digest, so no secret hashes to it. Its id is derived from the address, so spending from a
wallet needs no lookup first; the row itself is created by the wallet's first top-up.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["MAX_PAYMENT_ID_LENGTH", "MAX_TX_LENGTH", "WalletAccount", "check_payment"]

MAX_PAYMENT_ID_LENGTH = 255
MAX_TX_LENGTH = 128
# Fixed for good: every wallet's row id is derived from it.
_NAMESPACE = uuid.UUID("6d757261-6e6f-5741-8c4c-455430303031")
# EVM addresses (0x and 40 hex digits) in lower case; anything else alphanumeric that fits
# the column is taken too, since only a verified payment or signature names a wallet.
_ADDRESS = re.compile(r"[0-9a-z]{1,42}")
_PREFIX_LENGTH = 12


@dataclass(frozen=True, slots=True)
class WalletAccount:
    """The account row of the wallet at `address` (lower case)."""

    address: str

    @classmethod
    def of(cls, address: str) -> WalletAccount:
        canonical = address.lower()
        if not _ADDRESS.fullmatch(canonical):
            raise ValueError(
                f"a wallet address is 1 to 42 letters and digits (0x and 40 hex digits on "
                f"EVM networks), got {address!r}"
            )
        return cls(canonical)

    @property
    def id(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.address))

    @property
    def name(self) -> str:
        return f"x402 wallet {self.address}"

    @property
    def prefix(self) -> str:
        """What listings, usage records and `murano keys` show (and accept) for it."""
        return self.address[:_PREFIX_LENGTH]

    @property
    def digest(self) -> str:
        # Not 64 hex digits, so it never equals a key's SHA-256 digest.
        return f"wallet:{self.address}"

    def row(self, balance_micros: int, now: datetime) -> dict[str, Any]:
        """Its `api_keys` values when first credited with `balance_micros`."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "key_hash": self.digest,
            "is_admin": False,
            "balance_micros": balance_micros,
            "reserved_micros": 0,
            "rpm": None,
            "expires_at": None,
            "created_at": now,
            "wallet_address": self.address,
        }


def check_payment(payment_id: str, tx: str | None) -> None:
    """Reject what would not fit the top-up's `x402_payments` row, naming the limit."""
    if not payment_id or len(payment_id) > MAX_PAYMENT_ID_LENGTH:
        raise ValueError(
            f"payment_id must be 1 to {MAX_PAYMENT_ID_LENGTH} characters, got {len(payment_id)}"
        )
    if tx is not None and not 0 < len(tx) <= MAX_TX_LENGTH:
        raise ValueError(f"tx must be 1 to {MAX_TX_LENGTH} characters or None, got {tx!r}")
