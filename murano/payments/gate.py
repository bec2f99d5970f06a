"""`X402Gate`: the `PaymentGate` that `ImageService` calls for a caller without an API key,
once the request has been validated and priced, with the request's `Credentials` (its x402
headers and the URL being paid for, read by the route's dependency).

    request has PAYMENT-SIGNATURE / X-PAYMENT   → pay for this request (`exact`):
        checked and verified now, settled by the admission's `settle_hook` only when the
        images were delivered; PAYMENT-RESPONSE / X-PAYMENT-RESPONSE on the response
    request has SIGN-IN-WITH-X (wallet flow on) → draw on the wallet's credit: reserved now,
        committed when delivered, released otherwise (like an API key's balance)
    neither                                     → 402: Venice's discovery body, and x402's
        challenge in PAYMENT-REQUIRED, priced for exactly this request

Every refusal of a payment is a 402 whose `error` says what was wrong, with a fresh
challenge; a facilitator that cannot be reached is PaymentServiceUnavailable (503).
"""

from __future__ import annotations

import logging
from collections import Counter
from decimal import Decimal
from typing import Any

from x402.extensions.sign_in_with_x import SIGN_IN_WITH_X
from x402.http.utils import encode_payment_response_header
from x402.schemas import ResourceInfo

from murano.accounts.base import Admission, Charge, Outcome, Principal
from murano.accounts.credentials import Credentials, X402Request
from murano.errors import PaymentRequired, RateLimited
from murano.payments.bodies import (
    auth_options,
    discovery_body,
    payment_required_headers,
    wallet_insufficient_body,
)
from murano.payments.errors import PaymentRejected
from murano.payments.exact import ExactPayments, VerifiedPayment, not_settled_header
from murano.payments.siwx import SignIn
from murano.payments.topup import TopUps
from murano.payments.wallet import InsufficientWalletBalance, WalletHold, WalletLedger

__all__ = ["X402Gate"]

log = logging.getLogger("murano.payments")

BALANCE_HEADER = "x-venice-balance-usd"
REMAINING_HEADER = "X-Balance-Remaining"


class X402Gate:
    """Pay-per-request with `exact`; with `wallets` and `signin`, also wallet credits."""

    def __init__(
        self,
        exact: ExactPayments,
        *,
        wallets: WalletLedger | None = None,
        signin: SignIn | None = None,
        public_origin: str | None = None,
        description: str = "murano image generation",
        min_top_up_usd: Decimal = Decimal(5),
        max_top_up_usd: Decimal = Decimal(10_000),
        suggested_top_up_usd: Decimal = Decimal(10),
        max_in_flight: int = 5,
    ) -> None:
        if (wallets is None) != (signin is None):
            raise ValueError("the wallet flow needs both a WalletLedger and a SignIn")
        self.exact = exact
        self.wallets = wallets
        self.signin = signin
        self.public_origin = public_origin.rstrip("/") if public_origin else None
        self.description = description
        self.max_in_flight = max_in_flight
        self.suggested_top_up_usd = suggested_top_up_usd
        self.top_ups = (
            TopUps(exact, wallets, min_usd=min_top_up_usd, max_usd=max_top_up_usd)
            if wallets is not None
            else None
        )
        self._in_flight: Counter[str] = Counter()

    @property
    def wallets_enabled(self) -> bool:
        return self.wallets is not None

    async def close(self) -> None:
        await self.exact.close()
        if self.signin is not None and self.signin.nonces is not self.exact.nonces:
            await self.signin.nonces.close()

    async def __call__(self, credentials: Credentials, charge: Charge) -> Admission:
        request = credentials.x402
        if request is None:
            raise ValueError("the x402 gate admits only credentials that carry x402 headers")
        principal = credentials.principal
        if request.payment is None and request.siwx is not None and self.signin is not None:
            return await self._admit_wallet(request, charge)
        if charge.total_usd <= 0:
            return Admission(principal, charge)
        resource = self.resource(request)
        if request.payment is None:
            raise await self.payment_required(request, charge, resource)
        try:
            payment = await self.exact.verify(request.payment[1], resource, charge.total_usd)
        except PaymentRejected as exc:
            raise await self.payment_required(
                request, charge, resource, error=exc.message
            ) from None
        payer = Principal(
            key_id=f"x402:{payment.payer.lower()}", name=payment.payer, anonymous=True
        )
        admission = Admission(payer, charge)
        admission.settle_hook = _PaymentSettlement(self, request, resource, admission, payment)
        return admission

    def resource(self, request: X402Request, description: str | None = None) -> ResourceInfo:
        """What is paid for: this request's URL (on the public origin, when configured)."""
        return ResourceInfo(
            url=self.origin(request) + request.path,
            description=description or self.description,
            mime_type="application/json",
        )

    def origin(self, request: X402Request) -> str:
        """The configured public origin, else the one the request came to."""
        return self.public_origin or request.origin

    async def payment_required(
        self,
        request: X402Request,
        charge: Charge,
        resource: ResourceInfo,
        *,
        error: str = "Payment required",
        headers: dict[str, str] | None = None,
    ) -> PaymentRequired:
        """A 402 asking for exactly `charge`: Venice's discovery body, x402's header."""
        requirements = await self.exact.requirements(charge.total_usd)
        extensions: dict[str, Any] | None = None
        if self.signin is not None:
            challenge = await self.signin.challenge(request.origin, resource, requirements)
            extensions = {SIGN_IN_WITH_X: challenge}
        required = await self.exact.payment_required(
            requirements, resource, error=error, extensions=extensions
        )
        options = auth_options(self.origin(request), wallets=self.wallets_enabled)
        body = discovery_body(required, options)
        return PaymentRequired(
            body, headers={**payment_required_headers(required), **(headers or {})}
        )

    # -- wallet credits ---------------------------------------------------------------------

    async def _admit_wallet(self, request: X402Request, charge: Charge) -> Admission:
        assert self.signin is not None and self.wallets is not None and request.siwx
        address = await self.signin.authenticate(request.siwx, request.origin)
        if self._in_flight[address] >= self.max_in_flight:
            raise RateLimited(
                f"Too many concurrent requests for this wallet (at most {self.max_in_flight})."
            )
        # Counted before the first await, so concurrent sign-ins cannot overshoot the limit.
        self._in_flight[address] += 1
        try:
            hold = await self.wallets.reserve(address, charge)
        except BaseException as exc:
            self._done(address)
            if isinstance(exc, InsufficientWalletBalance):
                raise await self._wallet_short(request, charge, exc) from None
            raise
        principal = Principal(
            key_id=f"wallet:{address}", name=address, balance_usd=hold.available_usd
        )
        admission = Admission(
            principal,
            charge,
            reservation_id=hold.id,
            # The balance once these images are delivered: the hold is spent only after the
            # response's last byte, too late for a header.
            headers={
                BALANCE_HEADER: _usd(hold.available_usd),
                REMAINING_HEADER: f"{hold.available_usd - hold.amount_usd:.6f}",
            },
        )
        admission.settle_hook = _WalletSettlement(self, admission, hold)
        return admission

    async def _wallet_short(
        self, request: X402Request, charge: Charge, short: InsufficientWalletBalance
    ) -> PaymentRequired:
        assert self.signin is not None and self.top_ups is not None
        resource = self.resource(request)
        requirements = await self.exact.requirements(charge.total_usd)
        challenge = await self.signin.challenge(request.origin, resource, requirements)
        required = await self.exact.payment_required(
            requirements, resource, error="Insufficient x402 balance"
        )
        body = wallet_insufficient_body(
            balance_usd=short.available_usd,
            needed_usd=short.needed_usd,
            min_top_up_usd=self.top_ups.min_usd,
            suggested_top_up_usd=max(self.suggested_top_up_usd, self.top_ups.min_usd),
            pay_to=self.exact.pay_to,
            assets=self.exact.assets,
            challenge=challenge,
            description=self.description,
        )
        return PaymentRequired(body, headers=payment_required_headers(required))

    def _done(self, address: str) -> None:
        self._in_flight[address] -= 1
        if self._in_flight[address] <= 0:
            del self._in_flight[address]


