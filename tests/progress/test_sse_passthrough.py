"""Server-Sent Events are not held back by the compression middleware: each event reaches
the server as soon as the app sends it, even for a client that accepts gzip or br."""

from __future__ import annotations

import asyncio
from typing import Any

from murano.api.middleware import Compression


async def test_an_event_stream_passes_through_unbuffered() -> None:
    sent: list[dict[str, Any]] = []
    finish = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})  # fmt: skip
        await send({"type": "http.response.body", "body": b"data: {}\n\n", "more_body": True})
        await finish.wait()
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "headers": [(b"accept-encoding", b"gzip, br")]}
    task = asyncio.ensure_future(Compression(app)(scope, receive, send))  # type: ignore[arg-type]
    for _ in range(100):
        if len(sent) == 2:
            break
        await asyncio.sleep(0)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[1]["body"] == b"data: {}\n\n"
    finish.set()
    await task
    assert len(sent) == 3 and all(k != b"content-encoding" for k, _ in sent[0]["headers"])
