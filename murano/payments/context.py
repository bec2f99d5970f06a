"""The x402 parts of the current request, for code that is not handed the request.

`ImageService` calls the payment gate with only `(principal, charge)`; the payment headers
and the URL being paid for reach the gate through a `ContextVar` that `X402Context` (a
pure-ASGI middleware, so the variable is visible in the endpoint's task) sets for each HTTP
request and resets afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

__all__ = [
    "LEGACY_PAYMENT_HEADERS",
    "PAYMENT_HEADER",
    "SIWX_HEADERS",
    "X402Context",
    "X402Request",
    "bind_request",
    "current_request",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PAYMENT_HEADER = "payment-signature"  # x402 v2
# x402 v1, and Venice's own older name for it.
LEGACY_PAYMENT_HEADERS = ("x-payment", "x-402-payment")
SIWX_HEADERS = ("sign-in-with-x", "x-sign-in-with-x")


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


_current: ContextVar[X402Request | None] = ContextVar("murano_x402_request", default=None)


def current_request() -> X402Request:
    """The request being served. RuntimeError when `X402Context` is not installed: the
    gate cannot ask for, or check, a payment without the request's headers."""
    request = _current.get()
    if request is None:
        raise RuntimeError(
            "no x402 request context: add murano.payments.X402Context to the app's middleware"
        )
    return request


@contextmanager
def bind_request(request: X402Request) -> Iterator[X402Request]:
    """Make `request` the current one inside the block (what `X402Context` does per HTTP
    request; for callers outside HTTP, and tests)."""
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


class X402Context:
    """Pure-ASGI middleware that makes `current_request()` work for each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with bind_request(X402Request.from_scope(scope)):
            await self.app(scope, receive, send)


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
