"""An app on the fake engine with SQL accounts (SQLite, and PostgreSQL where marked), whose
async jobs live in the same database, and helpers to hold a job in each state."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.accounts import SqlAccounts
from murano.accounts.jobs import JobStore, SqlJobStore
from murano.catalog.entries import ModelEntry
from murano.engine.fake import FakeBackend
from tests.accounts.conftest import Database, make_database
from tests.conftest import FakeEngineParts, fake_engine, make_settings, running

GENERATE = "/api/v1/image/generate"
JOBS = "/api/v1/image/jobs"
ASYNC = {"Prefer": "respond-async"}


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "test-model",
        "prompt": "a lighthouse",
        "width": 64,
        "height": 64,
        "steps": 4,
        "format": "png",
        "safe_mode": False,
        **fields,
    }


class LoadGate(FakeEngineParts):
    """Fake parts whose model loads wait for `release` (for the `loading` state)."""

    def __init__(self) -> None:
        super().__init__()
        self.loading = threading.Event()
        self.release = threading.Event()
        self.held: set[str] = set()

    def factory(self, model: ModelEntry) -> FakeBackend:
        if model.id in self.held:
            self.loading.set()
            self.release.wait(timeout=30)
        return super().factory(model)


class HeldStore:
    """The job store, with the write that delivers a result held until `release`."""

    def __init__(self, inner: JobStore) -> None:
        self.inner = inner
        self.hold_delivery = False
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def set_status(self, job_id: str, status: str, now: datetime, **kw: Any) -> bool:
        if status == "delivered" and self.hold_delivery:
            self.reached.set()
            await self.release.wait()
        return await self.inner.set_status(job_id, status, now, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@dataclass
class Env:
    client: httpx.AsyncClient
    accounts: SqlAccounts
    parts: LoadGate
    store: HeldStore
    inspector_gate: threading.Event = field(default_factory=threading.Event)
    inspecting: threading.Event = field(default_factory=threading.Event)

    async def key(self, balance: str | None = "1") -> dict[str, str]:
        created = await self.accounts.create_key(
            name="t", balance_usd=None if balance is None else Decimal(balance), rpm=1000
        )
        return {"Authorization": f"Bearer {created.secret}"}

    async def balance(self, headers: dict[str, str]) -> Decimal:
        key = await self.accounts.authenticate(headers["Authorization"].split()[1])
        assert key.balance_usd is not None
        return key.balance_usd

    def backend(self, model: str = "test-model") -> FakeBackend:
        return self.parts.backends[model]

    async def submit(self, headers: dict[str, str], **fields: Any) -> str:
        response = await self.client.post(
            GENERATE, json=body(**fields), headers={**headers, **ASYNC}
        )
        assert response.status_code == 202, response.text
        job_id: str = response.json()["id"]
        return job_id

    async def job(self, headers: dict[str, str], job_id: str) -> dict[str, Any]:
        response = await self.client.get(f"{JOBS}/{job_id}", headers=headers)
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    async def until(
        self, headers: dict[str, str], job_id: str, done: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        """Poll the job until `done` says so (bounded, not timed: each poll yields)."""
        for _ in range(2000):
            view = await self.job(headers, job_id)
            if done(view):
                return view
            await asyncio.sleep(0.01)
        raise AssertionError(f"job {job_id} never got there: {view}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with make_database(request.param, tmp_path) as database:
        yield database


async def open_env(db: Database, tmp_path: Path, **settings: Any) -> AsyncIterator[Env]:
    parts = LoadGate()
    accounts = db.accounts(default_rpm=1000, failure_budget=1000)
    gate = threading.Event()
    inspecting = threading.Event()

    def inspector(images: Any) -> list[bool]:
        inspecting.set()
        gate.wait(timeout=30)
        return [False] * len(images)

    engine = fake_engine(parts)
    store = HeldStore(SqlJobStore(accounts.store.engine))
    settings.setdefault("webhook_secret", "whsec_" + "A" * 43 + "=")
    async with running(
        make_settings(tmp_path, **settings),
        engine,
        accounts,
        inspector=inspector,
        job_store=store,
    ) as client:
        gate.set()  # inspect at once unless a test clears it
        env = Env(client, accounts, parts, store, gate, inspecting)
        try:
            yield env
        finally:  # whatever a failed test held, let it go so the app can stop
            store.release.set()
            gate.set()
            parts.release.set()
            for backend in parts.backends.values():
                if backend.gate is not None:
                    backend.gate.set()


@pytest.fixture
async def env(db: Database, tmp_path: Path) -> AsyncIterator[Env]:
    async for e in open_env(db, tmp_path):
        yield e
