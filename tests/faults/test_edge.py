"""The HTTP edge with real sockets against a real server process: oversized and too many
headers (431), headers or a body sent too slowly (408, then closed), and more connections
than allowed (503 with Retry-After), while /healthz keeps answering."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from murano.settings import Settings
from tests.faults.harness import Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

LIMITS = {
    "MURANO_MAX_HEADER_BYTES": "8192",
    "MURANO_MAX_HEADERS": "20",
    "MURANO_HEADER_TIMEOUT_S": "1",
    "MURANO_BODY_TIMEOUT_S": "1",
    "MURANO_MAX_CONNECTIONS": "40",
    "MURANO_ACCOUNTS_BACKEND": "static",
}


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    running = Server(tmp_path_factory.mktemp("edge"), LIMITS)
    await running.start()
    try:
        yield running
    finally:
        running.stop()


@contextmanager
def connection(server: Server) -> Iterator[socket.socket]:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        yield sock
    finally:
        sock.close()


def answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the server closes the connection: the status, headers and body."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, body


def healthz(server: Server) -> int:
    return httpx.get(f"{server.base}/healthz", timeout=30).status_code


def test_an_oversized_header_block_is_431_and_closed(server: Server) -> None:
    with connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32_768 + b"\r\n\r\n")
        status, headers, body = answer(sock)
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "Request header fields too large."}
    assert healthz(server) == 200


def test_a_header_block_still_arriving_past_the_limit_is_431_and_closed(server: Server) -> None:
    with connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 32_768)  # no end
        status, headers, body = answer(sock)
    assert status == 431 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "Request header fields too large."}
    assert healthz(server) == 200


def test_too_many_header_fields_is_431(server: Server) -> None:
    fields = {f"x-field-{i}": "1" for i in range(30)}
    response = httpx.get(f"{server.base}/healthz", headers=fields, timeout=30)
    assert response.status_code == 431
    assert "At most 20 header fields" in response.json()["error"]
    assert healthz(server) == 200


def test_headers_sent_too_slowly_get_408_and_the_connection_closes(server: Server) -> None:
    with connection(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        assert healthz(server) == 200
        status, headers, body = answer(sock)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(body) == {"error": "The request was not received in time."}


def test_a_body_sent_too_slowly_gets_408(server: Server) -> None:
    with connection(server) as sock:
        sock.sendall(
            b"POST /api/v1/image/generate HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"model"'
        )
        status, _, body = answer(sock)
    assert status == 408
    assert json.loads(body)["error"] == "The request was not received in time."
    assert healthz(server) == 200


def test_idle_connections_are_capped_and_closed_while_healthz_answers(server: Server) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(connection(server)) for _ in range(30)]
        assert healthz(server) == 200  # under the cap: served
        idle += [stack.enter_context(connection(server)) for _ in range(20)]
        with connection(server) as sock:  # over the cap: a clear refusal
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            status, headers, body = answer(sock)
        assert status == 503 and headers["retry-after"] == "1"
        assert "too many open connections" in json.loads(body)["error"]
        # Each idle connection is answered 408 and closed after the header timeout...
        assert {answer(sock)[0] for sock in idle} == {408}
    # ...after which there is room again.
    assert healthz(server) == 200


def test_the_limits_have_safe_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in LIMITS:
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (settings.max_header_bytes, settings.max_headers) == (16_384, 100)
    assert (settings.header_timeout_s, settings.body_timeout_s) == (10.0, 30.0)
    assert (settings.max_connections, settings.keep_alive_s) == (1000, 5)
