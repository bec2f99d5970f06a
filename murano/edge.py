"""Limits at the HTTP edge, on uvicorn's h11 protocol (h11 parses; this only bounds it).

    request headers over `max_header_bytes`    431 (still arriving: h11's own
                                                 `max_incomplete_event_size`, closed)
    more than `max_headers` header fields       431
    headers not complete `header_timeout_s`     408, connection closed
      after the connection opened or the
      previous response ended
    body not complete `body_timeout_s` after    408 (closed if a response had begun)
      the headers
    a connection beyond `max_connections`       each request on it: 503 with Retry-After,
                                                 then closed

Bodies are bounded separately by `MURANO_MAX_BODY_BYTES` (413, `api.middleware.BodyGuard`).
Idle keep-alive connections close after uvicorn's `timeout_keep_alive`.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["EdgeLimits", "edge_protocol"]

ASGIApp = Any


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    max_header_bytes: int = 16_384
    max_headers: int = 100
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_connections: int = 1000


_TIMEOUT = "The request was not received in time."
_HEADERS_TOO_LARGE = "Request header fields too large."
_BUSY = "The server has too many open connections. Please try again later."


def edge_protocol(limits: EdgeLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol class with `limits` (pass as `http=` to uvicorn)."""
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits})


def _raw_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


class EdgeProtocol(H11Protocol):
    limits: ClassVar[EdgeLimits] = EdgeLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = _HeaderLimits(self.app, self.limits)
        self._timer: asyncio.TimerHandle | None = None
        self._timed_cycle: object = None
        self._waiting_for_body = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        over = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if over:
            self.app = _refuse
        self._arm(self.limits.header_timeout_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.limits.header_timeout_s, self._headers_late)
            self._follow()

    def send_400_response(self, msg: str) -> None:
        # h11 refuses a header block over its size limit with a 400 hint of 431.
        if len(self.conn.trailing_data[0]) <= self.limits.max_header_bytes:
            super().send_400_response(msg)
            return
        self.transport.write(
            _raw_response(431, "Request Header Fields Too Large", _HEADERS_TOO_LARGE)
        )
        self.transport.close()

    def _follow(self) -> None:
        """Move the timers along with the request: headers in → body timer; body in →
        none."""
        cycle = self.cycle
        if cycle is None:
            return
        if cycle is not self._timed_cycle:
            self._timed_cycle = cycle
            self._cancel()
            self._waiting_for_body = cycle.more_body
            if cycle.more_body:
                self._arm(self.limits.body_timeout_s, self._body_late)
        elif self._waiting_for_body and not cycle.more_body:
            self._waiting_for_body = False
            self._cancel()

    def _headers_late(self) -> None:
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served
        self._close_with_timeout()

    def _body_late(self) -> None:
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        self._close_with_timeout()

    def _close_with_timeout(self) -> None:
        if self.transport.is_closing():
            return
        if self.conn.our_state is not h11.ERROR:
            self.transport.write(_raw_response(408, "Request Timeout", _TIMEOUT))
        self.transport.close()

    def _arm(self, seconds: float, handler: Any) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, handler)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _HeaderLimits:
    """A header block h11 parsed whole from one read never hit its incomplete-event limit;
    count and size are checked again here, before the app sees the request."""

    def __init__(self, app: ASGIApp, limits: EdgeLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = scope["headers"]
            size = len(scope["raw_path"]) + len(scope["query_string"])
            size += sum(len(name) + len(value) + 4 for name, value in headers)
            if len(headers) > self.limits.max_headers:
                message = (
                    f"{_HEADERS_TOO_LARGE} At most {self.limits.max_headers} header fields "
                    "are allowed."
                )
                await _json(send, 431, message, [(b"connection", b"close")])
                return
            if size > self.limits.max_header_bytes:
                await _json(send, 431, _HEADERS_TOO_LARGE, [(b"connection", b"close")])
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    await _json(send, 503, _BUSY, [(b"retry-after", b"1"), (b"connection", b"close")])


async def _json(
    send: Any, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
