"""What the fault tests and `benchmarks/faults.py` share: a real server process
(`tests.faults.server`), a PostgreSQL database of its own, keys with balances made through
the admin API, concurrent load that records every answer (or the lack of one), and the
money afterwards, read back three ways."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

POSTGRES_URL = os.environ.get(
    "MURANO_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("MURANO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_KEY = "faults-admin-key-0123456789"
PRICE = Decimal("0.01")
BODY = {"model": "test-model", "prompt": "a lighthouse", "width": 64, "height": 64}
DROPPED = 0  # the status recorded for a request that got no HTTP answer at all


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def host_port(url: str) -> tuple[str, int]:
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    host, _, port = netloc.partition(":")
    return host, int(port)


def through(url: str, port: int) -> str:
    """`url` with its host and port replaced by a relay's."""
    host, old = host_port(url)
    return url.replace(f"{host}:{old}", f"127.0.0.1:{port}", 1)


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database (the server has no schema option), dropped after."""
    name = f"faults_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(POSTGRES_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@dataclass
class Server:
    """`python -m tests.faults.server` on a port of its own."""

    data_dir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.data_dir / "server.log"

    async def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MURANO_API_KEYS": ADMIN_KEY,
            "MURANO_DEFAULT_RPM": "100000",
            "MURANO_FAILURE_BUDGET": "100000",
            "MURANO_DATA_DIR": str(self.data_dir),
            "MURANO_PORT": str(self.port),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            **self.env,
        }
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults.server"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        await self.wait_ready()

    async def wait_ready(self, limit_s: float = 120) -> None:
        deadline = time.monotonic() + limit_s
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise RuntimeError(f"server exited:\n{self.log.read_text()[-4000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{self.base}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not ready:\n{self.log.read_text()[-4000:]}")

    def kill(self) -> None:
        """kill -9."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Key:
    id: str
    secret: str
    balance: Decimal
    statuses: Counter[int] = field(default_factory=Counter)
    missing_retry_after: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


async def make_keys(base: str, count: int, usd: str) -> list[Key]:
    keys = []
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        for number in range(count):
            body = {"description": f"faults {number}", "balanceUsd": usd, "rpm": 100000}
            response = await client.post("/api/v1/api_keys", json=body, headers=ADMIN)
            response.raise_for_status()
            data = response.json()["data"]
            keys.append(Key(data["id"], data["apiKey"], Decimal(usd)))
    return keys


async def load(base: str, keys: list[Key], stop: asyncio.Event, clients: int) -> None:
    """`clients` concurrent clients, each on its own key in turn, until `stop`."""

    async def client(number: int) -> None:
        key = keys[number % len(keys)]
        async with httpx.AsyncClient(base_url=base, timeout=60) as http:
            while not stop.is_set():
                try:
                    response = await http.post(
                        "/api/v1/image/generate", json=BODY, headers=key.auth
                    )
                except httpx.TransportError:
                    key.statuses[DROPPED] += 1
                    await asyncio.sleep(0.05)
                    continue
                key.statuses[response.status_code] += 1
                if response.status_code == 503 and "retry-after" not in response.headers:
                    key.missing_retry_after += 1
                if response.status_code != 200:
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(client(number) for number in range(clients)))


@dataclass(frozen=True)
class Money:
    """One key's money read back: the key's balance and reservations (admin API), and its
    usage records (admin API), after the run."""

    balance: Decimal
    reserved: Decimal
    charged: Decimal
    delivered_records: int
    outcomes: Mapping[str, int]


async def money(base: str, key: Key) -> Money:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        got = (await client.get(f"/api/v1/api_keys/{key.id}", headers=ADMIN)).json()["data"]
        usage = await client.get(
            "/api/v1/usage", params={"key": key.id, "limit": 1000}, headers=ADMIN
        )
    records = usage.json()["data"]
    outcomes = Counter(record["outcome"] for record in records)
    charged = sum((Decimal(str(r["chargedUsd"])) for r in records), Decimal(0))
    return Money(
        balance=Decimal(str(got["balanceUsd"])),
        reserved=Decimal(str(got["reservedUsd"])),
        charged=charged,
        delivered_records=outcomes["delivered"],
        outcomes=dict(outcomes),
    )


async def settled(base: str, keys: list[Key], limit_s: float = 60) -> None:
    """Wait until no key holds a reservation (the journal has reached the database)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, KeyError, ValueError):
            held = [(await money(base, key)).reserved for key in keys]
            if not any(held):
                return
        await asyncio.sleep(0.2)
    raise AssertionError("reservations still held after the faults ended")


def usage_cli(database_url: str) -> list[dict[str, Any]]:
    """`murano usage --json` against the database, as an operator would."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "murano",
            "usage",
            "--database-url",
            database_url,
            "--limit",
            "10000",
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        timeout=120,
    )
    records: list[dict[str, Any]] = json.loads(out.stdout)
    return records
