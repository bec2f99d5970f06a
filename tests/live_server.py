"""The real server in a subprocess (`python -m murano serve`), for the tests that drive it
from outside: the browser, `murano generate`, the README's commands."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["LiveServer", "free_port", "live_server", "wait_ready"]


@dataclass(frozen=True)
class LiveServer:
    url: str
    data_dir: Path
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_server(
    data_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> Iterator[LiveServer]:
    """Start the server on a free port, wait until /readyz says the default model is
    loaded, and stop it on exit. The log is `data_dir/server-<port>.log`."""
    port = free_port()
    log_path = data_dir / f"server-{port}.log"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    command = [sys.executable, "-m", "murano", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), *args]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)
        server = LiveServer(f"http://127.0.0.1:{port}", data_dir, log_path)
        try:
            wait_ready(server.url, process, log_path)
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until the server at `url` answers /readyz with 200 (its default model loaded);
    raise with its log when it exits or takes more than 180 s."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"server not ready:\n{log.read_text()}")
