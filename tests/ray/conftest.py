"""One Ray cluster for the whole run: `murano serve --ray` (two CPU replicas of the tiny
model) started inside a network namespace this fixture creates with only loopback up, so
that none of Ray's services (which listen on every interface) can be reached from, or
reach, anything else. Inside it: a private redis-server; PostgreSQL through its unix socket
(a fresh database per run). The tests reach the Serve proxy through a unix socket that
`bridge.py` relays to the namespace's loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).parents[2]
PG_SOCKET_DIR = "/var/run/postgresql"
PORT = 8000
REDIS_PORT = 6379
MODEL = "murano-tiny"
PRICE = Decimal("0.01")


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "redis-server"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    if not Path(PG_SOCKET_DIR).exists():
        return f"no PostgreSQL socket in {PG_SOCKET_DIR}"
    try:
        import ray  # noqa: F401
    except ModuleNotFoundError:
        return "ray[serve] not installed (pip install 'murano-server[ray]')"
    return None


def _netns(name: str, *argv: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", name, *argv], **kwargs)


async def _admin_sql(database: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_SOCKET_DIR, user="postgres", database=database)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class RayServer:
    namespace: str
    socket: Path
    database: str
    process: subprocess.Popen[bytes]
    log: Path
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    stopped: bool = False

    @property
    def database_url(self) -> str:
        return f"postgresql://postgres@/{self.database}?host={PG_SOCKET_DIR}"

    def client(self, **kwargs: Any) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(transport=transport, base_url="http://murano", **kwargs)

    def async_client(self, **kwargs: Any) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(uds=str(self.socket))
        return httpx.AsyncClient(transport=transport, base_url="http://murano", **kwargs)

    def create_key(self, balance_usd: str = "1") -> tuple[str, str]:
        """A fresh key (its own rate limit) with `balance_usd`: its secret and its id."""
        out = subprocess.run(
            [sys.executable, "-m", "murano", "keys", "create", "--name", "ray-test",
             "--balance-usd", balance_usd, "--rpm", "1000", "--json",
             "--database-url", self.database_url],
            check=True, capture_output=True, cwd=ROOT, env=_env(),
        )  # fmt: skip
        created = json.loads(out.stdout)
        return created["key"], created["id"]

    async def ledger(self, key_id: str) -> dict[str, Any]:
        """The key's balance, what is still reserved, its open reservations and what its
        usage records charged (in micro-USD)."""
        import asyncpg

        conn = await asyncpg.connect(host=PG_SOCKET_DIR, user="postgres", database=self.database)
        try:
            row = await conn.fetchrow(
                "SELECT id, balance_micros, reserved_micros FROM api_keys WHERE id = $1", key_id
            )
            assert row is not None
            open_ = await conn.fetchval(
                "SELECT count(*) FROM reservations WHERE key_id = $1 AND settled_at IS NULL",
                row["id"],
            )
            charged = await conn.fetchval(
                "SELECT coalesce(sum(charged_micros), 0) FROM usage_records WHERE key_id = $1",
                row["id"],
            )
        finally:
            await conn.close()
        return {
            "balance": row["balance_micros"],
            "reserved": row["reserved_micros"],
            "open_reservations": open_,
            "charged": charged,
        }

    def namespace_processes(self) -> list[str]:
        pids = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True
        ).stdout.split()
        helpers = {str(p.pid) for p in self.helpers}
        names = []
        for pid in pids:
            if pid in helpers:
                continue
            try:
                names.append(
                    Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
            except OSError:
                continue
        return names

    def replica_pids(self) -> list[int]:
        """The processes of the tiny model's Serve replicas (Ray names them)."""
        pids = []
        for pid in subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True
        ).stdout.split():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"ServeReplica:murano:model-murano-tiny" in cmdline:
                pids.append(int(pid))
        return pids

    def stop(self, timeout_s: float = 90) -> int:
        """SIGTERM, as an operator would; the exit status."""
        if not self.stopped:
            self.stopped = True
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "MURANO_PLAYGROUND": "false",
        "MURANO_RAY_OBJECT_STORE_MB": "150",
    }


def _models_file(folder: Path) -> Path:
    from murano.engine.tiny import build_default_model

    model_dir = build_default_model(folder / "models" / "tiny")
    path = folder / "models.toml"
    path.write_text(
        f'[[models]]\nid = "{MODEL}"\nsource = "{model_dir}"\ndevice = "cpu"\n'
        '[models.model_spec]\nname = "Tiny"\ntraits = ["default"]\n'
        f"[models.model_spec.pricing.generation]\nusd = {PRICE}\ndiem = {PRICE}\n"
        "[models.ray]\nnum_replicas = 2\nnum_cpus = 1\n",
        encoding="utf-8",
    )
    return path


def _wait_ready(server: RayServer, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"murano serve --ray exited:\n{server.log.read_text()[-6000:]}")
        if _ready(server.socket):
            return
        time.sleep(0.5)
    raise RuntimeError(f"murano serve --ray not ready:\n{server.log.read_text()[-6000:]}")


def _ready(path: Path) -> bool:
    """GET /readyz on a plain socket (httpx leaks one when the bridge drops a connection)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(path))
            sock.sendall(b"GET /readyz HTTP/1.0\r\nHost: murano\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False


def _cleanup(namespace: str) -> None:
    """Kill whatever is left in the namespace (only our processes run there), delete it."""
    out = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    for pid in out.stdout.split():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", namespace], check=False)


@pytest.fixture(scope="session")
def ray_server() -> Iterator[RayServer]:
    reason = _missing()
    if reason is not None:
        pytest.skip(reason)
    token = secrets.token_hex(4)
    namespace, database = f"murano-ray-{token}", f"murano_ray_{token}"
    # Short: Ray's unix sockets live under the data dir and paths are capped at 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="mray-"))
    models_file = _models_file(folder)
    asyncio.run(_admin_sql("postgres", f'CREATE DATABASE "{database}"'))
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    server: RayServer | None = None
    helpers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            ["ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up"], check=True
        )
        redis = _netns(
            namespace, "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        sock = folder / "murano.sock"
        bridge = _netns(
            namespace, sys.executable, str(ROOT / "tests/ray/bridge.py"), str(sock), str(PORT)
        )
        log = folder / "serve.log"
        with log.open("wb") as out:
            process = _netns(
                namespace, sys.executable, "-m", "murano", "serve", "--ray",
                "--port", str(PORT), "--data-dir", str(folder / "data"),
                "--models", str(models_file),
                "--database-url", f"postgresql://postgres@/{database}?host={PG_SOCKET_DIR}",
                "--redis-url", f"redis://127.0.0.1:{REDIS_PORT}/0",
                cwd=ROOT, env=_env(), stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        helpers += [redis, bridge, process]
        server = RayServer(namespace, sock, database, process, log, helpers)
        _wait_ready(server)
        yield server
    finally:
        if server is not None:
            server.stop()
        _cleanup(namespace)
        for helper in helpers:
            helper.wait()
        asyncio.run(_admin_sql("postgres", f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        shutil.rmtree(folder, ignore_errors=True)
