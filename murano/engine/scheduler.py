"""Per-model queues and the batch collector.

When a model's worker is free it takes the oldest job and every queued job with the same
batch key, up to `max_batch_images` images, without waiting when idle (or up to
`batch_wait_s` for more when configured). The oldest job always heads the next batch, so an
incompatible job is never starved by a stream of compatible ones. Jobs past their deadline
or cancelled are dropped before they reach the device. Inference runs on the device thread;
post-processing of batch k runs on the CPU pool while batch k+1 is on the device. A failing
batch fails each of its own jobs and the worker goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from PIL.Image import Image

from murano.engine.backend import Backend
from murano.engine.job import GenerationJob
from murano.errors import (
    DeadlineExceeded,
    InferenceFailed,
    JobCancelled,
    ModelAtCapacity,
    MuranoError,
)
from murano.metrics import Metrics

__all__ = ["ModelQueue", "SchedulerConfig"]

log = logging.getLogger("murano.engine")

# Classifies a batch's images for safe mode (True = flagged); runs on the CPU pool.
Inspector = Callable[[Sequence[Image]], list[bool]]


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_batch_images: int = 8
    batch_wait_s: float = 0.0
    max_queue: int = 64
    timeout_s: float = 300.0


class ModelQueue:
    """The queue and worker of one model."""

    def __init__(
        self,
        model_id: str,
        acquire: Callable[[], Awaitable[Backend]],
        *,
        config: SchedulerConfig,
        device_executor: Executor,
        cpu_executor: Executor,
        metrics: Metrics,
        inspector: Inspector | None = None,
    ) -> None:
        self.model_id = model_id
        self._acquire = acquire
        self._config = config
        self._device = device_executor
        self._cpu = cpu_executor
        self._metrics = metrics
        self._inspector = inspector
        self._queue: deque[GenerationJob] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._post_tasks: set[asyncio.Task[None]] = set()
        self.busy = False

    # -- submission ---------------------------------------------------------------------

    def submit(self, job: GenerationJob) -> None:
        if len(self._queue) >= self._config.max_queue:
            raise ModelAtCapacity(self.model_id)
        job.timings.enqueued = time.monotonic()
        if job.deadline is None:
            job.deadline = job.timings.enqueued + self._config.timeout_s
        self._queue.append(job)
        self._gauge()
        self._wake.set()
        self._ensure_worker()

    def cancel(self, job: GenerationJob) -> bool:
        """Remove a job that has not started; False when it already has."""
        try:
            self._queue.remove(job)
        except ValueError:
            return False
        job.fail(JobCancelled())
        self._gauge()
        return True

    @property
    def depth(self) -> int:
        return len(self._queue)

    # -- worker -------------------------------------------------------------------------

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name=f"murano-worker-{self.model_id}"
            )

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        while self._queue:
            self._queue.popleft().fail(JobCancelled())
        if self._post_tasks:
            await asyncio.gather(*self._post_tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if self._config.batch_wait_s > 0:
                await self._wait_for_batch()
            batch = self._take_batch()
            if batch:
                await self._process(batch)

    async def _wait_for_batch(self) -> None:
        end = time.monotonic() + self._config.batch_wait_s
        while self._queued_images() < self._config.max_batch_images:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), remaining)

    def _queued_images(self) -> int:
        return sum(job.images for job in self._queue)

    def _take_batch(self) -> list[GenerationJob]:
        now = time.monotonic()
        self._drop_stale(now)
        if not self._queue:
            return []
        head = self._queue.popleft()
        batch, images = [head], head.images
        for job in list(self._queue):
            if images + job.images > self._config.max_batch_images:
                continue
            if job.batch_key == head.batch_key:
                self._queue.remove(job)
                batch.append(job)
                images += job.images
        self._gauge()
        return batch

    def _drop_stale(self, now: float) -> None:
        for job in list(self._queue):
            if job.done:
                self._queue.remove(job)
            elif job.deadline is not None and now > job.deadline:
                self._queue.remove(job)
                job.fail(DeadlineExceeded((now - job.timings.enqueued) * 1000))

    async def _process(self, batch: list[GenerationJob]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        for job in batch:
            job.timings.started = started
            self._metrics.queue_seconds.labels(self.model_id).observe(
                started - job.timings.enqueued
            )
        self.busy = True
        try:
            backend = await self._acquire()
            params = [job.params for job in batch]
            images = await loop.run_in_executor(self._device, backend.generate, params)
            if len(images) != len(batch):
                raise RuntimeError(f"backend returned {len(images)} results for {len(batch)}")
        except asyncio.CancelledError:
            # The server is shutting down: these jobs will not be delivered.
            self._fail(batch, JobCancelled())
            raise
        except MuranoError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:
            log.exception("batch of %d jobs failed on model %s", len(batch), self.model_id)
            self._fail(batch, InferenceFailed(repr(exc)))
            return
        finally:
            self.busy = False
        generated = time.monotonic()
        count = sum(len(imgs) for imgs in images)
        self._metrics.inference_seconds.labels(self.model_id).observe(generated - started)
        self._metrics.batch_images.labels(self.model_id).observe(count)
        self._metrics.images.labels(self.model_id).inc(count)
        for job in batch:
            job.timings.generated = generated
        task = loop.create_task(self._postprocess(batch, images))
        self._post_tasks.add(task)
        task.add_done_callback(self._post_tasks.discard)

    def _fail(self, batch: Sequence[GenerationJob], error: MuranoError) -> None:
        for job in batch:
            job.fail(error)

    async def _postprocess(
        self, batch: Sequence[GenerationJob], images: Sequence[Sequence[Image]]
    ) -> None:
        loop = asyncio.get_running_loop()
        flags = await self._inspect(batch, images)
        for job, job_images, job_flags in zip(batch, images, flags, strict=True):
            began = time.monotonic()
            try:
                result: Any = await loop.run_in_executor(
                    self._cpu, job.finish, job_images, job_flags
                )
            except Exception as exc:
                log.exception("post-processing failed for job %d", job.id)
                job.fail(exc if isinstance(exc, MuranoError) else InferenceFailed(repr(exc)))
                continue
            job.timings.finished = time.monotonic()
            self._metrics.postprocess_seconds.labels(self.model_id).observe(
                job.timings.finished - began
            )
            job.resolve(result)

    async def _inspect(
        self, batch: Sequence[GenerationJob], images: Sequence[Sequence[Image]]
    ) -> list[list[bool] | None]:
        """One classifier call for every image of the jobs that asked for safe mode."""
        wanted = [i for i, job in enumerate(batch) if job.safety_check]
        flags: list[list[bool] | None] = [None] * len(batch)
        if not wanted or self._inspector is None:
            return flags
        flat = [img for i in wanted for img in images[i]]
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                self._cpu, self._inspector, flat
            )
        except Exception:
            log.exception("safety classifier failed; flagging the batch's images")
            result = [True] * len(flat)
        offset = 0
        for i in wanted:
            n = len(images[i])
            flags[i] = result[offset : offset + n]
            offset += n
        return flags

    def _gauge(self) -> None:
        self._metrics.queue_depth.labels(self.model_id).set(len(self._queue))
