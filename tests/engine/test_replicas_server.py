"""Two replicas of one model in one server, over HTTP: both serve batches under load (the
per-replica metrics say so), `/models` lists them with their devices, and a replica that
fails does not fail the other's requests. On the fake backend, then on the embedded tiny
pipeline (`MURANO_DEVICES=cpu,cpu`, `MURANO_DEFAULT_REPLICAS=all`)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from murano.app import create_app
from murano.catalog.entries import Catalog
from murano.engine.engine import Engine
from murano.engine.scheduler import SchedulerConfig
from tests.conftest import AUTH, FakeEngineParts, entry, make_settings, running

BODY = {"model": "test-model", "prompt": "a lighthouse", "width": 64, "height": 64}
REQUESTS = 6


def count(metrics: str, name: str, model: str, replica: str) -> float:
    line = re.search(
        rf'^murano_{name}_count\{{model="{model}",replica="{re.escape(replica)}"\}} (\S+)$',
        metrics,
        re.M,
    )
    return float(line.group(1)) if line else 0.0


async def under_load(
    send: Callable[[], Awaitable[httpx.Response]], release: Callable[[], None]
) -> list[httpx.Response]:
    """REQUESTS at once while the first replica is held: all but the one it took are
    answered by the second; then the first is released."""
    tasks = [asyncio.ensure_future(send()) for _ in range(REQUESTS)]
    done: set[asyncio.Future[httpx.Response]] = set()
    pending: set[asyncio.Future[httpx.Response]] = set(tasks)
    while len(done) < REQUESTS - 1:
        finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        done |= finished
    release()
    return list(await asyncio.gather(*tasks))


async def test_fake_replicas_share_the_load(tmp_path: Path, parts: FakeEngineParts) -> None:
    catalog = Catalog([entry("test-model", replicas="all")], "test-model")
    one_image = SchedulerConfig(max_batch_images=1)
    engine = Engine(catalog, parts.factory, devices=["cpu", "cpu"], config=one_image)
    settings = make_settings(tmp_path)
    async with running(settings, engine) as client:
        await engine.start()
        gate = threading.Event()
        parts.backends["test-model@cpu#0"].gate = gate

        async def send() -> httpx.Response:
            return await client.post("/api/v1/image/generate", json=BODY, headers=AUTH)

        answers = await under_load(send, gate.set)
        assert [a.status_code for a in answers] == [200] * REQUESTS
        metrics = (await client.get("/metrics")).text
        for name in ("batch_images", "inference_seconds", "queue_seconds"):
            assert count(metrics, name, "test-model", "cpu#0") == 1, name
            assert count(metrics, name, "test-model", "cpu#1") == REQUESTS - 1, name
        models = (await client.get("/api/v1/models")).json()["data"]
        assert models[0]["model_spec"]["replicas"] == [
            {"device": "cpu#0", "loadState": "resident"},
            {"device": "cpu#1", "loadState": "resident"},
        ]


@pytest.mark.slow
async def test_tiny_pipeline_replicas_share_the_load(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, devices="cpu,cpu", default_replicas="all", max_batch_images=1
    )
    app = create_app(settings)
    engine: Engine = app.state.engine
    model = engine.catalog.default_id
    async with app.router.lifespan_context(app):
        await engine.start()
        assert [r.status.backend is not None for r in engine.replicas(model)] == [True, True]
        # Hold the first device's thread: the batch it is given waits there.
        gate = threading.Event()
        engine.workers[0].executor.submit(gate.wait, 60)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://murano.test") as c:
            body = {**BODY, "model": model, "steps": 2}

            async def send() -> httpx.Response:
                return await c.post("/api/v1/image/generate", json=body, headers=AUTH)

            answers = await under_load(send, gate.set)
            assert [a.status_code for a in answers] == [200] * REQUESTS
            metrics = (await c.get("/metrics")).text
        assert count(metrics, "batch_images", model, "cpu#0") == 1
        assert count(metrics, "batch_images", model, "cpu#1") == REQUESTS - 1


@pytest.mark.slow
async def test_tiny_pipeline_replica_that_cannot_load(tmp_path: Path) -> None:
    """A device that does not exist here (`cuda:99`): its replica fails to load, is shown
    failed, and the CPU replica answers every request."""
    settings = make_settings(tmp_path, devices="cpu,cuda:99", default_replicas=2)
    app = create_app(settings)
    engine: Engine = app.state.engine
    model = engine.catalog.default_id
    async with app.router.lifespan_context(app):
        await engine.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://murano.test") as c:
            body = {**BODY, "model": model, "steps": 2}
            answers = await asyncio.gather(
                *(
                    c.post("/api/v1/image/generate", json=body, headers=AUTH)
                    for _ in range(REQUESTS)
                )
            )
            assert [a.status_code for a in answers] == [200] * REQUESTS
            listed = (await c.get("/api/v1/models")).json()["data"]
            metrics = (await c.get("/metrics")).text
    replicas = next(m for m in listed if m["id"] == model)["model_spec"]["replicas"]
    assert [(r["device"], r["loadState"]) for r in replicas] == [
        ("cpu", "resident"),
        ("cuda:99", "failed"),
    ]
    assert replicas[1]["loadError"]
    assert count(metrics, "batch_images", model, "cuda:99") == 0
    assert count(metrics, "batch_images", model, "cpu") >= 1
