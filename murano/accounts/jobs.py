"""Async jobs as the accounts database keeps them, so that a job id works on every server
sharing one database and a delivered result survives a restart until it expires.

    JobStore (protocol)
    ├── SqlJobStore        the `jobs` and `webhook_deliveries` tables (SQLite, PostgreSQL),
    │                      on the accounts store's engine: its migrations create them
    └── MemoryJobStore     the same in a dict, for a server without a database and for tests

A row holds what outlives the process: owner, status, model, the delivered result (the JSON
the synchronous endpoint returns) or the error body, and when it expires. Progress and
queue position are live state of the server running the job and are not stored. Status
changes are conditional: once a job is terminal (delivered, cancelled, failed, expired) no
later write changes it, so a cancel racing a delivery has exactly one winner.

Webhook deliveries are rows too: a restarted server resumes the retries it owed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import Row, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from murano.accounts._tables import jobs, webhook_deliveries

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "Delivery",
    "JobRecord",
    "JobStore",
    "MemoryJobStore",
    "SqlJobStore",
]

TERMINAL = frozenset({"delivered", "cancelled", "failed", "expired"})
ACTIVE = frozenset({"queued", "loading", "running", "postprocessing", "sending"})

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: str
    key_id: str
    status: str
    model: str
    server: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    result: Json | None = None
    error: Json | None = None
    # {"url": ..., "events": [...]} when the job was created with a webhook.
    webhook: Json | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook event owed to one URL. `state`: pending, delivered or failed (given up)."""

    id: str
    job_id: str
    url: str
    event: str
    payload: Json
    state: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None = None


