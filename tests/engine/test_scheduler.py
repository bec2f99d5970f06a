"""The scheduler on the fake backend: batching, compatibility, fairness, back-pressure,
deadlines, cancellation and failure isolation. No timing thresholds: events and gates."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from PIL.Image import Image

from murano.engine.engine import Engine
from murano.engine.job import GenerationJob, JobState
from murano.engine.params import GenerationParams
from murano.engine.scheduler import SchedulerConfig
from murano.errors import DeadlineExceeded, InferenceFailed, JobCancelled, ModelAtCapacity
from tests.conftest import FakeEngineParts, fake_engine, generation_params

BASE = generation_params()
params = generation_params


def keep(images: Sequence[Image], flags: Sequence[bool] | None) -> list[Image]:
    return list(images)


def job(engine: Engine, p: GenerationParams, **kwargs: Any) -> GenerationJob:
    return GenerationJob(params=p, finish=keep, batch_key=engine.batch_key(p), **kwargs)


async def held_engine(
    parts: FakeEngineParts, **config: Any
) -> tuple[Engine, threading.Event, GenerationJob]:
    """An engine whose device is busy with a first job until the returned gate is set."""
    engine = fake_engine(parts, config=SchedulerConfig(**config))
    backend = await engine.ensure_loaded("test-model")
    gate = threading.Event()
    backend.gate = gate  # type: ignore[attr-defined]
    first = job(engine, params(prompt="first"))
    engine.submit(first)
    await asyncio.to_thread(backend.started.wait, 10)  # type: ignore[attr-defined]
    return engine, gate, first


async def test_compatible_jobs_share_a_batch(parts: FakeEngineParts) -> None:
    engine, gate, first = await held_engine(parts, max_batch_images=8)
    jobs = [job(engine, params(prompt=f"p{i}", seed=i, images=2)) for i in range(3)]
    for j in jobs:
        engine.submit(j)
    gate.set()
    await asyncio.gather(first.future, *(j.future for j in jobs))
    batches = parts.backends["test-model"].batches
    assert [len(b) for b in batches] == [1, 3]
    await engine.close()


async def test_batched_images_equal_single_ones(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts)
    jobs = [job(engine, params(prompt=f"p{i}", seed=10 * i, images=2)) for i in range(3)]
    for j in jobs:
        engine.submit(j)
    gate.set()
    batched = await asyncio.gather(*(j.future for j in jobs))
    for j, images in zip(jobs, batched, strict=True):
        alone = job(engine, j.params)
        engine.submit(alone)
        single = await alone.future
        assert [im.tobytes() for im in single] == [im.tobytes() for im in images]
    await engine.close()


async def test_incompatible_jobs_never_share(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts)
    variants = [
        params(width=128),
        params(steps=5),
        params(cfg_scale=2.0),
        params(lora_strength=50),
        params(height=128),
        params(),
    ]
    jobs = [job(engine, p) for p in variants]
    for j in jobs:
        engine.submit(j)
    gate.set()
    await asyncio.gather(*(j.future for j in jobs))
    for batch in parts.backends["test-model"].batches:
        keys = {(p.width, p.height, p.steps, p.cfg_scale, p.lora_strength) for p in batch}
        assert len(keys) == 1
    await engine.close()


async def test_batch_limit_in_images(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts, max_batch_images=4)
    jobs = [job(engine, params(seed=i, images=3)) for i in range(3)]
    for j in jobs:
        engine.submit(j)
    gate.set()
    await asyncio.gather(*(j.future for j in jobs))
    for batch in parts.backends["test-model"].batches:
        assert sum(p.images for p in batch) <= 4
    await engine.close()


async def test_an_incompatible_job_is_not_starved(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts, max_batch_images=2)
    odd = job(engine, params(width=128))
    stream = [job(engine, params(seed=i)) for i in range(2)]
    engine.submit(stream[0])
    engine.submit(odd)
    for j in stream[1:]:
        engine.submit(j)
    more = [job(engine, params(seed=100 + i)) for i in range(6)]
    for j in more:
        engine.submit(j)
    gate.set()
    await asyncio.gather(odd.future, *(j.future for j in stream + more))
    order = [b[0].width for b in parts.backends["test-model"].batches]
    # The 128-px job was second oldest: it runs right after the first compatible batch.
    assert order.index(128) == 2
    await engine.close()


async def test_queue_bound_gives_capacity_error_then_recovers(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts, max_queue=2)
    queued = [job(engine, params(seed=i)) for i in range(2)]
    for j in queued:
        engine.submit(j)
    with pytest.raises(ModelAtCapacity) as info:
        engine.submit(job(engine, params(seed=9)))
    assert info.value.headers["Retry-After"]
    gate.set()
    await asyncio.gather(*(j.future for j in queued))
    later = job(engine, params(seed=10))
    engine.submit(later)
    assert len(await later.future) == 1
    await engine.close()


async def test_job_past_its_deadline_never_reaches_the_device(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts)
    loop = asyncio.get_running_loop()
    late = job(engine, params(prompt="late"), deadline=loop.time() - 1)
    engine.submit(late)
    gate.set()
    with pytest.raises(DeadlineExceeded):
        await late.future
    prompts = [p.prompt for b in parts.backends["test-model"].batches for p in b]
    assert "late" not in prompts
    await engine.close()


async def test_cancelled_job_is_removed(parts: FakeEngineParts) -> None:
    engine, gate, first = await held_engine(parts)
    gone = job(engine, params(prompt="gone"))
    engine.submit(gone)
    assert engine.cancel(gone) is True
    gate.set()
    await first.future
    with pytest.raises(JobCancelled):
        await gone.future
    assert gone.state is JobState.CANCELLED
    assert engine.deliver(first) is True
    assert engine.cancel(first) is False
    prompts = [p.prompt for b in parts.backends["test-model"].batches for p in b]
    assert "gone" not in prompts
    await engine.close()


async def test_failing_batch_fails_only_its_jobs(parts: FakeEngineParts) -> None:
    engine, gate, _first = await held_engine(parts)
    backend = parts.backends["test-model"]
    backend.fail_when = lambda batch: any(p.width == 128 for p in batch)
    bad = [job(engine, params(width=128, seed=i)) for i in range(2)]
    good = [job(engine, params(seed=i)) for i in range(2)]
    for j in bad + good:
        engine.submit(j)
    gate.set()
    results = await asyncio.gather(*(j.future for j in bad + good), return_exceptions=True)
    assert all(isinstance(r, InferenceFailed) for r in results[:2])
    assert all(isinstance(r, list) for r in results[2:])
    assert all(j.done for j in bad + good)
    await engine.close()


async def test_wait_window_gathers_a_batch(parts: FakeEngineParts) -> None:
    engine = fake_engine(parts, config=SchedulerConfig(batch_wait_s=5.0, max_batch_images=3))
    await engine.ensure_loaded("test-model")
    jobs = [job(engine, params(seed=i)) for i in range(3)]
    for j in jobs:
        engine.submit(j)
        await asyncio.sleep(0)
    await asyncio.gather(*(j.future for j in jobs))
    # The batch filled to its limit before the window ended, so it went at once.
    assert [len(b) for b in parts.backends["test-model"].batches] == [3]
    await engine.close()


async def test_safe_mode_flags_come_from_one_classifier_call(parts: FakeEngineParts) -> None:
    calls: list[int] = []

    def inspector(images: Sequence[Image]) -> list[bool]:
        calls.append(len(images))
        return [i % 2 == 0 for i in range(len(images))]

    engine = fake_engine(parts)
    backend = await engine.ensure_loaded("test-model")
    gate = threading.Event()
    backend.gate = gate  # type: ignore[attr-defined]
    seen: list[Sequence[bool] | None] = []

    def record(images: Sequence[Image], flags: Sequence[bool] | None) -> None:
        seen.append(flags)

    jobs = [
        GenerationJob(
            params=params(seed=i, images=2),
            finish=record,
            batch_key=engine.batch_key(BASE),
            classifier=inspector if i != 1 else None,
        )
        for i in range(3)
    ]
    for j in jobs:
        engine.submit(j)
    gate.set()
    await asyncio.gather(*(j.future for j in jobs))
    # One call per batch, over the images of the jobs that asked for the check only.
    assert calls == [4]
    assert None in seen
    await engine.close()


async def test_the_worker_waits_for_post_processing(parts: FakeEngineParts) -> None:
    """Back-pressure: with finished batches piling up, the device takes no new batch."""
    engine = fake_engine(parts, config=SchedulerConfig(max_pending_batches=0, max_batch_images=1))
    await engine.ensure_loaded("test-model")
    hold = threading.Event()

    def slow_finish(images: Sequence[Image], flags: Sequence[bool] | None) -> list[Image]:
        hold.wait(timeout=30)
        return list(images)

    first = GenerationJob(params=params(seed=1), finish=slow_finish)
    second = job(engine, params(seed=2))
    engine.submit(first)
    engine.submit(second)
    while first.state is not JobState.POSTPROCESSING:
        await asyncio.sleep(0.01)
    # One batch waits for the CPU pool: the second job stays queued, off the device.
    for _ in range(20):
        await asyncio.sleep(0)
    assert second.state is JobState.QUEUED and len(parts.backends["test-model"].batches) == 1
    hold.set()
    await asyncio.gather(first.future, second.future)
    assert len(parts.backends["test-model"].batches) == 2
    await engine.close()
