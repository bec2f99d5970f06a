"""Sign-In-With-X: who a wallet is, proven by a signed EIP-4361 (SIWE) message, with the
x402 package's `sign-in-with-x` extension doing the parsing, checking and cryptography.

Two header shapes are accepted (both base64 JSON in `SIGN-IN-WITH-X`):

* x402's: the message's fields (`domain`, `address`, `uri`, `version`, `chainId`, `nonce`,
  `issuedAt`, ..., `signature`), which the server formats back into the SIWE text;
* Venice's: `{address, message, signature, timestamp, chainId}` with the SIWE text itself.

Either way the message must be for this server's origin, recent (`ttl_s`), not expired,
signed by `address`, and its nonce is single-use (as on Venice). Only EOA signatures are
checked (no chain access, so no EIP-1271 smart wallets).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import OrderedDict
from typing import Any

from x402.extensions.sign_in_with_x import (
    SIGN_IN_WITH_X,
    CreateSIWxResourceServerExtensionOptions,
    DeclareSIWxOptions,
    InMemorySIWxStorage,
    SIWxPayload,
    SIWxValidationOptions,
    create_siwx_resource_server_extension,
    declare_siwx_extension,
    parse_siwx_header,
    validate_siwx_message,
    verify_evm_signature,
    verify_siwx_signature,
)
from x402.schemas import PaymentRequired, PaymentRequirements, ResourceInfo
from x402.schemas.extensions import ResourceServerExtension
from x402.schemas.hooks import ServerPaymentRequiredContext

from murano.errors import AuthenticationFailed
from murano.payments.nonces import Nonces

__all__ = ["SignIn"]

# Hosts whose challenge extension is kept; a client choosing its Host header must not be
# able to grow this without bound.
_MAX_ORIGINS = 16


class SignIn:
    """Challenges for, and verification of, `SIGN-IN-WITH-X` on `networks`."""

    def __init__(
        self,
        networks: list[str],
        nonces: Nonces,
        *,
        origin: str | None = None,
        statement: str = "Sign in to murano",
        ttl_s: int = 600,
    ) -> None:
        self.networks = list(networks)
        self.nonces = nonces
        self.origin = origin.rstrip("/") if origin else None
        self.statement = statement
        self.ttl_s = ttl_s
        self._extensions: OrderedDict[str, ResourceServerExtension] = OrderedDict()

    def origin_for(self, request_origin: str) -> str:
        """The configured public origin; else the one the request came to."""
        return self.origin or request_origin

    async def challenge(
        self,
        request_origin: str,
        resource: ResourceInfo,
        requirements: list[PaymentRequirements],
    ) -> dict[str, Any]:
        """A fresh `extensions["sign-in-with-x"]` value (info with a new nonce,
        supportedChains, schema), from the x402 extension itself."""
        declaration = declare_siwx_extension(
            DeclareSIWxOptions(
                statement=self.statement,
                network=self.networks,
                expiration_seconds=self.ttl_s,
            )
        )[SIGN_IN_WITH_X]
        context = ServerPaymentRequiredContext(
            requirements=requirements,
            resource_info=resource,
            error=None,
            payment_required_response=PaymentRequired(accepts=requirements, resource=resource),
        )
        extension = self._extension(self.origin_for(request_origin))
        challenge: dict[str, Any] = await extension.enrich_payment_required_response(  # type: ignore[misc]
            declaration, context
        )
        return challenge

    async def authenticate(self, header: str, request_origin: str) -> str:
        """The wallet address that signed `header`; AuthenticationFailed otherwise."""
        payload, message = _parse(header)
        origin = self.origin_for(request_origin)
        options = SIWxValidationOptions(max_age=self.ttl_s * 1000)
        validation = await validate_siwx_message(payload, origin, options)
        if not validation.is_valid:
            raise _failed(validation.invalid_message or validation.invalid_reason)
        if message is None:
            verdict = await verify_siwx_signature(payload)
            if not verdict.is_valid:
                raise _failed(verdict.invalid_message or verdict.invalid_reason)
        elif not await verify_evm_signature(message, payload.address, payload.signature):
            raise _failed("signature verification failed")
        if not await self.nonces.claim(f"siwx:{payload.nonce}", self.ttl_s):
            raise _failed("this nonce was already used; sign a new message")
        return payload.address.lower()

    def _extension(self, origin: str) -> ResourceServerExtension:
        extension = self._extensions.get(origin)
        if extension is None:
            options = CreateSIWxResourceServerExtensionOptions(
                origin=origin, storage=InMemorySIWxStorage()
            )
            extension = create_siwx_resource_server_extension(options)
            self._extensions[origin] = extension
            while len(self._extensions) > _MAX_ORIGINS:
                self._extensions.popitem(last=False)
        else:
            self._extensions.move_to_end(origin)
        return extension


def _failed(reason: object) -> AuthenticationFailed:
    return AuthenticationFailed(f"Invalid SIGN-IN-WITH-X header: {reason}")


def _parse(header: str) -> tuple[SIWxPayload, str | None]:
    """The payload, and the signed SIWE text when the header carries it (Venice's shape)."""
    try:
        raw = json.loads(base64.b64decode(header.strip(), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise _failed("not base64-encoded JSON") from None
    if not isinstance(raw, dict):
        raise _failed("not a JSON object")
    if "message" not in raw:
        try:
            return parse_siwx_header(header.strip()), None
        except ValueError as exc:
            raise _failed(exc) from None
    return _from_message(raw), str(raw["message"])


def _from_message(raw: dict[str, Any]) -> SIWxPayload:
    from siwe import SiweMessage  # type: ignore[import-untyped]

    try:
        message = SiweMessage.from_message(str(raw["message"]))
        address = str(raw["address"])
        signature = str(raw["signature"])
    except Exception as exc:
        raise _failed(f"the message is not a valid SIWE message ({exc})") from None
    if address.lower() != str(message.address).lower():
        raise _failed("the address does not match the signed message")
    return SIWxPayload(
        domain=str(message.domain),
        address=address,
        uri=str(message.uri),
        version=str(
            message.version.value if hasattr(message.version, "value") else message.version
        ),
        chain_id=f"eip155:{message.chain_id}",
        type="eip191",
        nonce=str(message.nonce),
        issued_at=str(message.issued_at),
        statement=message.statement,
        expiration_time=_optional(message.expiration_time),
        not_before=_optional(message.not_before),
        signature=signature,
    )


def _optional(value: object) -> str | None:
    return None if value is None else str(value)
