"""`build_payment_gate`: the x402 gate the settings ask for, or None when payments are off
(no `x402_pay_to`)."""

from __future__ import annotations

import logging
import math
import re

from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.server import FacilitatorClient

from murano.payments.assets import resolve_assets
from murano.payments.exact import ExactPayments
from murano.payments.gate import X402Gate
from murano.payments.nonces import MemoryNonces, Nonces, RedisNonces
from murano.payments.siwx import SignIn
from murano.payments.wallet import WalletLedger
from murano.settings import Settings

__all__ = ["build_payment_gate", "validity_window"]

log = logging.getLogger("murano.payments")

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def build_payment_gate(
    settings: Settings,
    *,
    facilitator: FacilitatorClient | None = None,
    wallets: WalletLedger | None = None,
    nonces: Nonces | None = None,
    public_url: str | None = None,
) -> X402Gate | None:
    """Pay-per-request to `x402_pay_to` on `x402_networks`, checked by the facilitator at
    `x402_facilitator_url` (or `facilitator`). Wallet credits are on when `wallets` is
    given. Used payments are remembered in Redis when `redis_url` is set (required with
    several server processes), else in memory. `public_url` (default: the request's own
    origin) is what Sign-In-With-X messages must be bound to."""
    pay_to = settings.x402_pay_to
    if not pay_to:
        return None
    if not _ADDRESS.match(pay_to):
        raise ValueError(f"x402_pay_to must be an EVM address (0x and 40 hex digits): {pay_to!r}")
    assets = resolve_assets(settings.x402_networks, settings.x402_asset)
    if facilitator is None:
        # x402's default timeout (90 s): settling waits for the transaction's receipt.
        facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=settings.x402_facilitator_url))
    if nonces is None:
        nonces = RedisNonces(settings.redis_url) if settings.redis_url else MemoryNonces()
    exact = ExactPayments(
        facilitator,
        pay_to=pay_to,
        assets=assets,
        nonces=nonces,
        max_timeout_s=validity_window(settings.request_timeout_s),
    )
    public_url = public_url or getattr(settings, "x402_public_url", None)
    signin = None
    if wallets is not None:
        signin = SignIn([asset.network for asset in assets], nonces, origin=public_url)
    networks = ", ".join(asset.network for asset in assets)
    log.info(
        "x402 payments on (%s) to %s; wallet credits %s",
        networks,
        pay_to,
        "on" if wallets is not None else "off",
    )
    return X402Gate(exact, wallets=wallets, signin=signin, public_origin=public_url)


def validity_window(request_timeout_s: float) -> int:
    """`maxTimeoutSeconds` to ask for: the payment is settled after generation, so its
    authorization must outlive the longest request (and never less than x402's usual 300)."""
    return max(300, math.ceil(request_timeout_s) + 60)