class _PaymentSettlement:
    """The settle hook of a pay-per-request admission."""

    # Its proof (PAYMENT-RESPONSE) is a response header, so it settles as the response
    # starts (images built, client connected), not after the last byte.
    settles_before_headers = True

    def __init__(
        self,
        gate: X402Gate,
        request: X402Request,
        resource: ResourceInfo,
        admission: Admission,
        payment: VerifiedPayment,
    ) -> None:
        self.gate = gate
        self.request = request
        self.resource = resource
        self.admission = admission
        self.payment = payment

    async def __call__(self, outcome: Outcome) -> None:
        if self.admission.settled:
            return
        self.admission.settled = True
        exact, payment = self.gate.exact, self.payment
        if outcome is not Outcome.DELIVERED:
            await exact.release(payment)
            self.admission.headers.update(
                not_settled_header(
                    payment,
                    f"not_delivered:{outcome.value}",
                    "No images were delivered, so the payment was not settled; "
                    "nothing was charged.",
                )
            )
            return
        try:
            settled = await exact.settle(payment)
        except PaymentRejected as exc:
            log.warning("x402 settlement refused for %s: %s", payment.payer, exc.code)
            raise await self.gate.payment_required(
                self.request,
                self.admission.charge,
                self.resource,
                error=exc.message,
                headers=not_settled_header(payment, exc.code, exc.message),
            ) from None
        self.admission.headers[payment.response_header] = encode_payment_response_header(settled)


class _WalletSettlement:
    """The settle hook of a wallet admission: the hold is spent only for delivered images."""

    def __init__(self, gate: X402Gate, admission: Admission, hold: WalletHold) -> None:
        self.gate = gate
        self.admission = admission
        self.hold = hold

    async def __call__(self, outcome: Outcome) -> None:
        assert self.gate.wallets is not None
        if self.admission.settled:
            return
        self.admission.settled = True
        try:
            remaining = await self.gate.wallets.settle(self.hold, outcome)
            if outcome is Outcome.DELIVERED:
                self.admission.headers[REMAINING_HEADER] = f"{remaining:.6f}"
            else:
                self.admission.headers.pop(REMAINING_HEADER, None)
        finally:
            self.gate._done(self.hold.address)


def _usd(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text
