"""Wallet top-ups: an x402 `exact` payment to the server, settled at once, credited to the
paying wallet's balance.

Unlike an inference payment the amount is the payer's choice, between `min_usd` and
`max_usd`: the 402 quotes `amountUsd` (or the minimum), and a payment for any amount in
range is accepted. The wallet is credited only after settlement succeeded, once per
payment (the ledger's `credit` is idempotent on the payment's nonce).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from x402.http.utils import encode_payment_response_header
from x402.schemas import PaymentRequired, ResourceInfo

from murano.payments.assets import Asset, to_atomic, to_usd
from murano.payments.errors import PaymentRejected
from murano.payments.exact import ExactPayments
from murano.payments.wallet import WalletLedger

__all__ = ["TopUp", "TopUpRejected", "TopUps"]

log = logging.getLogger("murano.payments")

# PaymentRejected codes → Venice's top-up error codes; the rest are verification failures.
_CODES = {
    "amount_too_low": "AMOUNT_TOO_LOW",
    "amount_too_high": "AMOUNT_TOO_HIGH",
    "unsupported_network": "UNSUPPORTED_NETWORK",
    "invalid_payment": "INVALID_PAYMENT",
    "unsupported_payload": "INVALID_PAYMENT",
    "unsupported_scheme": "INVALID_PAYMENT",
    "payment_already_used": "INVALID_PAYMENT",
}


@dataclass(frozen=True, slots=True)
class TopUp:
    """A credited top-up and the payment-response header that proves the settlement."""

    address: str
    credited_usd: Decimal
    balance_usd: Decimal
    payment_id: str
    headers: dict[str, str]


class TopUpRejected(Exception):
    """A top-up refused with Venice's `{error: CODE, message, details}`."""

    def __init__(self, status: int, code: str, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason


class TopUps:
    def __init__(
        self, exact: ExactPayments, ledger: WalletLedger, *, min_usd: Decimal, max_usd: Decimal
    ) -> None:
        if not Decimal(0) < min_usd <= max_usd:
            raise ValueError(f"top-up limits must satisfy 0 < min <= max: {min_usd}, {max_usd}")
        self.exact = exact
        self.ledger = ledger
        self.min_usd = min_usd
        self.max_usd = max_usd

    def quote(self, amount_usd: Decimal | None) -> Decimal:
        """The amount a 402 asks for; TopUpRejected when it is out of range."""
        amount = self.min_usd if amount_usd is None else amount_usd
        self._check(amount)
        return amount

    async def payment_required(
        self, amount_usd: Decimal, resource: ResourceInfo
    ) -> PaymentRequired:
        requirements = await self.exact.requirements(amount_usd)
        return await self.exact.payment_required(
            requirements, resource, error="Payment required to top up wallet credits"
        )

    async def top_up(self, header: str, resource: ResourceInfo) -> TopUp:
        """Verify, settle and credit the payment in `header`. Raises TopUpRejected, or
        PaymentServiceUnavailable when the facilitator cannot be reached."""
        try:
            payment = await self.exact.verify(header, resource, accept_atomic=self._accept)
            settled = await self.exact.settle(payment)
        except PaymentRejected as exc:
            raise TopUpRejected(
                400, _CODES.get(exc.code, "PAYMENT_VERIFICATION_FAILED"), exc.message, exc.code
            ) from None
        address = payment.payer.lower()
        try:
            balance = await self.ledger.credit(
                address,
                payment.usd,
                payment_id=payment.nonce_key,
                tx=getattr(settled, "transaction", None) or None,
            )
        except Exception:
            # Settled on-chain but not credited: the operator must reconcile by hand.
            log.critical(
                "x402 top-up settled but NOT credited: wallet %s, %s USD, transaction %s",
                address,
                payment.usd,
                settled.transaction,
            )
            raise
        header_value = encode_payment_response_header(settled)
        return TopUp(
            address,
            payment.usd,
            balance,
            settled.transaction or payment.nonce_key,
            {payment.response_header: header_value},
        )

    def _accept(self, asset: Asset, atomic: int) -> None:
        try:
            self._check(to_usd(atomic, asset.decimals))
        except TopUpRejected as exc:
            raise PaymentRejected(exc.reason or "invalid_payment", exc.message) from None

    def _check(self, usd: Decimal) -> None:
        if usd < self.min_usd:
            raise TopUpRejected(
                400,
                "AMOUNT_TOO_LOW",
                f"The minimum top-up is {self.min_usd} USD.",
                "amount_too_low",
            )
        if usd > self.max_usd:
            raise TopUpRejected(
                400,
                "AMOUNT_TOO_HIGH",
                f"The maximum top-up is {self.max_usd} USD.",
                "amount_too_high",
            )
        for asset in self.exact.assets:
            if to_usd(to_atomic(usd, asset.decimals), asset.decimals) != usd:
                raise TopUpRejected(
                    400,
                    "INVALID_AMOUNT",
                    f"{usd} USD is finer than the smallest unit of {asset.symbol}.",
                    "invalid_amount",
                )
