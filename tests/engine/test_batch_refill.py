"""The refill window: after a batch of n > 1 images that finished while q images were
queued, a free worker waits for n + q queued images before it starts a smaller batch, and a
lone request after a lone one never waits. Windows of an hour: a wait that should not
happen would hang the test (pytest-timeout), one that should happen is ended by the jobs
arriving, never by the clock."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

from PIL.Image import Image

from murano.engine.engine import Engine
from murano.engine.job import GenerationJob, JobState
from murano.engine.scheduler import SchedulerConfig
from tests.conftest import FakeEngineParts, entered, fake_engine, generation_params

HOUR_S = 3600.0


def keep(images: Sequence[Image], flags: Sequence[bool] | None) -> list[Image]:
    return list(images)


def job(engine: Engine, seed: int) -> GenerationJob:
    p = generation_params(prompt=f"p{seed}", seed=seed)
    return GenerationJob(params=p, finish=keep, batch_key=engine.batch_key(p))


async def batch_of_three_then_one_by_one(parts: FakeEngineParts, refill_s: float) -> list[int]:
    """A first job holds the device while three more queue (a batch of 3 follows); then
    three jobs arrive one by one, each after the worker had time to act on the last."""
    engine = fake_engine(parts, config=SchedulerConfig(batch_refill_s=refill_s))
    backend = await engine.ensure_loaded("test-model")
    gate = threading.Event()
    backend.gate = gate  # type: ignore[attr-defined]
    first = job(engine, 0)
    engine.submit(first)
    await asyncio.to_thread(backend.started.wait, 10)  # type: ignore[attr-defined]
    crowd = [job(engine, seed) for seed in (1, 2, 3)]
    for j in crowd:
        engine.submit(j)
    gate.set()
    await asyncio.gather(first.future, *(j.future for j in crowd))
    later = [job(engine, seed) for seed in (4, 5, 6)]
    for j in later:
        engine.submit(j)
        for _ in range(20):  # let the worker take (or not take) what is queued
            await asyncio.sleep(0)
        if refill_s == 0:
            await j.future
    await asyncio.gather(*(j.future for j in later))
    await engine.close()
    return [len(b) for b in parts.backends["test-model"].batches]


async def test_after_a_batch_of_three_the_worker_waits_for_three(parts: FakeEngineParts) -> None:
    assert await batch_of_three_then_one_by_one(parts, HOUR_S) == [1, 3, 3]


async def test_without_the_window_each_arrival_goes_alone(parts: FakeEngineParts) -> None:
    assert await batch_of_three_then_one_by_one(parts, 0.0) == [1, 3, 1, 1, 1]


async def test_a_lone_request_after_a_lone_one_never_waits(parts: FakeEngineParts) -> None:
    engine = fake_engine(parts, config=SchedulerConfig(batch_refill_s=HOUR_S))
    await engine.ensure_loaded("test-model")
    for seed in range(3):
        j = job(engine, seed)
        engine.submit(j)
        await j.future
    assert [len(b) for b in parts.backends["test-model"].batches] == [1, 1, 1]
    await engine.close()


class Turnstile:
    """A gate for the fake backend that lets one batch through per `release()`."""

    def __init__(self) -> None:
        self._passes = threading.Semaphore(0)

    def wait(self, timeout: float | None = None) -> bool:
        return self._passes.acquire(timeout=timeout)

    def release(self) -> None:
        self._passes.release()


async def test_two_half_batches_merge_instead_of_taking_turns(parts: FakeEngineParts) -> None:
    """A batch of 2 runs while 2 more queue. When it finishes, its 2 clients come back one
    by one: the worker waits for them and runs one batch of 4, rather than the 2 that
    waited now and the 2 that come back next, and so on (half batches taking turns)."""
    engine = fake_engine(parts, config=SchedulerConfig(batch_refill_s=HOUR_S))
    backend = await engine.ensure_loaded("test-model")
    turnstile = Turnstile()
    backend.gate = turnstile  # type: ignore[attr-defined]
    first = job(engine, 0)
    engine.submit(first)
    await entered(first, JobState.RUNNING)
    halves = [job(engine, seed) for seed in (1, 2)]
    for j in halves:
        engine.submit(j)
    turnstile.release()  # the first job alone, then the half batch that queued behind it
    await entered(halves[0], JobState.RUNNING)
    waiting = [job(engine, seed) for seed in (3, 4)]
    for j in waiting:
        engine.submit(j)
    turnstile.release()
    await asyncio.gather(first.future, *(j.future for j in halves))
    back = [job(engine, seed) for seed in (5, 6)]
    for j in back:
        for _ in range(20):  # let the worker take (or not take) what is queued
            await asyncio.sleep(0)
        engine.submit(j)
    turnstile.release()
    turnstile.release()  # a fourth batch, should the worker (wrongly) make one
    await asyncio.gather(*(j.future for j in (*waiting, *back)))
    await engine.close()
    assert [len(b) for b in parts.backends["test-model"].batches] == [1, 2, 4]
