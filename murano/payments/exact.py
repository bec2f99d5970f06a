"""Payments with x402's `exact` scheme: what to ask for, checking what was sent, settling it.

One payment goes through `ExactPayments` as:

    requirements = await exact.requirements(usd)      # the `accepts` of the 402
    paid = await exact.verify(header, resource, usd)  # PaymentRejected, ...Unavailable (503)
    ... the paid work ...
    settled = await exact.settle(paid)                # only when the work was delivered
    # or: await exact.release(paid)                   # nothing delivered, nothing settled

The protocol is the x402 package's: requirements come from `x402ResourceServer` (with the
exact-EVM server scheme), verification and settlement go to the facilitator through it,
headers are x402's own encodings. murano adds what a server that settles *after* the work
must check itself before starting: the payment is for this request's price, payee, token
and network, its authorization stays valid long enough to settle after generating, and it
has not been used (`Nonces`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, cast

import httpx
from x402 import SchemeNetworkServer, x402ResourceServer
from x402.http.constants import PAYMENT_RESPONSE_HEADER, X_PAYMENT_RESPONSE_HEADER
from x402.http.utils import decode_payment_signature_header, encode_payment_response_header
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.types import ExactEIP3009Payload, is_permit2_payload
from x402.schemas import (
    AssetAmount,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequirements,
    PaymentRequirementsV1,
    ResourceConfig,
    ResourceInfo,
    SchemeNotFoundError,
    SettleResponse,
)
from x402.server import FacilitatorClient

from murano.payments.assets import Asset, legacy_network, to_atomic, to_usd
from murano.payments.errors import PaymentRejected, PaymentServiceUnavailable
from murano.payments.nonces import Nonces

__all__ = ["ExactPayments", "VerifiedPayment", "not_settled_header"]

log = logging.getLogger("murano.payments")

SCHEME = "exact"
# Authorizations signed for much longer than asked are refused: they would have to be
# remembered (as used) for that long.
_VALIDITY_SLACK_S = 60
_FACILITATOR_STATUS = re.compile(r"failed \((\d{3})\)")

Payload = PaymentPayload | PaymentPayloadV1
Requirements = PaymentRequirements | PaymentRequirementsV1


@dataclass(frozen=True, slots=True)
class VerifiedPayment:
    """A payment the facilitator found valid, claimed for this request."""

    payload: Payload
    requirements: Requirements
    asset: Asset
    payer: str
    atomic: int
    nonce_key: str

    @property
    def usd(self) -> Decimal:
        return to_usd(self.atomic, self.asset.decimals)

    @property
    def response_header(self) -> str:
        """x402 v1 clients read `X-PAYMENT-RESPONSE`, v2 clients `PAYMENT-RESPONSE`."""
        return (
            X_PAYMENT_RESPONSE_HEADER
            if self.payload.x402_version == 1
            else (PAYMENT_RESPONSE_HEADER)
        )


def not_settled_header(payment: VerifiedPayment, reason: str, message: str) -> dict[str, str]:
    """The payment-response header saying that nothing was settled, and why."""
    response = SettleResponse(
        success=False,
        error_reason=reason,
        error_message=message,
        payer=payment.payer,
        transaction="",
        network=payment.asset.network,
    )
    return {payment.response_header: encode_payment_response_header(response)}


class ExactPayments:
    """Payments to `pay_to` in `assets` (one per network), checked by `facilitator`."""

    def __init__(
        self,
        facilitator: FacilitatorClient,
        *,
        pay_to: str,
        assets: list[Asset],
        nonces: Nonces,
        max_timeout_s: int = 300,
        min_validity_s: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not assets:
            raise ValueError("at least one payment asset is needed")
        self.pay_to = pay_to
        self.assets = list(assets)
        self.nonces = nonces
        self.max_timeout_s = max_timeout_s
        self.min_validity_s = min_validity_s
        self._clock = clock
        self._facilitator = facilitator
        self._server = x402ResourceServer(facilitator)
        for asset in self.assets:
            self._server.register(asset.network, _server_scheme())
        self._ready = False
        self._lock = asyncio.Lock()

    @property
    def server(self) -> x402ResourceServer:
        return self._server

    async def close(self) -> None:
        aclose = getattr(self._facilitator, "aclose", None)
        if aclose is not None:
            await aclose()
        await self.nonces.close()

    # -- what to ask for ------------------------------------------------------------------

    async def requirements(self, usd: Decimal) -> list[PaymentRequirements]:
        """One requirement per network for `usd` (rounded up to the token's unit)."""
        return [
            await self.requirement(asset, to_atomic(usd, asset.decimals)) for asset in self.assets
        ]

    async def requirement(self, asset: Asset, atomic: int) -> PaymentRequirements:
        await self._initialize()
        config = ResourceConfig(
            scheme=SCHEME,
            pay_to=self.pay_to,
            price=AssetAmount(amount=str(atomic), asset=asset.address, extra=asset.eip712_domain),
            network=asset.network,
            max_timeout_seconds=self.max_timeout_s,
        )
        try:
            return self._server.build_payment_requirements(config)[0]
        except SchemeNotFoundError as exc:
            raise PaymentServiceUnavailable(
                f"The payment facilitator does not support '{SCHEME}' payments on {asset.network}."
            ) from exc

    async def payment_required(
        self,
        requirements: list[PaymentRequirements],
        resource: ResourceInfo,
        *,
        error: str | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> PaymentRequired:
        return await self._server.create_payment_required_response(
            requirements, resource, error, extensions
        )

    # -- checking what was sent ------------------------------------------------------------

    async def verify(
        self,
        header: str,
        resource: ResourceInfo,
        usd: Decimal | None = None,
        *,
        accept_atomic: Callable[[Asset, int], None] | None = None,
    ) -> VerifiedPayment:
        """Check the payment in `header` (a PAYMENT-SIGNATURE or X-PAYMENT value) against
        a price of `usd`, have the facilitator verify it and claim it for this request.

        With `usd` None the payment sets the amount (wallet top-ups); `accept_atomic`
        then raises PaymentRejected for an amount that is not allowed."""
        payload = _decode(header)
        asset = self._asset_of(payload)
        authorization = _authorization(payload)
        value = _int(authorization.value, "value")
        if usd is None:
            if accept_atomic is not None:
                accept_atomic(asset, value)
            atomic = value
        else:
            atomic = to_atomic(usd, asset.decimals)
        requirement = await self.requirement(asset, atomic)
        requirements = self._match(payload, requirement, resource)
        self._check_authorization(authorization, asset, atomic)
        key = f"{asset.network}:{asset.address}:{authorization.from_address}:{authorization.nonce}"
        key = key.lower()
        ttl = _int(authorization.valid_before, "validBefore") - self._clock()
        if not await self.nonces.claim(key, ttl):
            raise PaymentRejected(
                "payment_already_used",
                "This payment has already been used; sign a new one.",
            )
        try:
            payer = await self._verify_with_facilitator(payload, requirements)
        except BaseException:
            await self.nonces.release(key)
            raise
        return VerifiedPayment(payload, requirements, asset, payer, atomic, key)

    async def settle(self, payment: VerifiedPayment) -> SettleResponse:
        """Settle a verified payment. The claim is kept whatever happens: a payment that
        may have gone through must not be accepted again."""
        try:
            result = await self._server.settle_payment(payment.payload, payment.requirements)
        except Exception as exc:
            log.warning(
                "x402 settlement of %s's payment (%s) failed: %r",
                payment.payer,
                payment.nonce_key,
                exc,
            )
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                message = (
                    "The payment could not be settled: the payment facilitator cannot be "
                    "reached. Nothing was charged."
                )
            else:
                # The request may have reached the facilitator: the transfer may have
                # happened, and the payment cannot be used again either way.
                message = (
                    "The payment's settlement could not be confirmed (the payment facilitator "
                    "did not answer). The images are withheld; check your wallet before "
                    "paying again."
                )
            raise PaymentServiceUnavailable(message) from exc
        if not result.success:
            raise PaymentRejected(
                result.error_reason or "settlement_failed",
                f"The payment could not be settled ({result.error_reason}). Nothing was charged.",
            )
        return result

    async def release(self, payment: VerifiedPayment) -> None:
        """Nothing was settled: the payer may send the same payment again."""
        await self.nonces.release(payment.nonce_key)

    # -- internals ------------------------------------------------------------------------

    async def _initialize(self) -> None:
        """Ask the facilitator what it supports, once; until that works every payment
        gets PaymentServiceUnavailable (and the next request tries again)."""
        if self._ready:
            return
        async with self._lock:
            if self._ready:
                return
            try:
                # `initialize` is synchronous network I/O (GET /supported).
                await asyncio.to_thread(self._server.initialize)
            except Exception as exc:
                log.warning("x402 facilitator /supported failed: %s", exc)
                raise PaymentServiceUnavailable(
                    "The payment facilitator cannot be reached. Please try again later."
                ) from exc
            self._ready = True

    def _asset_of(self, payload: Payload) -> Asset:
        network = payload.get_network()
        for asset in self.assets:
            if network in (asset.network, legacy_network(asset.network)):
                return asset
        accepted = ", ".join(asset.network for asset in self.assets)
        raise PaymentRejected(
            "unsupported_network",
            f"Payments on {network!r} are not accepted here; pay on {accepted}.",
        )

    def _match(
        self, payload: Payload, requirement: PaymentRequirements, resource: ResourceInfo
    ) -> Requirements:
        if payload.get_scheme() != SCHEME:
            raise PaymentRejected(
                "unsupported_scheme", f"Only the '{SCHEME}' payment scheme is accepted."
            )
        if isinstance(payload, PaymentPayloadV1):
            return PaymentRequirementsV1(
                scheme=SCHEME,
                network=payload.network,
                max_amount_required=requirement.amount,
                resource=resource.url,
                description=resource.description,
                mime_type=resource.mime_type,
                pay_to=requirement.pay_to,
                max_timeout_seconds=requirement.max_timeout_seconds,
                asset=requirement.asset,
                extra=dict(requirement.extra),
            )
        matched = self._server.find_matching_requirements([requirement], payload)
        if matched is None:
            raise _mismatch(requirement, payload.accepted)
        return matched

    def _check_authorization(self, authorization: Any, asset: Asset, atomic: int) -> None:
        """What the signed authorization itself commits to (the `accepted` echo of a v2
        payload is only the client's claim)."""
        if str(authorization.to).lower() != self.pay_to.lower():
            raise PaymentRejected(
                "invalid_exact_evm_payload_recipient_mismatch",
                f"The payment is made out to {authorization.to}, not to {self.pay_to}.",
            )
        value = _int(authorization.value, "value")
        if value != atomic:
            raise PaymentRejected(
                "invalid_exact_evm_payload_authorization_value_mismatch",
                f"The payment is for {value} units of {asset.symbol}; this request costs {atomic}.",
            )
        now = self._clock()
        if _int(authorization.valid_after, "validAfter") > now:
            raise PaymentRejected(
                "invalid_exact_evm_payload_authorization_valid_after",
                "The payment authorization is not valid yet (validAfter is in the future).",
            )
        valid_before = _int(authorization.valid_before, "validBefore")
        if valid_before < now + self.min_validity_s:
            raise PaymentRejected(
                "invalid_exact_evm_payload_authorization_valid_before",
                "The payment authorization has expired or expires too soon to be settled "
                f"after generation (validBefore must be at least {self.min_validity_s} s away).",
            )
        if valid_before > now + self.max_timeout_s + _VALIDITY_SLACK_S:
            raise PaymentRejected(
                "invalid_exact_evm_payload_authorization_valid_before",
                "The payment authorization is valid for too long (validBefore must be within "
                f"maxTimeoutSeconds={self.max_timeout_s} of now).",
            )

    async def _verify_with_facilitator(self, payload: Payload, requirements: Requirements) -> str:
        try:
            outcome = await self._server.verify_payment(payload, requirements)
        except SchemeNotFoundError as exc:
            raise PaymentRejected(
                "unsupported_network",
                f"The payment facilitator does not take x402 v{payload.x402_version} "
                f"payments on {payload.get_network()}.",
            ) from exc
        except Exception as exc:
            status = _facilitator_status(exc)
            if status is not None and 400 <= status < 500:
                raise PaymentRejected(
                    "invalid_payment", f"The payment facilitator refused the payment: {exc}"
                ) from exc
            log.warning("x402 verification failed: %s", exc)
            raise PaymentServiceUnavailable(
                "The payment could not be verified: the payment facilitator did not answer. "
                "Nothing was charged."
            ) from exc
        verdict = outcome.verify
        if not verdict.is_valid:
            reason = verdict.invalid_reason or "invalid_payment"
            raise PaymentRejected(reason, f"The payment was refused by the facilitator ({reason}).")
        return verdict.payer or _authorization(payload).from_address


def _server_scheme() -> SchemeNetworkServer:
    # The package's scheme class is unannotated; it implements the protocol.
    return cast(SchemeNetworkServer, ExactEvmServerScheme())  # type: ignore[no-untyped-call]


def _decode(header: str) -> Payload:
    try:
        return decode_payment_signature_header(header.strip())
    except Exception as exc:
        raise PaymentRejected(
            "invalid_payment",
            "The payment header is not a base64-encoded x402 payment payload.",
        ) from exc


def _authorization(payload: Payload) -> Any:
    inner = payload.payload
    if is_permit2_payload(inner):
        raise PaymentRejected(
            "unsupported_payload", "Only EIP-3009 (transferWithAuthorization) payments are taken."
        )
    parsed = ExactEIP3009Payload.from_dict(inner)
    if not parsed.signature or not parsed.authorization.from_address:
        raise PaymentRejected(
            "invalid_payment", "The payment payload has no signed EIP-3009 authorization."
        )
    return parsed.authorization


def _int(value: object, name: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise PaymentRejected(
            "invalid_payment", f"The payment authorization's {name} is not an integer."
        ) from None


def _mismatch(required: PaymentRequirements, accepted: PaymentRequirements) -> PaymentRejected:
    """Name the first term the payment does not agree with."""
    checks: list[tuple[str, object, object]] = [
        ("network", required.network, accepted.network),
        ("asset", required.asset.lower(), accepted.asset.lower()),
        ("payTo", required.pay_to.lower(), accepted.pay_to.lower()),
        ("amount", required.amount, accepted.amount),
        ("maxTimeoutSeconds", required.max_timeout_seconds, accepted.max_timeout_seconds),
    ]
    for name, want, got in checks:
        if want != got:
            return PaymentRejected(
                f"{name}_mismatch",
                f"The payment's {name} is {got}; this request asks for {want}.",
            )
    return PaymentRejected(
        "requirements_mismatch",
        "The payment does not match what this request asks for (the token's EIP-712 "
        "name and version in `extra` must be echoed unchanged).",
    )


def _facilitator_status(exc: Exception) -> int | None:
    """The HTTP status in x402's `Facilitator verify failed (400): ...` errors."""
    match = _FACILITATOR_STATUS.search(str(exc))
    return int(match.group(1)) if match else None
