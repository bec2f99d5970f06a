"""Async jobs through the HTTP interface, on SQLite and PostgreSQL: `Prefer: respond-async`
and `POST /image/jobs` answer 202 after admission, the job is followed by polling and by
Server-Sent Events (with previews, resumable), cancelled in every state with the balance
untouched, charged once when its result is stored, private to its key, and expired."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from PIL import Image

from .conftest import ASYNC, GENERATE, JOBS, Env, body

pytestmark = pytest.mark.usefixtures("env")

PRICE = Decimal("0.01")


async def test_respond_async_answers_202_and_the_job_delivers_the_sync_json(env: Env) -> None:
    key = await env.key("1")
    response = await env.client.post(GENERATE, json=body(variants=2), headers={**key, **ASYNC})
    assert response.status_code == 202
    accepted = response.json()
    job_id = accepted["id"]
    links = {"self": f"{JOBS}/{job_id}", "events": f"{JOBS}/{job_id}/events"}
    assert accepted["status"] == "queued" and accepted["links"] == links
    assert isinstance(accepted["queuePosition"], int)
    assert response.headers["location"] == links["self"]
    assert response.headers["preference-applied"] == "respond-async"

    view = await env.until(key, job_id, lambda v: v["status"] == "delivered")
    result = view["result"]
    assert set(result) == {"id", "images", "timing", "request"}
    assert len(result["images"]) == 2 and result["request"]["data"]["variants"] == 2
    assert Image.open(io.BytesIO(base64.b64decode(result["images"][0]))).size == (64, 64)
    assert view["model"] == "test-model" and view["createdAt"].endswith("Z")
    assert view["progress"] == {"step": 4, "steps": 4}
    # Charged once, for both images, when the result was stored.
    assert await env.balance(key) == Decimal(1) - 2 * PRICE


@pytest.mark.parametrize(
    ("fields", "status"),
    [({"width": 12345}, 400), ({"model": "nope"}, 404), ({"return_binary": True}, 400)],
)
async def test_a_bad_request_is_refused_before_any_job(
    env: Env, fields: dict[str, Any], status: int
) -> None:
    key = await env.key("1")
    response = await env.client.post(GENERATE, json=body(**fields), headers={**key, **ASYNC})
    assert response.status_code == status and "error" in response.json()
    assert (await env.client.get(JOBS, headers=key)).json()["data"] == []
    assert await env.balance(key) == Decimal(1)


async def test_a_key_that_cannot_pay_gets_402_not_a_job(env: Env) -> None:
    key = await env.key("0")
    response = await env.client.post(GENERATE, json=body(), headers={**key, **ASYNC})
    assert response.status_code == 402
    assert (await env.client.get(JOBS, headers=key)).json()["data"] == []


async def test_events_follow_a_job_from_queued_to_completed_with_previews(env: Env) -> None:
    key = await env.key("1")
    env.backend().gate = gate = threading.Event()
    job_id = await env.submit(key)
    assert (await env.job(key, job_id))["status"] in ("queued", "running")
    gate.set()
    # (httpx's ASGI transport hands over a body once the app is done; that events go out
    # as they come is checked on the real server and in test_sse_passthrough.)
    events: list[tuple[str, str, dict[str, Any]]] = []
    async with aconnect_sse(env.client, "GET", f"{JOBS}/{job_id}/events", headers=key) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async for event in source.aiter_sse():
            events.append((event.id, event.event, event.json()))
    names = [name for _, name, _ in events]
    assert names[0] == "queued" and names[-1] == "completed"
    assert "started" in names
    progress = [data for _, name, data in events if name == "progress"]
    assert [p["step"] for p in progress] == [1, 2, 3, 4] and progress[0]["steps"] == 4
    previews = [p["preview"] for p in progress if "preview" in p]
    assert previews, "at least one preview"
    preview = Image.open(io.BytesIO(base64.b64decode(previews[0])))
    assert preview.format == "WEBP" and preview.size == (64, 64)
    assert [int(i) for i, _, _ in events] == list(range(1, len(events) + 1))
    completed = events[-1][2]["result"]
    assert completed == (await env.job(key, job_id))["result"]


async def test_last_event_id_resumes_and_a_late_client_gets_the_end_at_once(env: Env) -> None:
    key = await env.key("1")
    job_id = await env.submit(key)
    await env.until(key, job_id, lambda v: v["status"] == "delivered")
    url = f"{JOBS}/{job_id}/events"
    everything = await _events(env.client, url, key)
    assert everything[-1][1] == "completed"
    resumed = await _events(env.client, url, {**key, "Last-Event-ID": everything[1][0]})
    assert resumed == everything[2:]


async def _events(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[tuple[str, str, Any]]:
    async with aconnect_sse(client, "GET", url, headers=headers) as source:
        return [(e.id, e.event, e.json()) async for e in source.aiter_sse()]


async def test_another_keys_job_is_not_found(env: Env) -> None:
    mine, theirs = await env.key("1"), await env.key("1")
    job_id = await env.submit(mine)
    for method, url in [
        ("GET", f"{JOBS}/{job_id}"),
        ("GET", f"{JOBS}/{job_id}/events"),
        ("DELETE", f"{JOBS}/{job_id}"),
    ]:
        response = await env.client.request(method, url, headers=theirs)
        assert response.status_code == 404, (method, url)
        assert response.json() == {"error": "Specified job not found"}
    assert (await env.client.get(JOBS, headers=theirs)).json()["data"] == []
    listed = (await env.client.get(JOBS, headers=mine)).json()["data"]
    assert [job["id"] for job in listed] == [job_id]
    await env.until(mine, job_id, lambda v: v["status"] == "delivered")
    unknown = await env.client.get(f"{JOBS}/no-such-job", headers=mine)
    assert unknown.status_code == 404


# -- cancel in every state ----------------------------------------------------------------


async def _cancel(env: Env, key: dict[str, str], job_id: str) -> dict[str, Any]:
    response = await env.client.delete(f"{JOBS}/{job_id}", headers=key)
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()
    assert view["status"] == "cancelled" and view["result"] is None
    assert view["error"] == {"error": "The request was cancelled."}
    assert await env.balance(key) == Decimal(1)
    return view


async def test_cancel_while_queued(env: Env) -> None:
    key = await env.key("1")
    env.backend().gate = gate = threading.Event()
    blocker = await env.submit(key, steps=2)  # holds the device
    await asyncio.to_thread(env.backend().started.wait, 10)
    job_id = await env.submit(key, prompt="queued behind")
    assert (await env.job(key, job_id))["status"] == "queued"
    response = await env.client.delete(f"{JOBS}/{job_id}", headers=key)
    assert response.json()["status"] == "cancelled"
    gate.set()
    await env.until(key, blocker, lambda v: v["status"] == "delivered")
    assert all(p.prompt != "queued behind" for b in env.backend().batches for p in b)
    # The blocker is charged; the cancelled job's reservation was released.
    assert await env.balance(key) == Decimal(1) - PRICE


async def test_cancel_while_loading(env: Env) -> None:
    key = await env.key("1")
    env.parts.held.add("ratio-model")
    response = await env.client.post(
        GENERATE,
        json={"model": "ratio-model", "prompt": "p", "steps": 2, "safe_mode": False},
        headers={**key, **ASYNC},
    )
    assert response.status_code == 202
    job_id = response.json()["id"]
    await asyncio.to_thread(env.parts.loading.wait, 10)
    await env.until(key, job_id, lambda v: v["status"] == "loading")
    await _cancel(env, key, job_id)
    env.parts.release.set()


async def test_cancel_while_running_interrupts_the_pipeline(env: Env) -> None:
    key = await env.key("1")
    at_step, go_on = threading.Event(), threading.Event()

    def hook(step: int, _steps: int) -> None:
        if step == 2:
            at_step.set()
            go_on.wait(timeout=10)

    backend = env.backend()
    backend.step_hook = hook
    job_id = await env.submit(key, steps=8)
    await asyncio.to_thread(at_step.wait, 10)
    assert (await env.job(key, job_id))["status"] == "running"
    cancelling = asyncio.ensure_future(env.client.delete(f"{JOBS}/{job_id}", headers=key))
    await env.until(key, job_id, lambda v: v["status"] == "cancelled")
    go_on.set()
    response = await cancelling
    assert response.json()["status"] == "cancelled"
    assert await env.balance(key) == Decimal(1)
    assert backend.steps_run[-1] < 8


async def test_cancel_while_postprocessing(env: Env) -> None:
    key = await env.key("1")
    env.inspector_gate.clear()
    job_id = await env.submit(key, safe_mode=True)
    await asyncio.to_thread(env.inspecting.wait, 10)
    await env.until(key, job_id, lambda v: v["status"] == "postprocessing")
    cancelling = asyncio.ensure_future(env.client.delete(f"{JOBS}/{job_id}", headers=key))
    await env.until(key, job_id, lambda v: v["status"] == "cancelled")
    env.inspector_gate.set()
    assert (await cancelling).json()["status"] == "cancelled"
    assert await env.balance(key) == Decimal(1)


async def test_cancel_while_the_result_is_being_stored(env: Env) -> None:
    key = await env.key("1")
    env.store.hold_delivery = True
    job_id = await env.submit(key)
    await env.store.reached.wait()
    assert (await env.job(key, job_id))["status"] == "sending"
    cancelling = asyncio.ensure_future(env.client.delete(f"{JOBS}/{job_id}", headers=key))
    await env.until(key, job_id, lambda v: v["status"] == "cancelled")
    env.store.release.set()
    assert (await cancelling).json()["status"] == "cancelled"
    # The held delivery lost to the cancel: not stored, not charged.
    view = await env.job(key, job_id)
    assert view["status"] == "cancelled" and view["result"] is None
    assert await env.balance(key) == Decimal(1)


async def test_cancelling_a_delivered_job_changes_nothing(env: Env) -> None:
    key = await env.key("1")
    job_id = await env.submit(key)
    await env.until(key, job_id, lambda v: v["status"] == "delivered")
    response = await env.client.delete(f"{JOBS}/{job_id}", headers=key)
    assert response.status_code == 200 and response.json()["status"] == "delivered"
    assert await env.balance(key) == Decimal(1) - PRICE


async def test_a_cancelled_jobs_events_end_with_cancelled(env: Env) -> None:
    key = await env.key("1")
    env.backend().gate = gate = threading.Event()
    await env.submit(key, steps=2)
    await asyncio.to_thread(env.backend().started.wait, 10)
    job_id = await env.submit(key, prompt="other")
    await env.client.delete(f"{JOBS}/{job_id}", headers=key)
    gate.set()
    events = await _events(env.client, f"{JOBS}/{job_id}/events", key)
    assert events[-1][1:] == ("cancelled", {"error": "The request was cancelled."})


async def test_expired_results_are_deleted(env: Env) -> None:
    key = await env.key("1")
    job_id = await env.submit(key)
    await env.until(key, job_id, lambda v: v["status"] == "delivered")
    jobs = env.client.app.state.jobs  # type: ignore[attr-defined]
    row = await env.store.inner.get(job_id)
    assert row is not None and row.expires_at > row.created_at
    # The cleaner runs once the result's time is up.
    jobs._clock = lambda: row.expires_at + timedelta(seconds=1)
    assert await jobs.clean() == 1
    assert (await env.client.get(f"{JOBS}/{job_id}", headers=key)).status_code == 404


async def test_job_events_are_json(env: Env) -> None:
    key = await env.key("1")
    job_id = await env.submit(key)
    await env.until(key, job_id, lambda v: v["status"] == "delivered")
    response = await env.client.get(f"{JOBS}/{job_id}/events", headers=key)
    for block in response.text.strip().split("\n\n"):
        data = [line[6:] for line in block.splitlines() if line.startswith("data: ")]
        assert len(data) == 1 and isinstance(json.loads(data[0]), dict)


async def test_a_delivered_result_survives_a_restart(db: Any, tmp_path: Any) -> None:
    from .conftest import open_env

    async for first in open_env(db, tmp_path):
        key = await first.key("1")
        job_id = await first.submit(key)
        view = await first.until(key, job_id, lambda v: v["status"] == "delivered")
    async for second in open_env(db, tmp_path):
        again = await second.job(key, job_id)
        assert (again["status"], again["result"]) == ("delivered", view["result"])


async def test_a_job_running_when_its_server_died_is_failed_at_the_next_start() -> None:
    from datetime import UTC, datetime

    from murano.accounts.jobs import JobRecord, MemoryJobStore
    from murano.api.async_jobs import AsyncJobs

    store = MemoryJobStore()
    now = datetime.now(UTC)
    await store.create(
        JobRecord("j1", "k", "running", "m", "dead", now, now, now + timedelta(hours=1))
    )
    jobs = AsyncJobs(None, store)  # type: ignore[arg-type]  # start needs no service
    await jobs.start()
    await jobs.close()
    record = await store.get("j1")
    assert record is not None and record.status == "failed"
    assert record.error == {"error": "The server running this job stopped before it finished."}