@runtime_checkable
class JobStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def create(self, record: JobRecord) -> None: ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def recent(self, key_id: str, limit: int = 20) -> list[JobRecord]:
        """The key's jobs, newest first."""

    async def set_status(
        self,
        job_id: str,
        status: str,
        now: datetime,
        *,
        result: Json | None = None,
        error: Json | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        """Move a job that is not terminal yet; False when it already was (or is gone)."""

    async def delete_expired(self, now: datetime) -> int:
        """Delete terminal jobs past `expires_at` (and their finished deliveries)."""

    async def fail_stale(
        self, before: datetime, now: datetime, error: Json, expires_at: datetime
    ) -> list[str]:
        """Mark `failed` every active job last changed before `before`: its server died."""

    async def add_delivery(self, delivery: Delivery) -> None: ...

    async def due_deliveries(self, now: datetime, limit: int = 50) -> list[Delivery]:
        """Pending deliveries whose next attempt is due, oldest first."""

    async def save_delivery(self, delivery: Delivery) -> None:
        """Store a delivery's state, attempts, error and next attempt after an attempt."""


class MemoryJobStore:
    """`SqlJobStore`'s twin in memory."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._deliveries: dict[str, Delivery] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, record: JobRecord) -> None:
        if record.id in self._jobs:
            raise ValueError(f"job {record.id} exists")
        self._jobs[record.id] = copy.deepcopy(record)

    async def get(self, job_id: str) -> JobRecord | None:
        record = self._jobs.get(job_id)
        return copy.deepcopy(record) if record is not None else None

    async def recent(self, key_id: str, limit: int = 20) -> list[JobRecord]:
        mine = [r for r in self._jobs.values() if r.key_id == key_id]
        mine.sort(key=lambda r: r.created_at, reverse=True)
        return copy.deepcopy(mine[:limit])

    async def set_status(
        self,
        job_id: str,
        status: str,
        now: datetime,
        *,
        result: Json | None = None,
        error: Json | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        record = self._jobs.get(job_id)
        if record is None or record.terminal:
            return False
        changes: dict[str, Any] = {"status": status, "updated_at": now}
        if result is not None:
            changes["result"] = copy.deepcopy(result)
        if error is not None:
            changes["error"] = copy.deepcopy(error)
        if expires_at is not None:
            changes["expires_at"] = expires_at
        self._jobs[job_id] = replace(record, **changes)
        return True

    async def delete_expired(self, now: datetime) -> int:
        gone = [r.id for r in self._jobs.values() if r.terminal and r.expires_at <= now]
        for job_id in gone:
            del self._jobs[job_id]
        done = [
            d.id for d in self._deliveries.values() if d.job_id in gone and d.state != "pending"
        ]
        for delivery_id in done:
            del self._deliveries[delivery_id]
        return len(gone)

    async def fail_stale(
        self, before: datetime, now: datetime, error: Json, expires_at: datetime
    ) -> list[str]:
        stale = [r.id for r in self._jobs.values() if r.status in ACTIVE and r.updated_at < before]
        for job_id in stale:
            await self.set_status(job_id, "failed", now, error=error, expires_at=expires_at)
        return stale

    async def add_delivery(self, delivery: Delivery) -> None:
        self._deliveries[delivery.id] = copy.deepcopy(delivery)

    async def due_deliveries(self, now: datetime, limit: int = 50) -> list[Delivery]:
        due = [
            d
            for d in self._deliveries.values()
            if d.state == "pending" and d.next_attempt_at <= now
        ]
        due.sort(key=lambda d: d.next_attempt_at)
        return copy.deepcopy(due[:limit])

    async def save_delivery(self, delivery: Delivery) -> None:
        self._deliveries[delivery.id] = copy.deepcopy(delivery)

    def deliveries(self) -> list[Delivery]:
        """Every delivery, for tests."""
        return copy.deepcopy(list(self._deliveries.values()))


class SqlJobStore:
    """Jobs in the accounts database, through the accounts store's engine (whose start
    has run the migrations that create the tables)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        # The engine belongs to the accounts store, which disposes of it.
        return None

    async def create(self, record: JobRecord) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(jobs).values(_job_values(record)))

    async def get(self, job_id: str) -> JobRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
        return None if row is None else _to_job(row)

    async def recent(self, key_id: str, limit: int = 20) -> list[JobRecord]:
        query = (
            select(jobs)
            .where(jobs.c.key_id == key_id)
            .order_by(jobs.c.created_at.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_to_job(row) for row in await conn.execute(query)]

    async def set_status(
        self,
        job_id: str,
        status: str,
        now: datetime,
        *,
        result: Json | None = None,
        error: Json | None = None,
        expires_at: datetime | None = None,
    ) -> bool:
        values: dict[str, Any] = {"status": status, "updated_at": now}
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error
        if expires_at is not None:
            values["expires_at"] = expires_at
        statement = (
            update(jobs)
            .where(jobs.c.id == job_id, jobs.c.status.not_in(sorted(TERMINAL)))
            .values(values)
        )
        async with self._engine.begin() as conn:
            changed = (await conn.execute(statement)).rowcount
        return bool(changed)

    async def delete_expired(self, now: datetime) -> int:
        expired = select(jobs.c.id).where(
            jobs.c.expires_at <= now, jobs.c.status.in_(sorted(TERMINAL))
        )
        async with self._engine.begin() as conn:
            ids = [row.id for row in await conn.execute(expired)]
            if not ids:
                return 0
            await conn.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.job_id.in_(ids), webhook_deliveries.c.state != "pending"
                )
            )
            await conn.execute(delete(jobs).where(jobs.c.id.in_(ids)))
        return len(ids)

    async def fail_stale(
        self, before: datetime, now: datetime, error: Json, expires_at: datetime
    ) -> list[str]:
        stale = select(jobs.c.id).where(
            jobs.c.status.in_(sorted(ACTIVE)), jobs.c.updated_at < before
        )
        async with self._engine.connect() as conn:
            ids = [row.id for row in await conn.execute(stale)]
        failed = []
        for job_id in ids:
            if await self.set_status(job_id, "failed", now, error=error, expires_at=expires_at):
                failed.append(job_id)
        return failed

    async def add_delivery(self, delivery: Delivery) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(insert(webhook_deliveries).values(_delivery_values(delivery)))

    async def due_deliveries(self, now: datetime, limit: int = 50) -> list[Delivery]:
        query = (
            select(webhook_deliveries)
            .where(
                webhook_deliveries.c.state == "pending",
                webhook_deliveries.c.next_attempt_at <= now,
            )
            .order_by(webhook_deliveries.c.next_attempt_at)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_to_delivery(row) for row in await conn.execute(query)]

    async def save_delivery(self, delivery: Delivery) -> None:
        values = _delivery_values(delivery)
        del values["id"]
        statement = (
            update(webhook_deliveries).where(webhook_deliveries.c.id == delivery.id).values(values)
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)


def _job_values(record: JobRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "key_id": record.key_id,
        "status": record.status,
        "model": record.model,
        "server": record.server,
        "result": record.result,
        "error": record.error,
        "webhook": record.webhook,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "expires_at": record.expires_at,
    }


def _to_job(row: Row[Any]) -> JobRecord:
    return JobRecord(**{name: getattr(row, name) for name in _JOB_FIELDS})


_JOB_FIELDS: Sequence[str] = [column.name for column in jobs.c]


def _delivery_values(delivery: Delivery) -> dict[str, Any]:
    return {name: getattr(delivery, name) for name in _DELIVERY_FIELDS}


_DELIVERY_FIELDS: Sequence[str] = [column.name for column in webhook_deliveries.c]


def _to_delivery(row: Row[Any]) -> Delivery:
    return Delivery(**{name: getattr(row, name) for name in _DELIVERY_FIELDS})
