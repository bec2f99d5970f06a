"""`Credentials`: what one request presents to be let in, read from its headers once (by
the API's `CurrentCredentials` dependency, `murano.api.deps`) and handed to admission:

    Authorization: Bearer KEY          → the key's principal, or AuthenticationFailed (401)
    no key, on a server that takes x402 → an anonymous principal and the request's `x402`:
        PAYMENT-SIGNATURE / X-PAYMENT      pay for this request (`exact`)
        SIGN-IN-WITH-X                     draw on the wallet's credit

Nothing here depends on a middleware or on the task it runs in: a route, a background job
or a test hands `Credentials` on explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from murano.accounts.base import Principal

__all__ = [
    "LEGACY_PAYMENT_HEADERS",
    "PAYMENT_HEADER",
    "SIWX_HEADERS",
    "Credentials",
    "X402Request",
]

PAYMENT_HEADER = "payment-signature"  # x402 v2
# x402 v1, and Venice's own older name for it.
LEGACY_PAYMENT_HEADERS = ("x-payment", "x-402-payment")
SIWX_HEADERS = ("sign-in-with-x", "x-sign-in-with-x")

Scope = MutableMapping[str, Any]


@dataclass(frozen=True, slots=True)
class X402Request:
    """What the payments layer needs from one request. `payment` is (header name, value)
    of the first payment header present, v2 first; `siwx` the Sign-In-With-X header."""

    method: str
    origin: str
    path: str
    payment: tuple[str, str] | None = None
    siwx: str | None = None

    @property
    def url(self) -> str:
        return self.origin + self.path

    @classmethod
    def from_scope(cls, scope: Scope) -> X402Request:
        headers = _headers(scope.get("headers", ()))
        host = headers.get("host") or _server_host(scope)
        payment = next(
            (
                (name, headers[name])
                for name in (PAYMENT_HEADER, *LEGACY_PAYMENT_HEADERS)
                if headers.get(name)
            ),
            None,
        )
        siwx = next((headers[name] for name in SIWX_HEADERS if headers.get(name)), None)
        return cls(
            method=str(scope.get("method", "GET")),
            origin=f"{scope.get('scheme', 'http')}://{host}",
            path=str(scope.get("root_path", "")) + str(scope.get("path", "/")),
            payment=payment,
            siwx=siwx,
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """A request's caller, resolved: see the module docstring. `x402` is set only for an
    anonymous caller on a server that takes x402 payments."""

    principal: Principal
    x402: X402Request | None = None


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in raw:
        result.setdefault(bytes(key).decode("latin-1").lower(), bytes(value).decode("latin-1"))
    return result


def _server_host(scope: Scope) -> str:
    server = scope.get("server")
    if not server:
        return "localhost"
    host, port = server
    return f"{host}:{port}"
