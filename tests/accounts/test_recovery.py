"""Money is never lost: a crash between deciding an outcome and the database taking it, a
server that goes silent, and a database that goes away while requests settle. On SQLite and
PostgreSQL (outages: PostgreSQL behind a TCP relay that the test cuts)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select, update

from murano.accounts import (
    Charge,
    LedgerAccounts,
    MemoryAccounts,
    Outcome,
    RedisRateLimiter,
    SqlAccounts,
)
from murano.accounts._tables import instances, reservations
from murano.accounts.outbox import FileOutbox, Settlement
from murano.accounts.store import utcnow
from murano.errors import DependencyUnavailable
from tests.faults.relay import Relay

from .conftest import POSTGRES_URL, AccountsFactory, Database, new_key, postgres_schema

CENT = Decimal("0.01")


async def balance(accounts: LedgerAccounts, key_id: str) -> tuple[Decimal | None, Decimal]:
    key = await accounts.get_key(key_id)
    return key.balance_usd, key.reserved_usd


async def states(database: Database) -> dict[str, str]:
    engine = database.raw_engine()
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(select(reservations.c.id, reservations.c.state))
            return {row.id: row.state for row in rows}
    finally:
        await engine.dispose()


async def test_a_restart_settles_the_journal_first_then_releases_the_rest(
    database: Database, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox"
    crashed = database.accounts(outbox_dir=outbox)
    await crashed.start()
    created, principal = await new_key(crashed, usd="1")
    delivered = await crashed.admit(principal, Charge("m", 2, CENT))
    in_flight = await crashed.admit(principal, Charge("m", 3, CENT))
    assert delivered.reservation_id is not None
    # Killed after the delivery was journalled, before the database heard of it.
    await crashed.outbox.record(Settlement(delivered.reservation_id, Outcome.DELIVERED))
    await crashed.abandon()

    restarted = database.accounts(outbox_dir=outbox)
    await restarted.start()
    try:
        assert await balance(restarted, created.key.id) == (Decimal("0.98"), Decimal(0))
        usage = {u.reservation_id: u for u in await restarted.list_usage()}
        assert usage[delivered.reservation_id].outcome == "delivered"
        assert usage[delivered.reservation_id].charged_usd == Decimal("0.02")
        released = usage[in_flight.reservation_id]
        assert (released.outcome, released.charged_usd) == ("released", Decimal(0))
        assert released.reason == "its server stopped without settling it"
        assert list(outbox.iterdir()) == [outbox / f"{restarted.instance_id}.jsonl"]
    finally:
        await restarted.close()
    assert list(outbox.iterdir()) == []  # a clean stop with nothing left deletes its journal


async def test_a_replica_starting_beside_a_live_one_leaves_its_reservations(
    open_sql_accounts: AccountsFactory, tmp_path: Path
) -> None:
    running = await open_sql_accounts(outbox_dir=tmp_path / "outbox")
    created, principal = await new_key(running, usd="0.02")
    in_flight = await running.admit(principal, Charge("m", 2, CENT))
    beside = await open_sql_accounts(outbox_dir=tmp_path / "outbox")
    assert await beside.sweep() == 0
    assert await balance(beside, created.key.id) == (Decimal("0.02"), Decimal("0.02"))
    await running.settle(in_flight, Outcome.DELIVERED)
    assert await balance(beside, created.key.id) == (Decimal(0), Decimal(0))


async def test_a_silent_servers_reservations_are_released_and_its_late_delivery_charged(
    database: Database,
) -> None:
    silent, sweeper = database.accounts(lease_s=60), database.accounts(lease_s=60)
    await silent.start()
    await sweeper.start()
    try:
        created, principal = await new_key(silent, usd="1")
        late = await silent.admit(principal, Charge("m", 2, CENT))
        lost = await silent.admit(principal, Charge("m", 3, CENT))
        engine = database.raw_engine()
        async with engine.begin() as conn:
            old = utcnow() - timedelta(seconds=61)
            beat = update(instances).where(instances.c.id == silent.instance_id)
            await conn.execute(beat.values(heartbeat_at=old))
        await engine.dispose()
        assert await sweeper.sweep() == 2
        assert await balance(sweeper, created.key.id) == (Decimal(1), Decimal(0))
        usage = await sweeper.list_usage()
        assert {u.reason for u in usage} == {"its server sent no heartbeat for 60 s"}
        # Its outcomes, decided before the sweep, reach the database after it.
        await silent.settle(late, Outcome.DELIVERED)
        await silent.settle(lost, Outcome.FAILED)
        assert await balance(sweeper, created.key.id) == (Decimal("0.98"), Decimal(0))
        usage = {u.reservation_id: u for u in await sweeper.list_usage()}
        assert len(usage) == 2
        assert (usage[late.reservation_id].outcome, usage[late.reservation_id].charged_usd) == (
            "delivered",
            Decimal("0.02"),
        )
        assert usage[lost.reservation_id].outcome == "released"
        # Delivering twice charges once.
        await silent.settle_reservation(Settlement(late.reservation_id or "", Outcome.DELIVERED))
        assert await balance(sweeper, created.key.id) == (Decimal("0.98"), Decimal(0))
    finally:
        await silent.close()
        await sweeper.close()


# -- PostgreSQL going away, behind a relay -------------------------------------------------


@pytest.fixture
async def relayed(tmp_path: Path) -> AsyncIterator[tuple[Relay, SqlAccounts]]:
    host, port = "127.0.0.1", int(POSTGRES_URL.rsplit(":", 1)[1].split("/")[0])
    relay = Relay(host, port)
    relay_port = await relay.start()
    url = POSTGRES_URL.replace(f":{port}/", f":{relay_port}/")
    async with postgres_schema() as schema:
        accounts = SqlAccounts(
            url, schema=schema, timeout_s=2, bootstrap=False, outbox_dir=tmp_path / "outbox"
        )
        await accounts.start()
        try:
            yield relay, accounts
        finally:
            await relay.restore()
            await accounts.close()
            await relay.close()


@pytest.mark.postgres
async def test_an_outage_refuses_admission_and_loses_no_settlement(
    relayed: tuple[Relay, SqlAccounts], caplog: pytest.LogCaptureFixture
) -> None:
    relay, accounts = relayed
    created, principal = await new_key(accounts, usd="1")
    delivered = [await accounts.admit(principal, Charge("m", 1, CENT)) for _ in range(3)]
    failed = await accounts.admit(principal, Charge("m", 1, CENT))
    await relay.cut()
    with caplog.at_level(logging.WARNING, logger="murano.accounts"):
        for _ in range(5):
            with pytest.raises(DependencyUnavailable) as refused:
                await accounts.admit(principal, Charge("m", 1, CENT))
            assert refused.value.headers == {"Retry-After": "5"}
        with pytest.raises(DependencyUnavailable):
            await accounts.authenticate(created.secret)
        for admission in delivered:
            await accounts.settle(admission, Outcome.DELIVERED)  # never raises for an outage
        await accounts.settle(failed, Outcome.FAILED)
        assert (await accounts.check_dependencies())["database"] is False
        # 4 outcomes, and a release for each refused admission whose reservation the
        # database might have made before the connection failed.
        assert len(accounts.outbox.pending()) == 4 + 5
        await relay.restore()
        # What the background retry does, without waiting for it.
        while accounts.outbox.pending():
            await accounts._flush()
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 1 and accounts.dependencies.snapshot()["database"].outages == 1
    assert await accounts.check_dependencies() == {"database": True}
    assert await balance(accounts, created.key.id) == (Decimal("0.97"), Decimal(0))
    outcomes = sorted(u.outcome for u in await accounts.list_usage())
    assert outcomes == ["delivered"] * 3 + ["failed"]


@pytest.mark.redis
async def test_without_redis_rate_limiting_fails_closed() -> None:
    accounts = MemoryAccounts(limiter=RedisRateLimiter("redis://127.0.0.1:1/0", timeout_s=1))
    await accounts.start()
    try:
        created, principal = await new_key(accounts, usd="1")
        with pytest.raises(DependencyUnavailable) as refused:
            await accounts.admit(principal, Charge("m", 1, CENT))
        assert refused.value.dependency == "redis"
        assert refused.value.headers == {"Retry-After": "5"}
        assert await balance(accounts, created.key.id) == (Decimal(1), Decimal(0))
        await accounts.note_failure(principal, "m", 400)  # the budget waits; no error
        assert await accounts.check_dependencies() == {"redis": False}
    finally:
        await accounts.close()


async def test_a_journal_torn_by_a_crash_keeps_every_settlement_it_acknowledged(
    tmp_path: Path,
) -> None:
    journal = FileOutbox(tmp_path, "dead")
    assert FileOutbox.orphans(tmp_path) == []  # alive: its lock is held
    await journal.record(Settlement("a", Outcome.DELIVERED, {"total": 5.0}))
    await journal.record(Settlement("b", Outcome.FAILED))
    await journal.done("b")
    journal.abandon()
    with (tmp_path / "dead.jsonl").open("a") as torn:
        torn.write('{"id": "c", "outc')  # the write the kill cut short was never acknowledged
    [orphan] = FileOutbox.orphans(tmp_path)
    assert orphan.instance_id == "dead"
    assert orphan.entries == [Settlement("a", "delivered", {"total": 5.0})]
    orphan.discard()
    assert list(tmp_path.iterdir()) == []
