"""The two fault runs, as the tests and `benchmarks/faults.py` both use them.

- `outage_under_load`: a server on PostgreSQL and Redis, each behind a `Relay`; concurrent
  clients while the relays are cut (every connection closed, new ones refused) and
  restored on a schedule.
- `kill_under_load`: a server on PostgreSQL, killed with SIGKILL while requests are in
  flight, then started again on the same data directory.

Each returns a `Report`: faults injected, requests and their statuses, and the money of
every key compared with the images its clients received."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from tests.faults.harness import (
    DROPPED,
    PRICE,
    REDIS_URL,
    Key,
    Money,
    Server,
    host_port,
    load,
    make_keys,
    money,
    postgres_database,
    settled,
    through,
    usage_cli,
)
from tests.faults.relay import Relay


@dataclass
class Report:
    name: str
    faults: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    missing_retry_after: int = 0
    delivered: int = 0
    charged_images: int = 0
    # Sum over keys of (balance after) - (balance before - price × images delivered).
    money_difference: Decimal = Decimal(0)
    reserved_after: Decimal = Decimal(0)
    cli_matches: bool = True
    ready_after_restart_s: float | None = None
    dropped_by_kill: int = 0
    seconds: float = 0.0
    money: list[Money] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


def _count(keys: list[Key], status: int) -> int:
    return sum(key.statuses[status] for key in keys)


async def _delivered(keys: list[Key], images: int, limit_s: float = 90) -> None:
    """Wait until the clients have received `images` images in all."""
    deadline = time.monotonic() + limit_s
    while _count(keys, 200) < images:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {_count(keys, 200)} images delivered, expected {images}")
        await asyncio.sleep(0.05)


async def _account(report: Report, server: Server, keys: list[Key], database_url: str) -> None:
    records = await asyncio.to_thread(usage_cli, database_url)
    for key in keys:
        got = await money(server.base, key)
        report.money.append(got)
        report.statuses.update(key.statuses)
        report.missing_retry_after += key.missing_retry_after
        delivered = key.statuses[200]
        report.delivered += delivered
        report.charged_images += got.delivered_records
        report.money_difference += got.balance - (key.balance - PRICE * delivered)
        report.reserved_after += got.reserved
        mine = [r for r in records if r["key_id"] == key.id]
        cli_charged = sum((Decimal(r["charged_usd"]) for r in mine), Decimal(0))
        report.cli_matches &= cli_charged == got.charged == key.balance - got.balance


async def outage_under_load(
    work: Path,
    *,
    clients: int = 8,
    keys: int = 4,
    usd: str = "5",
    schedule: tuple[tuple[str, float, float], ...] = (("database", 0.0, 3.0), ("redis", 4.0, 2.0)),
) -> Report:
    """`schedule`: (dependency, seconds after the first images, seconds cut). Load runs
    until images are delivered again after the last restore."""
    report = Report("PostgreSQL and Redis cut under load")
    began = time.monotonic()
    async with postgres_database() as database_url:
        relays = {
            "database": Relay(*host_port(database_url)),
            "redis": Relay(*host_port(REDIS_URL)),
        }
        ports = {name: await relay.start() for name, relay in relays.items()}
        server = Server(
            work / "server",
            {
                "MURANO_DATABASE_URL": through(database_url, ports["database"]),
                "MURANO_REDIS_URL": through(REDIS_URL, ports["redis"]),
                "MURANO_DATABASE_TIMEOUT_S": "2",
                "MURANO_REDIS_TIMEOUT_S": "1",
            },
        )
        try:
            await server.start()
            made = await make_keys(server.base, keys, usd)
            stop = asyncio.Event()
            clients_task = asyncio.create_task(load(server.base, made, stop, clients))

            async def cut(name: str, at_s: float, for_s: float) -> None:
                await asyncio.sleep(at_s)
                await relays[name].cut()
                report.faults.append(f"{name} cut for {for_s:g} s")
                await asyncio.sleep(for_s)
                await relays[name].restore()

            await _delivered(made, 4)
            await asyncio.gather(*(cut(*step) for step in schedule))
            await _delivered(made, _count(made, 200) + 4)  # service resumed by itself
            stop.set()
            await clients_task
            await settled(server.base, made)
            await _account(report, server, made, database_url)
        finally:
            await asyncio.to_thread(server.stop)
            for relay in relays.values():
                await relay.close()
    report.seconds = time.monotonic() - began
    return report


async def kill_under_load(
    work: Path,
    *,
    clients: int = 8,
    keys: int = 4,
    usd: str = "5",
    kill_after_images: int = 8,
    batch_s: float = 0.2,
) -> Report:
    report = Report("kill -9 with requests in flight (PostgreSQL)")
    began = time.monotonic()
    async with postgres_database() as database_url:
        server = Server(
            work / "server",
            {"MURANO_DATABASE_URL": database_url, "FAULTS_BATCH_S": str(batch_s)},
        )
        try:
            await server.start()
            made = await make_keys(server.base, keys, usd)
            stop = asyncio.Event()
            clients_task = asyncio.create_task(load(server.base, made, stop, clients))
            await _delivered(made, kill_after_images)
            await asyncio.sleep(0.1)  # and more in flight
            before = _count(made, DROPPED)
            stop.set()  # no new requests: what is cut is what was in flight
            server.kill()
            report.faults.append(f"SIGKILL after {_count(made, 200)} images delivered")
            await clients_task
            report.dropped_by_kill = _count(made, DROPPED) - before
            # The clients stopped; what they record from here on is nothing.
            restarted = time.monotonic()
            await server.start()
            report.ready_after_restart_s = time.monotonic() - restarted
            # No waiting: the money must be exact as soon as /readyz says 200.
            await _account(report, server, made, database_url)
        finally:
            await asyncio.to_thread(server.stop)
    report.seconds = time.monotonic() - began
    return report
