"""`murano generate`'s client on the asynchronous path: a `202` with the job's links, then
its server-sent events. A fake of that contract (an httpx transport) drives what the real
server cannot be made to do on demand (failures, odd chunking, an interrupt); the real
server's path is in `test_async_live.py`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from murano.cli._client import ApiError, Client, ServerEvent

RESULT = {"id": "generate-image-1", "images": ["AAAA"], "timing": {"total": 5}, "request": {}}
EVENTS_PATH = "/api/v1/image/jobs/job-1/events"
JOB: dict[str, Any] = {
    "id": "job-1",
    "status": "queued",
    "queuePosition": 2,
    "links": {"self": "/api/v1/image/jobs/job-1", "events": EVENTS_PATH},
}


def sse(events: list[tuple[str, dict[str, Any]]]) -> bytes:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events).encode()


class FakeJobServer:
    """Answers the generate call with 202 when asked `Prefer: respond-async`, and the
    events stream with `events`, split across chunks as a network would."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        self.events = events
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/v1/image/generate":
            assert request.headers["prefer"] == "respond-async"
            return httpx.Response(202, json=JOB)
        if request.url.path == EVENTS_PATH:
            body = sse(self.events)
            return httpx.Response(
                200, headers={"content-type": "text/event-stream"}, stream=_Chunks(body)
            )
        return httpx.Response(404, json={"error": "Not Found"})


class _Chunks(httpx.SyncByteStream):
    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), 7):
            yield self.body[start : start + 7]


def run(server: FakeJobServer) -> tuple[dict[str, Any], list[ServerEvent]]:
    seen: list[ServerEvent] = []
    transport = httpx.MockTransport(server)
    with Client("http://murano.test", "k", timeout_s=5, transport=transport) as client:
        result = client.generate({"model": "m", "prompt": "p"}, seen.append)
    return result, seen


def test_progress_then_the_result() -> None:
    server = FakeJobServer(
        [
            ("queued", {"queuePosition": 1}),
            ("started", {}),
            ("progress", {"step": 1, "steps": 2, "preview": "UklGRg=="}),
            ("progress", {"step": 2, "steps": 2}),
            ("completed", {"result": RESULT}),
        ]
    )
    result, seen = run(server)
    assert result == RESULT
    kinds = [event.event for event in seen]
    assert kinds == ["queued", "queued", "started", "progress", "progress"]
    assert seen[0].data["queuePosition"] == 2  # the 202 itself
    assert [event.data.get("step") for event in seen[3:]] == [1, 2]
    events_request = server.requests[1]
    assert events_request.headers["authorization"] == "Bearer k"
    assert events_request.headers["accept"] == "text/event-stream"


@pytest.mark.parametrize("kind", ["failed", "cancelled"])
def test_a_failed_job_is_the_servers_message(kind: str) -> None:
    server = FakeJobServer(
        [("started", {}), (kind, {"status": 500, "error": "Inference processing failed"})]
    )
    with pytest.raises(ApiError) as raised:
        run(server)
    assert str(raised.value) == "Inference processing failed (HTTP 500)"


def test_a_stream_that_ends_early() -> None:
    with pytest.raises(ApiError, match="closed the event stream before the images were ready"):
        run(FakeJobServer([("started", {})]))


def test_an_interrupt_cancels_the_job() -> None:
    """Ctrl-C while following: the job would outlive the connection, so it is cancelled."""
    server = FakeJobServer([("started", {}), ("progress", {"step": 1, "steps": 4})])

    def interrupt(event: ServerEvent) -> None:
        if event.event == "started":
            raise KeyboardInterrupt

    transport = httpx.MockTransport(server)
    with (
        Client("http://murano.test", "k", timeout_s=5, transport=transport) as client,
        pytest.raises(KeyboardInterrupt),
    ):
        client.generate({"model": "m", "prompt": "p"}, interrupt)
    cancel = server.requests[-1]
    assert (cancel.method, cancel.url.path) == ("DELETE", "/api/v1/image/jobs/job-1")
    assert cancel.headers["authorization"] == "Bearer k"
