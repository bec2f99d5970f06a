"""Typed dependencies: handler signatures read like prose (`principal: CurrentPrincipal`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from murano.accounts import BALANCE_HEADER, format_usd
from murano.accounts.base import Accounts, Principal
from murano.api.delivery import Delivery
from murano.api.serving import ImageService

__all__ = ["Connection", "CurrentPrincipal", "Service", "bearer_token"]


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else header


def _service(request: Request) -> ImageService:
    service: ImageService = request.app.state.service
    return service


async def _principal(request: Request) -> Principal:
    """The caller. Without credentials and with x402 payments on, an anonymous principal
    goes on to validation and is asked to pay; otherwise AuthenticationFailed (401)."""
    accounts: Accounts = request.app.state.accounts
    token = bearer_token(request)
    service = _service(request)
    if token is None and service.payment_gate is not None:
        return Principal(key_id="", name="anonymous", anonymous=True)
    principal = await accounts.authenticate(token)
    request.state.principal = principal
    if principal.balance_usd is not None:
        # Venice sends the balance before the request on every authenticated response,
        # errors included; admission replaces it with the same value read under lock.
        request.state.extra_headers = {BALANCE_HEADER: format_usd(principal.balance_usd)}
    return principal


CurrentPrincipal = Annotated[Principal, Depends(_principal)]
Service = Annotated[ImageService, Depends(_service)]


def _delivery(request: Request) -> Delivery:
    return Delivery.of(request)


Connection = Annotated[Delivery, Depends(_delivery)]
