"""What the key store holds, as plain values: keys (never their secret), usage records,
and the errors a lookup can end in."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from murano.accounts._money import format_usd

__all__ = [
    "AmbiguousKey",
    "ApiKey",
    "CreatedKey",
    "KeyNotFound",
    "Reservation",
    "UsageRecord",
]


class KeyNotFound(LookupError):
    """No key with that id or prefix (or it was revoked, where that matters)."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"No API key with id or prefix {ref!r}")
        self.ref = ref


class AmbiguousKey(LookupError):
    """Several keys share the prefix given; use the id instead."""

    def __init__(self, ref: str) -> None:
        super().__init__(f"Several API keys have the prefix {ref!r}; give the key's id")
        self.ref = ref


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key. `balance_usd` None is unlimited; `reserved_usd` is held by requests
    in flight; `rpm` None means the model's default limit."""

    id: str
    name: str
    prefix: str
    is_admin: bool
    balance_usd: Decimal | None
    reserved_usd: Decimal
    rpm: int | None
    created_at: datetime
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def available_usd(self) -> Decimal | None:
        return None if self.balance_usd is None else self.balance_usd - self.reserved_usd

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (CLI `--json`); amounts as strings so none is rounded."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "admin": self.is_admin,
            "balance_usd": _usd(self.balance_usd),
            "reserved_usd": format_usd(self.reserved_usd),
            "rpm": self.rpm,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


@dataclass(frozen=True, slots=True)
class CreatedKey:
    """A new key and its secret, which exists only here: the store keeps its hash."""

    key: ApiKey
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of a reserve: `id` None means the balance was short. `available_usd`
    is what the key could spend before this request (None: unlimited)."""

    id: str | None
    available_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One settled request. `charged_usd` is zero unless the images were delivered.
    `outcome` "released" is a reservation released without a request's outcome (its server
    crashed or lost its lease); `reason` says which."""

    id: int
    key_id: str
    key_name: str
    key_prefix: str
    model: str
    images: int
    charged_usd: Decimal
    outcome: str
    created_at: datetime
    timings_ms: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    reservation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "key_id": self.key_id,
            "key_name": self.key_name,
            "key_prefix": self.key_prefix,
            "model": self.model,
            "images": self.images,
            "charged_usd": format_usd(self.charged_usd),
            "outcome": self.outcome,
            "reason": self.reason,
            "reservation_id": self.reservation_id,
            "timings_ms": dict(self.timings_ms),
            "created_at": _iso(self.created_at),
        }


def _usd(value: Decimal | None) -> str | None:
    return None if value is None else format_usd(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
