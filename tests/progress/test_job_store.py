"""Jobs in the accounts database (SQLite and PostgreSQL, created by the migrations) and in
memory: create, read, list by key, conditional status changes, expiry, crash recovery, and
webhook deliveries that outlive the process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from murano.accounts import SqlStore
from murano.accounts.jobs import Delivery, JobRecord, JobStore, MemoryJobStore, SqlJobStore
from tests.accounts.conftest import make_database

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    async with make_database(request.param, tmp_path) as db:
        accounts_store = SqlStore(db.url, schema=db.schema)
        await accounts_store.start()
        try:
            yield SqlJobStore(accounts_store.engine)
        finally:
            await accounts_store.close()


def job(job_id: str, key: str = "k1", at: datetime = T0, **changes: object) -> JobRecord:
    values: dict[str, object] = {
        "id": job_id,
        "key_id": key,
        "status": "queued",
        "model": "m",
        "server": "s1",
        "created_at": at,
        "updated_at": at,
        "expires_at": at + timedelta(hours=1),
    }
    return JobRecord(**{**values, **changes})  # type: ignore[arg-type]


async def test_a_job_is_stored_and_read_back(store: JobStore) -> None:
    await store.create(job("j1", webhook={"url": "https://x.test/h", "events": ["completed"]}))
    got = await store.get("j1")
    assert got is not None
    assert (got.status, got.model, got.key_id, got.created_at) == ("queued", "m", "k1", T0)
    assert got.webhook == {"url": "https://x.test/h", "events": ["completed"]}
    assert await store.get("nope") is None


async def test_recent_lists_only_the_keys_jobs_newest_first(store: JobStore) -> None:
    for i in range(3):
        await store.create(job(f"a{i}", at=T0 + timedelta(seconds=i)))
    await store.create(job("b0", key="k2"))
    assert [r.id for r in await store.recent("k1")] == ["a2", "a1", "a0"]
    assert [r.id for r in await store.recent("k1", limit=2)] == ["a2", "a1"]
    assert [r.id for r in await store.recent("k2")] == ["b0"]


async def test_a_terminal_job_never_changes_again(store: JobStore) -> None:
    await store.create(job("j1"))
    result = {"id": "r", "images": ["AAAA"], "timing": {}, "request": {"success": True}}
    assert await store.set_status("j1", "running", T0)
    assert await store.set_status("j1", "delivered", T0, result=result)
    # A cancel arriving after delivery loses, and so does a second delivery.
    assert not await store.set_status("j1", "cancelled", T0, error={"error": "x"})
    got = await store.get("j1")
    assert got is not None and (got.status, got.result, got.error) == ("delivered", result, None)
    assert not await store.set_status("missing", "running", T0)


async def test_expired_terminal_jobs_are_deleted_and_active_ones_kept(store: JobStore) -> None:
    await store.create(job("done"))
    await store.set_status("done", "delivered", T0, result={"images": []})
    await store.create(job("active"))
    assert await store.delete_expired(T0 + timedelta(minutes=59)) == 0
    assert await store.delete_expired(T0 + timedelta(hours=2)) == 1
    assert await store.get("done") is None and await store.get("active") is not None


async def test_jobs_of_a_dead_server_are_failed(store: JobStore) -> None:
    await store.create(job("old", status="running"))
    await store.create(job("fresh", status="running", at=T0 + timedelta(minutes=30)))
    await store.create(job("finished", status="queued"))
    await store.set_status("finished", "delivered", T0, result={})
    error = {"error": "The server stopped before the job finished."}
    later = T0 + timedelta(hours=3)
    failed = await store.fail_stale(T0 + timedelta(minutes=10), T0, error, later)
    assert failed == ["old"]
    got = await store.get("old")
    assert got is not None and (got.status, got.error, got.expires_at) == ("failed", error, later)


async def test_deliveries_wait_until_due_and_keep_their_attempts(store: JobStore) -> None:
    delivery = Delivery(
        id="d1",
        job_id="j1",
        url="https://hooks.test/x",
        event="completed",
        payload={"type": "image.job.completed", "data": {"id": "j1"}},
        state="pending",
        attempts=0,
        created_at=T0,
        next_attempt_at=T0,
    )
    await store.add_delivery(delivery)
    assert [d.id for d in await store.due_deliveries(T0)] == ["d1"]
    retry = Delivery(**{**_fields(delivery), "attempts": 1, "last_error": "HTTP 500",
                        "next_attempt_at": T0 + timedelta(seconds=30)})  # fmt: skip
    await store.save_delivery(retry)
    assert await store.due_deliveries(T0 + timedelta(seconds=29)) == []
    (due,) = await store.due_deliveries(T0 + timedelta(seconds=30))
    assert (due.attempts, due.last_error, due.payload) == (1, "HTTP 500", delivery.payload)
    await store.save_delivery(Delivery(**{**_fields(due), "state": "delivered"}))
    assert await store.due_deliveries(T0 + timedelta(days=2)) == []


def _fields(delivery: Delivery) -> dict[str, object]:
    return {name: getattr(delivery, name) for name in Delivery.__slots__}  # type: ignore[attr-defined]
