"""Input images for the edit tests: small encoded images, a PNG header that claims any size,
and a local HTTP server on 127.0.0.1 serving chosen bodies."""

from __future__ import annotations

import base64
import io
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

__all__ = ["Route", "data_url", "encoded", "png_claiming", "served"]


def encoded(width: int = 256, height: int = 256, fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A gradient image of that size, encoded."""
    alpha = (255,) if mode == "RGBA" else ()
    pixels = [
        ((x * 7) % 256, (y * 5) % 256, (x + y) % 256, *alpha)
        for y in range(height)
        for x in range(width)
    ]
    image = Image.new(mode, (width, height))
    image.putdata(pixels)
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and header that claim `width`×`height`, without pixel data: enough for
    a decoder to read the size, so a pixel-limit check needs no huge image."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"")


def _chunk(kind: bytes, payload: bytes) -> bytes:
    crc = struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)
    return struct.pack(">I", len(payload)) + kind + payload + crc


@dataclass
class Route:
    """What the server answers on one path; `hold` (when set) blocks the answer until set."""

    body: bytes = b""
    status: int = 200
    content_type: str = "image/png"
    headers: dict[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@contextmanager
def served(routes: dict[str, Route]) -> Iterator[str]:
    """A threaded HTTP server on 127.0.0.1 answering `routes`; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if route.hold is not None:
                route.hold.wait(30)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        for route in routes.values():
            if route.hold is not None:
                route.hold.set()
        server.shutdown()
        server.server_close()
