"""Typed dependencies: handler signatures read like prose (`credentials: CurrentCredentials`).

`CurrentCredentials` is the one place a request's credentials are resolved — the API key,
or, without one on a server that takes x402, the payment and wallet sign-in headers — and
what the routes hand to admission. It reads only the request itself, so a route works
without any middleware in front of it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from murano.accounts import BALANCE_HEADER, format_usd
from murano.accounts.base import Accounts, Principal
from murano.accounts.credentials import Credentials, X402Request
from murano.api.delivery import Delivery
from murano.api.serving import ImageService

__all__ = [
    "Connection",
    "CurrentCredentials",
    "CurrentPrincipal",
    "Service",
    "bearer_token",
]

ANONYMOUS = Principal(key_id="", name="anonymous", anonymous=True)


def bearer_token(request: Request) -> str | None:
    """The key in `Authorization: Bearer KEY`; None without the header. Any other form
    (a raw key, another scheme) is "" and fails authentication on every endpoint alike."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _service(request: Request) -> ImageService:
    service: ImageService = request.app.state.service
    return service


async def _credentials(request: Request) -> Credentials:
    """The caller. Without a key and with x402 payments on, an anonymous principal with the
    request's x402 headers goes on to validation and is asked to pay; otherwise the key's
    principal, or AuthenticationFailed (401)."""
    token = bearer_token(request)
    x402_on = _service(request).payment_gate is not None
    if token is None and x402_on:
        return Credentials(ANONYMOUS, X402Request.from_scope(request.scope))
    accounts: Accounts = request.app.state.accounts
    principal = await accounts.authenticate(token)
    request.state.principal = principal
    if principal.balance_usd is not None:
        # Venice sends the balance before the request on every authenticated response,
        # errors included; admission replaces it with the same value read under lock.
        request.state.extra_headers = {BALANCE_HEADER: format_usd(principal.balance_usd)}
    # --no-auth makes every key anonymous: with x402 on, such a caller pays too.
    x402 = X402Request.from_scope(request.scope) if principal.anonymous and x402_on else None
    return Credentials(principal, x402)


CurrentCredentials = Annotated[Credentials, Depends(_credentials)]


async def _principal(credentials: CurrentCredentials) -> Principal:
    return credentials.principal


# For routes that only need to know who is calling (a job's owner), not to admit them.
CurrentPrincipal = Annotated[Principal, Depends(_principal)]
Service = Annotated[ImageService, Depends(_service)]


def _delivery(request: Request) -> Delivery:
    return Delivery.of(request)


Connection = Annotated[Delivery, Depends(_delivery)]
