"""Model loads beside inference: on their own thread, counted towards `max_resident` while
they run, and retried with back-off after a failure (shown in `/models`)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL.Image import Image

from murano.engine.engine import Engine, LoadState
from murano.engine.job import GenerationJob
from murano.errors import ModelUnavailable
from tests.conftest import (
    AUTH,
    FakeEngineParts,
    generation_params,
    make_settings,
    running,
)
from tests.conftest import (
    test_catalog as catalog,
)


def keep(images: Sequence[Image], flags: Sequence[bool] | None) -> list[Image]:
    return list(images)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def engine_of(parts: FakeEngineParts, **options: Any) -> Engine:
    return Engine(catalog(), parts.factory, **options)


async def test_two_first_use_loads_never_exceed_max_resident(parts: FakeEngineParts) -> None:
    engine = engine_of(parts, max_resident=2)
    await engine.ensure_loaded("test-model")
    resident: list[int] = []
    real_factory = parts.factory

    def counting_factory(entry: Any) -> Any:
        resident.append(engine._occupied(engine.workers[0]))
        return real_factory(entry)

    engine._factory = counting_factory
    parts.load_gate = threading.Event()
    jobs = [
        GenerationJob(params=generation_params(model_id=model), finish=keep)
        for model in ("ratio-model", "guidance-model")
    ]
    for job in jobs:
        engine.submit(job)
    await asyncio.to_thread(parts.loading.wait, 10)
    parts.load_gate.set()
    await asyncio.gather(*(job.future for job in jobs))
    # Each load ran with at most max_resident models resident or loading, itself included.
    assert resident and max(resident) <= 2
    states = [engine.status(m).state for m in ("test-model", "ratio-model", "guidance-model")]
    assert states.count(LoadState.RESIDENT) <= 2
    await engine.close()


async def test_a_load_does_not_wait_for_the_device(parts: FakeEngineParts) -> None:
    engine = engine_of(parts, max_resident=3)
    backend = await engine.ensure_loaded("test-model")
    gate = threading.Event()
    backend.gate = gate  # type: ignore[attr-defined]
    busy = GenerationJob(params=generation_params(), finish=keep)
    engine.submit(busy)
    await asyncio.to_thread(backend.started.wait, 10)  # type: ignore[attr-defined]
    # The device thread is held by test-model; ratio-model loads all the same.
    await engine.ensure_loaded("ratio-model")
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    gate.set()
    await busy.future
    await engine.close()


async def test_a_failed_load_is_retried_after_its_back_off(parts: FakeEngineParts) -> None:
    clock = Clock()
    engine = engine_of(parts, load_retry_s=30, load_retry_max_s=600, clock=clock)
    parts.fail_load.add("ratio-model")
    for wait in (30, 60, 120):
        with pytest.raises(ModelUnavailable):
            await engine.ensure_loaded("ratio-model")
        status = engine.status("ratio-model")
        assert status.state is LoadState.FAILED and "weights" in status.error
        assert status.retry_at == clock.now + wait
        # Before the back-off ends, requests are refused without another try.
        loads = len(parts.loads)
        with pytest.raises(ModelUnavailable):
            engine.check_room("ratio-model")
        with pytest.raises(ModelUnavailable):
            await engine.ensure_loaded("ratio-model")
        assert len(parts.loads) == loads
        clock.now += wait
    parts.fail_load.clear()
    await engine.ensure_loaded("ratio-model")
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    assert engine.status("ratio-model").failures == 0
    await engine.close()


async def test_load_fails_once_then_succeeds_through_http(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    clock = Clock()
    engine = engine_of(parts, clock=clock)
    parts.fail_load.add("ratio-model")
    body = {"model": "ratio-model", "prompt": "a lighthouse", "safe_mode": False}
    async with running(make_settings(tmp_path), engine) as client:
        first = await client.post("/api/v1/image/generate", json=body, headers=AUTH)
        assert first.status_code == 503
        assert first.json() == {
            "error": "The model is temporarily offline. Please try again later."
        }
        models = (await client.get("/api/v1/models", params={"type": "image"})).json()
        spec = next(m for m in models["data"] if m["id"] == "ratio-model")["model_spec"]
        assert spec["loadState"] == "failed" and spec["offline"] is True
        assert "weights for ratio-model are missing" in spec["loadError"]
        assert spec["nextLoadAttempt"].endswith("Z")
        refused = await client.post("/api/v1/image/generate", json=body, headers=AUTH)
        assert refused.status_code == 503
        parts.fail_load.clear()
        clock.now += 30
        retried = await client.post("/api/v1/image/generate", json=body, headers=AUTH)
        assert retried.status_code == 200
        assert parts.loads.count("ratio-model") == 2
