"""A request's life through the ASGI interface, auth on, SQLite and PostgreSQL: a client that
goes away in any state before its response's last byte is never charged and its usage row
says `cancelled`; a batch whose jobs are all cancelled stops at its next step; drain.

The connection is a small ASGI client that behaves as uvicorn does (a send after the
client left returns quietly; `receive` then reports `http.disconnect`). States are reached
through the fake backend's and the fake engine's hooks, never by sleeping."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL.Image import Image

from murano.engine.engine import Engine
from murano.engine.job import GenerationJob, JobState
from tests.accounts.conftest import Database
from tests.api.test_billing import Billing, db  # noqa: F401  (the `db` fixture)
from tests.api.test_billing import body as billing_body
from tests.conftest import FakeEngineParts, fake_engine, make_settings, running

URL = "/api/v1/image/generate"


def body(**fields: Any) -> dict[str, Any]:
    """A request without safe mode (whose classifier these tests hold), unless asked."""
    return billing_body(**{"safe_mode": False, **fields})


class Connection:
    """One HTTP request to an ASGI app, with a client that can hang up at any moment."""

    def __init__(self, app: Any, payload: dict[str, Any], headers: dict[str, str]) -> None:
        self.app = app
        self.payload = json.dumps(payload).encode()
        self.headers = headers
        self.status: int | None = None
        self.body = b""
        self.disconnected = False
        self.complete = False
        self.hold_start: asyncio.Event | None = None
        self.started = asyncio.Event()
        self._event = asyncio.Event()
        self._sent_request = False

    def disconnect(self) -> None:
        self.disconnected = True
        self._event.set()

    async def receive(self) -> dict[str, Any]:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": self.payload, "more_body": False}
        while not (self.disconnected or self.complete):
            self._event.clear()
            await self._event.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self.disconnected:
            return
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started.set()
            if self.hold_start is not None:
                await self.hold_start.wait()
            return
        self.body += message.get("body", b"")
        if not message.get("more_body"):
            self.complete = True
            self._event.set()

    async def run(self) -> None:
        headers = [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(self.payload)).encode()),
        ]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": URL,
            "raw_path": URL.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("murano.test", 80),
        }
        await self.app(scope, self.receive, self.send)


class Jobs:
    """Every job the engine queues, and a way to wait for one to reach a state."""

    def __init__(self, engine: Engine) -> None:
        self.seen: list[GenerationJob] = []
        self._changed = asyncio.Event()
        engine.on_submit.append(self._submitted)

    def _submitted(self, job: GenerationJob) -> None:
        self.seen.append(job)
        job.add_listener(lambda _job: self._changed.set())
        self._changed.set()

    async def reach(self, state: JobState, index: int = -1) -> GenerationJob:
        while len(self.seen) <= max(index, 0) or self.seen[index].state is not state:
            self._changed.clear()
            await asyncio.wait_for(self._changed.wait(), 30)
        return self.seen[index]


def gated_inspector(gate: threading.Event) -> Any:
    def inspect(images: Sequence[Image]) -> list[bool]:
        gate.wait(timeout=30)
        return [False] * len(images)

    return inspect


@pytest.fixture
async def billing(
    db: Database,  # noqa: F811
    tmp_path: Path,
    parts: FakeEngineParts,
) -> AsyncIterator[Billing]:
    gate = threading.Event()
    engine = fake_engine(parts)
    accounts = db.accounts(default_rpm=1000, failure_budget=1000)
    settings = make_settings(tmp_path)
    async with running(settings, engine, accounts, inspector=gated_inspector(gate)) as client:
        client.inspector_gate = gate  # type: ignore[attr-defined]
        yield Billing(client, accounts, parts)


async def _untouched(billing: Billing, key: dict[str, str], job: GenerationJob) -> None:
    assert job.state is JobState.CANCELLED
    assert await billing.balance(key) == Decimal("1")
    principal = await billing.accounts.authenticate(key["Authorization"].split()[1])
    usage = await billing.accounts.list_usage(key_id=principal.key_id)
    assert [(u.outcome, u.charged_usd) for u in usage] == [("cancelled", Decimal(0))]


async def test_a_delivered_response_is_charged_after_its_last_byte(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    key = await billing.key("1")
    conn = Connection(app, body(variants=2), key)
    await conn.run()
    assert conn.status == 200 and len(json.loads(conn.body)["images"]) == 2
    job = jobs.seen[0]
    assert job.state is JobState.DELIVERED
    assert list(job.stamps) == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.POSTPROCESSING,
        JobState.SENDING,
        JobState.DELIVERED,
    ]
    assert job.progress == (4, 4)
    assert await billing.balance(key) == Decimal("0.98")
    usage = await billing.accounts.list_usage(limit=1)
    assert usage[0].outcome == "delivered"


async def test_disconnect_while_queued(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    backend = billing.parts.backends["test-model"]
    backend.gate = threading.Event()
    other = await billing.key(None)
    busy = asyncio.create_task(billing.client.post(URL, json=body(seed=1), headers=other))
    await jobs.reach(JobState.RUNNING, 0)
    key = await billing.key("1")
    conn = Connection(app, body(prompt="gone", seed=2), key)
    task = asyncio.create_task(conn.run())
    job = await jobs.reach(JobState.QUEUED, 1)
    assert app.state.engine.queue_position(job) == 0
    conn.disconnect()
    await task
    assert app.state.engine.queue_position(job) is None
    backend.gate.set()
    assert (await busy).status_code == 200
    assert "gone" not in [p.prompt for batch in backend.batches for p in batch]
    await _untouched(billing, key, job)


async def test_disconnect_while_loading(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    billing.parts.load_gate = threading.Event()
    key = await billing.key("1")
    conn = Connection(app, body(model="ratio-model", width=None, height=None), key)
    task = asyncio.create_task(conn.run())
    job = await jobs.reach(JobState.LOADING)
    conn.disconnect()
    await task
    billing.parts.load_gate.set()
    await _untouched(billing, key, job)
    # The load itself goes on (the next request will want the model), the batch does not.
    await app.state.engine.ensure_loaded("ratio-model")
    assert billing.parts.backends["ratio-model"].batches == []


async def test_disconnect_while_running_interrupts_the_batch(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    backend = billing.parts.backends["test-model"]
    in_step, proceed = threading.Event(), threading.Event()

    def hold_first_step(step: int, steps: int) -> None:
        if step == 1:
            in_step.set()
            proceed.wait(timeout=30)

    backend.step_hook = hold_first_step
    key = await billing.key("1")
    conn = Connection(app, body(steps=8), key)
    task = asyncio.create_task(conn.run())
    await asyncio.to_thread(in_step.wait, 30)
    job = await jobs.reach(JobState.RUNNING)
    conn.disconnect()
    await task
    proceed.set()
    await asyncio.to_thread(backend.ran.wait, 30)
    # Every job of the batch was cancelled: the pipeline stopped after its first step.
    assert backend.steps_run == [1]
    await _untouched(billing, key, job)


async def test_a_batch_goes_on_while_one_of_its_jobs_remains(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    backend = billing.parts.backends["test-model"]
    backend.gate = threading.Event()
    in_step, proceed = threading.Event(), threading.Event()

    def hold_second_batch(step: int, steps: int) -> None:
        if len(backend.batches) == 2 and step == 1:
            in_step.set()
            proceed.wait(timeout=30)

    backend.step_hook = hold_second_batch
    other = await billing.key(None)
    first = asyncio.create_task(billing.client.post(URL, json=body(seed=1), headers=other))
    await jobs.reach(JobState.RUNNING, 0)
    key = await billing.key("1")
    staying = asyncio.create_task(billing.client.post(URL, json=body(seed=5), headers=other))
    leaving = Connection(app, body(seed=6), key)
    task = asyncio.create_task(leaving.run())
    await jobs.reach(JobState.QUEUED, 2)
    await jobs.reach(JobState.QUEUED, 1)
    backend.gate.set()
    await asyncio.to_thread(in_step.wait, 30)
    assert len(backend.batches[1]) == 2  # both queued jobs share the second batch
    gone = next(job for job in jobs.seen if job.params.seed == 6)
    leaving.disconnect()
    await task
    proceed.set()
    assert (await first).status_code == 200
    assert (await staying).status_code == 200
    assert backend.steps_run == [4, 4]  # the second batch ran to the end, for one job
    await _untouched(billing, key, gone)


async def test_disconnect_while_postprocessing(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    key = await billing.key("1")
    conn = Connection(app, body(safe_mode=True), key)
    task = asyncio.create_task(conn.run())
    job = await jobs.reach(JobState.POSTPROCESSING)
    conn.disconnect()
    await task
    billing.client.inspector_gate.set()  # type: ignore[attr-defined]
    await _untouched(billing, key, job)


async def test_disconnect_while_sending(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    key = await billing.key("1")
    conn = Connection(app, body(), key)
    conn.hold_start = asyncio.Event()
    task = asyncio.create_task(conn.run())
    await conn.started.wait()
    job = jobs.seen[0]
    assert job.state is JobState.SENDING
    conn.disconnect()
    conn.hold_start.set()
    await task
    assert conn.body == b""
    await _untouched(billing, key, job)


async def test_cancel_from_the_engine_ends_the_request(billing: Billing) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    jobs = Jobs(app.state.engine)
    backend = billing.parts.backends["test-model"]
    backend.gate = threading.Event()
    key = await billing.key("1")
    request = asyncio.create_task(billing.client.post(URL, json=body(), headers=key))
    job = await jobs.reach(JobState.RUNNING)
    assert app.state.engine.cancel(job) is True
    response = await request
    backend.gate.set()
    assert response.status_code == 499
    await _untouched(billing, key, job)


async def test_timings_and_metrics_come_from_the_stamps(client: httpx.AsyncClient) -> None:
    from tests.conftest import AUTH

    response = await client.post(URL, json=body(), headers=AUTH)
    timing = response.json()["timing"]
    assert 0 < timing["inferenceDuration"] <= timing["total"]
    metrics = (await client.get("/metrics")).text
    for state in ("queued", "running", "postprocessing", "sending"):
        assert f'murano_job_seconds_count{{model="test-model",state="{state}"}} 1.0' in metrics


async def test_drain_cancels_what_it_cannot_finish_and_refuses_new_work(
    billing: Billing,
) -> None:
    app = billing.client.app  # type: ignore[attr-defined]
    engine = app.state.engine
    jobs = Jobs(engine)
    backend = billing.parts.backends["test-model"]
    backend.gate = threading.Event()
    key = await billing.key("1")
    request = asyncio.create_task(billing.client.post(URL, json=body(), headers=key))
    job = await jobs.reach(JobState.RUNNING)
    await engine.drain(0)
    response = await request
    backend.gate.set()
    assert response.status_code == 503
    assert response.json() == {"error": "The server is shutting down. Please try again shortly."}
    assert response.headers["retry-after"] == "30"
    await _untouched(billing, key, job)
    assert (await billing.client.get("/readyz")).json()["status"] == "draining"
    late = await billing.client.post(URL, json=body(), headers=key)
    assert late.status_code == 503 and "retry-after" in late.headers
    assert len(jobs.seen) == 1  # refused before a job (or a reservation) was made


async def test_a_full_queue_refuses_before_reserving(
    db: Database,  # noqa: F811
    tmp_path: Path,
    parts: FakeEngineParts,
) -> None:
    from murano.engine.scheduler import SchedulerConfig

    engine = fake_engine(parts, config=SchedulerConfig(max_queue=1))
    accounts = db.accounts(default_rpm=1000, failure_budget=1000)
    async with running(make_settings(tmp_path), engine, accounts) as client:
        billing = Billing(client, accounts, parts)
        jobs = Jobs(engine)
        backend = parts.backends["test-model"]
        backend.gate = threading.Event()
        other = await billing.key(None)
        busy = asyncio.create_task(client.post(URL, json=body(seed=1), headers=other))
        await jobs.reach(JobState.RUNNING, 0)
        queued = asyncio.create_task(client.post(URL, json=body(seed=2), headers=other))
        await jobs.reach(JobState.QUEUED, 1)
        key = await billing.key("1")
        refused = await client.post(URL, json=body(seed=3), headers=key)
        assert refused.status_code == 503
        assert refused.json() == {"error": "The model is at capacity. Please try again later."}
        assert "retry-after" in refused.headers
        backend.gate.set()
        assert [(await t).status_code for t in (busy, queued)] == [200, 200]
        principal = await accounts.authenticate(key["Authorization"].split()[1])
        assert await accounts.list_usage(key_id=principal.key_id) == []
        assert await billing.balance(key) == Decimal("1")
