"""Pure-ASGI middleware: request ids and the per-request log line, body guards (415, 413),
and gzip/br compression of JSON responses (never of images)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import brotli
from starlette.routing import Match

from murano import __version__
from murano.metrics import Metrics

__all__ = ["BodyGuard", "Compression", "RequestContext"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

access_log = logging.getLogger("murano.access")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class RequestContext:
    """Gives every request an id (sent back as `CF-RAY`, Venice's request-id header, and
    `x-request-id`), Venice's version headers, a metrics count, and one structured log
    line with id, route, status, model, images and timings (never a prompt or a key)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        began = time.monotonic()
        status = 500

        async def send_with_headers(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                present = {bytes(k).lower() for k, _ in headers}
                for name, value in state.get("extra_headers", {}).items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                headers += [
                    (b"cf-ray", request_id.encode()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-venice-version", f"murano-{__version__}".encode()),
                    (b"x-venice-timestamp", str(int(time.time() * 1000)).encode()),
                ]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.responses.labels(path, str(status)).inc()
            fields = {
                "request_id": request_id,
                "method": scope.get("method"),
                "route": path,
                "status": status,
                "duration_ms": round((time.monotonic() - began) * 1000, 1),
                **state.get("log_fields", {}),
            }
            access_log.info(json.dumps(fields, default=str))


def _routed(scope: Scope) -> bool:
    """Whether a route takes this request's method and path: a POST to a GET-only path is
    left to the router's 405 (or 404), not judged by its body."""
    routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
    if routes is None:
        return True  # not under a Starlette app: guard every POST
    return any(route.matches(scope)[0] is Match.FULL for route in routes)


class BodyGuard:
    """POSTs under /api/ must be JSON (415) and at most `max_bytes` long (413), checked
    before the body is parsed. The routes that take input images (`upload_paths`) also take
    `multipart/form-data`, up to `max_upload_bytes`."""

    bodiless_paths = frozenset({"/api/v1/x402/top-up"})
    upload_paths = frozenset(
        {
            "/api/v1/image/edit",
            "/api/v1/image/multi-edit",
            "/api/v1/image/upscale",
            "/api/v1/image/background-remove",
            "/api/v1/images/edits",
        }
    )

    def __init__(self, app: ASGIApp, max_bytes: int, max_upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_upload_bytes = max_bytes if max_upload_bytes is None else max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or not scope["path"].startswith("/api/")
            or not _routed(scope)
        ):
            await self.app(scope, receive, send)
            return
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        length = _header(scope, b"content-length")
        # x402 clients POST to the top-up route with no body at all.
        bodiless = scope["path"] in self.bodiless_paths and length in (None, "0")
        upload = scope["path"] in self.upload_paths
        allowed = ("application/json", "multipart/form-data") if upload else ("application/json",)
        if content_type not in allowed and not bodiless:
            await _send_json(send, 415, {"error": "Invalid request content-type"})
            return
        limit = self.max_upload_bytes if upload else self.max_bytes
        if length is not None and length.isdigit() and int(length) > limit:
            await self._too_large(send, limit)
            return
        # Read the whole body (at most `max_bytes`) before the app sees it: a chunked body
        # has no Content-Length, and an error raised from inside FastAPI's body parsing
        # would become its generic 400.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > limit:
                await self._too_large(send, limit)
                return
            if not message.get("more_body"):
                break
        await self.app(scope, _replay(bytes(body), receive), send)

    async def _too_large(self, send: Send, limit: int) -> None:
        limit_kb = max(1, limit // 1024)
        await _send_json(
            send,
            413,
            {
                "code": "PAYLOAD_TOO_LARGE",
                "error": f"Request body exceeds the maximum allowed size of {limit_kb} KB.",
            },
        )


# Bodies from this size up are serialised and compressed on a worker thread; smaller ones on
# the event loop, where the work takes less time than the hop to a thread (and a small body
# does not wait behind other jobs' post-processing in the pool).
OFFLOAD_BYTES = 64 * 1024


def _compress(body: bytes, encoding: str) -> bytes:
    if encoding == "br":
        return bytes(brotli.compress(body, quality=4))
    return gzip.compress(body, compresslevel=5)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app `body` once, then waits on the real one (for the
    disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


class Compression:
    """Compresses `application/json` responses with br or gzip when the client accepts
    them (br preferred, as Venice). Image bodies pass through untouched."""

    minimum_size = 500
    offload_size = OFFLOAD_BYTES

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accepted = {
            part.split(";")[0].strip().lower()
            for part in (_header(scope, b"accept-encoding") or "").split(",")
        }
        encoding = "br" if "br" in accepted else "gzip" if "gzip" in accepted else None
        if encoding is None:
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []
        streaming = False

        async def buffering_send(message: Message) -> None:
            nonlocal start, streaming
            if streaming:
                await send(message)
                return
            if message["type"] == "http.response.start":
                # Server-Sent Events go out as they come: buffering would hold them back.
                kind = dict(message.get("headers", [])).get(b"content-type", b"")
                if kind.startswith(b"text/event-stream"):
                    streaming = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            await send_compressed(start, b"".join(chunks))

        async def send_compressed(start_message: Message, body: bytes) -> None:
            headers = [(k, v) for k, v in start_message.get("headers", [])]
            content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            already = any(k.lower() == b"content-encoding" for k, _ in headers)
            if (
                content_type.startswith(b"application/json")
                and not already
                and len(body) >= self.minimum_size
            ):
                # Compressing megabytes of base64 takes long enough to stall every other
                # request: small bodies inline, large ones on a worker thread.
                if len(body) >= self.offload_size:
                    body = await asyncio.to_thread(_compress, body, encoding)
                else:
                    body = _compress(body, encoding)
                headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                headers += [
                    (b"content-encoding", encoding.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"vary", b"Accept-Encoding"),
                ]
            await send({**start_message, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffering_send)
