"""Per-model queues and the batch collector.

When a model's worker is free it takes the oldest job and every queued job with the same
batch key, up to `max_batch_images` images, without waiting when idle (or up to
`batch_wait_s` for more when configured). Under a steady load it refills: after a batch of
n > 1 images, while fewer than n + q images are queued (q: those that were queued when that
batch finished), it waits up to `batch_refill_s` for them. The clients that batch answered
come back one by one; so they join the ones already waiting in one batch, instead of the
queue settling into two half batches that take turns (on a CPU the post-processing and HTTP
of one half then run beside the other's pipeline call and slow it more than the wait costs,
`benchmarks/throughput.py`). A batch of one never makes the next wait. The oldest job always
heads the next batch, so an incompatible job is never starved by a stream of compatible
ones. Jobs past their deadline are expired, and cancelled ones dropped, before they reach
the device.

A batch moves its jobs through `loading` (when the model is not resident), `running` (stamped
when the device thread really starts it) and `postprocessing`. While it runs, a `StepControl`
records each step's progress into the jobs and interrupts the pipeline once every job of the
batch is cancelled; the images of a job cancelled later are discarded. Post-processing of
batch k runs on the CPU pool while batch k+1 is on the device, but the worker takes no new
batch while more than `max_pending_batches` finished batches wait for post-processing, so a
device faster than the CPUs fills the queue (and then refuses with 503) instead of memory.
A failing batch fails each of its own jobs and the worker goes on.

A model with several replicas (`murano.engine.replica`) hands each batch to a free one, so N
replicas run N batches at once, each on its own device thread: a resident replica before one
that must load, an idle device before a busy one. A replica whose load fails is in back-off
and is passed over; the batch it had goes back to the head of the queue for the others (it
fails only when no replica can load). A batch that fails on a replica fails its own jobs
only. The back-pressure bound is `max_pending_batches` per replica.
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

from murano.engine.backend import Backend, Preview
from murano.engine.job import GenerationJob, Inspector, JobState
from murano.engine.replica import LoadState, Replica
from murano.errors import (
    DeadlineExceeded,
    InferenceFailed,
    JobCancelled,
    ModelAtCapacity,
    ModelUnavailable,
    MuranoError,
)
from murano.metrics import Metrics

__all__ = ["BatchControl", "ModelQueue", "SchedulerConfig", "finish_job"]

log = logging.getLogger("murano.engine")


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    max_batch_images: int = 8
    batch_wait_s: float = 0.0
    # How long a free worker waits for as many images as its previous batch had (0: never).
    batch_refill_s: float = 0.0
    max_queue: int = 64
    timeout_s: float = 300.0
    # Finished batches allowed to wait for post-processing before the worker pauses.
    max_pending_batches: int = 2


class BatchControl:
    """The `StepControl` of one batch. Called on the device thread; everything it changes
    in the jobs is handed to the event loop."""

    def __init__(self, jobs: Sequence[GenerationJob], loop: asyncio.AbstractEventLoop) -> None:
        self.jobs = list(jobs)
        self._loop = loop

    def all_cancelled(self) -> bool:
        # Reading a job's state from the device thread is safe: it is one attribute.
        return all(job.finished for job in self.jobs)

    def begin(self) -> bool:
        """The device thread starts the batch now; False when nobody wants it any more."""
        self._loop.call_soon_threadsafe(self._move, JobState.RUNNING, time.monotonic())
        return not self.all_cancelled()

    def on_step(self, step: int, steps: int, preview: Preview | None) -> bool:
        wanted = any(
            job.preview_every > 0 and step % job.preview_every == 0 and not job.finished
            for job in self.jobs
        )
        images = preview() if preview is not None and wanted else None
        self._loop.call_soon_threadsafe(self._progress, step, steps, images)
        return not self.all_cancelled()

    def _move(self, state: JobState, at: float) -> None:
        for job in self.jobs:
            job.move(state, at=at)

    def _progress(self, step: int, steps: int, images: list[Image] | None) -> None:
        offset = 0
        for job in self.jobs:
            shown = None
            if images is not None and job.preview_every > 0 and step % job.preview_every == 0:
                shown = images[offset] if offset < len(images) else None
            job.set_progress(step, steps, shown)
            offset += job.images


def _run_on_device(backend: Backend, control: BatchControl) -> list[list[Image]] | None:
    if not control.begin():
        return None
    return backend.generate([job.params for job in control.jobs], control)


async def finish_job(
    job: GenerationJob,
    images: Sequence[Image],
    flags: Sequence[bool] | None,
    cpu: Executor,
    metrics: Metrics,
    model_id: str,
) -> None:
    """Post-process `job`'s images on `cpu` and hand the result to its caller; a failure
    fails the job alone."""
    began = time.monotonic()
    try:
        result: Any = await asyncio.get_running_loop().run_in_executor(
            cpu, job.finish, images, flags
        )
    except Exception as exc:
        log.exception("post-processing failed for job %d", job.id)
        job.fail(exc if isinstance(exc, MuranoError) else InferenceFailed(repr(exc)))
        return
    metrics.postprocess_seconds.labels(model_id).observe(time.monotonic() - began)
    job.resolve(result)  # a no-op when the job was cancelled meanwhile


class ModelQueue:
    """The queue of one model, and the worker that hands its batches to the model's
    replicas."""

    def __init__(
        self,
        model_id: str,
        replicas: Sequence[Replica],
        acquire: Callable[[Replica], Awaitable[Backend]],
        *,
        config: SchedulerConfig,
        cpu_executor: Executor,
        metrics: Metrics,
        usable: Callable[[Replica], bool] = lambda _replica: True,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self.model_id = model_id
        self.replicas = list(replicas)
        self._acquire = acquire
        self._config = config
        self._cpu = cpu_executor
        self._metrics = metrics
        self._usable = usable
        self._on_idle = on_idle
        self._queue: deque[GenerationJob] = deque()
        self._wake = asyncio.Event()
        self._freed = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._post_tasks: set[asyncio.Task[None]] = set()
        self._post_done = asyncio.Event()
        # The images the refill window waits for: those of the batch that finished last plus
        # those queued when it finished (0: do not wait).
        self._refill_images = 0

    @property
    def busy(self) -> bool:
        """A batch of the model is loading or running on some replica."""
        return any(replica.busy for replica in self.replicas)

    # -- submission ---------------------------------------------------------------------

    def check_room(self) -> None:
        """ModelAtCapacity when the queue cannot take another job."""
        if len(self._queue) >= self._config.max_queue:
            raise ModelAtCapacity(self.model_id)

    def submit(self, job: GenerationJob) -> None:
        self.check_room()
        job.move(JobState.QUEUED)
        if job.deadline is None:
            job.deadline = job.stamps[JobState.QUEUED] + self._config.timeout_s
        self._queue.append(job)
        self._gauge()
        self._wake.set()
        self._ensure_worker()

    def remove(self, job: GenerationJob) -> bool:
        """Take a job out of the queue; False when it is not there (any more)."""
        try:
            self._queue.remove(job)
        except ValueError:
            return False
        self._gauge()
        return True

    def position(self, job: GenerationJob) -> int | None:
        """How many jobs are ahead of `job` in the queue; None when it is not queued."""
        for index, queued in enumerate(self._queue):
            if queued is job:
                return index
        return None

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def pending_batches(self) -> int:
        """Finished batches still in post-processing."""
        return len(self._post_tasks)

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
        for task in list(self._batches):
            task.cancel()
        if self._batches:
            await asyncio.gather(*self._batches, return_exceptions=True)
        while self._queue:
            self._queue.popleft().fail(JobCancelled())
        if self._post_tasks:
            await asyncio.gather(*self._post_tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
            replica = await self._free_replica()
            await self._wait_for_postprocessing()
            if self._config.batch_wait_s > 0:
                await self._wait_for_batch(self._config.max_batch_images, self._config.batch_wait_s)
            refill = min(self._refill_images, self._config.max_batch_images)
            if self._config.batch_refill_s > 0 and refill > 1:
                await self._wait_for_batch(refill, self._config.batch_refill_s)
            batch = self._take_batch()
            if batch:
                self._dispatch(replica, batch)

    async def _free_replica(self) -> Replica:
        """The replica the next batch goes to, waiting for one to be free."""
        while True:
            replica = self._choose()
            if replica is not None:
                return replica
            self._freed.clear()
            await self._freed.wait()

    def _choose(self) -> Replica | None:
        free = [r for r in self.replicas if not r.busy]
        usable = [r for r in free if self._usable(r)]
        if not usable:
            if any(self._usable(r) for r in self.replicas):
                return None  # wait for a busy replica that can serve
            # None can load now: the first free one fails the batch (ModelUnavailable).
            return free[0] if free else None
        return min(
            usable,
            key=lambda r: (
                not r.resident,
                r.status.state is LoadState.FAILED,
                r.worker.running,
                r.index,
            ),
        )

    def _dispatch(self, replica: Replica, batch: list[GenerationJob]) -> None:
        replica.busy = True
        task = asyncio.get_running_loop().create_task(
            self._process(replica, batch), name=f"murano-batch-{self.model_id}-{replica.name}"
        )
        self._batches.add(task)
        task.add_done_callback(self._batches.discard)

    async def _wait_for_postprocessing(self) -> None:
        """Back-pressure: the device waits for the CPUs instead of piling up images."""
        limit = self._config.max_pending_batches * len(self.replicas)
        while len(self._post_tasks) > limit:
            self._post_done.clear()
            await self._post_done.wait()

    async def _wait_for_batch(self, images: int, window_s: float) -> None:
        """Until `images` images are queued, for at most `window_s`."""
        end = time.monotonic() + window_s
        while self._queued_images() < images:
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
            if job.finished:
                self._queue.remove(job)
            elif job.deadline is not None and now > job.deadline:
                self._queue.remove(job)
                job.fail(DeadlineExceeded((now - job.stamps[JobState.QUEUED]) * 1000))

    async def _process(self, replica: Replica, batch: list[GenerationJob]) -> None:
        loop = asyncio.get_running_loop()
        images: list[list[Image]] | None = None
        try:
            for job in batch:
                job.replica = replica.name
                if not replica.resident:
                    job.move(JobState.LOADING)
            backend = await self._acquire(replica)
            batch = [job for job in batch if not job.finished]
            if not batch:
                return
            control = BatchControl(batch, loop)
            replica.worker.running += 1
            try:
                images = await loop.run_in_executor(
                    replica.worker.executor, _run_on_device, backend, control
                )
            finally:
                replica.worker.running -= 1
            if images is not None and len(images) != len(batch):
                raise RuntimeError(f"backend returned {len(images)} results for {len(batch)}")
        except asyncio.CancelledError:
            # The server is shutting down: these jobs will not be delivered.
            self._fail(batch, JobCancelled())
            raise
        except ModelUnavailable as exc:
            if not self._requeue(replica, batch):
                self._fail(batch, exc)
            return
        except MuranoError as exc:
            self._fail(batch, exc)
            return
        except Exception as exc:
            log.exception(
                "batch of %d jobs failed on model %s (replica %s)",
                len(batch),
                self.model_id,
                replica.name,
            )
            self._fail(batch, InferenceFailed(repr(exc)))
            return
        finally:
            self._release(replica)
        taken = sum(job.images for job in batch)
        self._refill_images = taken + self._queued_images() if taken > 1 else 0
        if images is not None:  # None: every job was cancelled before the device started it
            self._finished_batch(replica, batch, images)

    def _release(self, replica: Replica) -> None:
        replica.busy = False
        self._freed.set()
        self._on_idle()

    def _requeue(self, failed: Replica, batch: Sequence[GenerationJob]) -> bool:
        """A replica could not load: its batch goes back to the head of the queue when
        another replica may serve it (one resident, or one that has not failed too).
        False when none can."""
        others = [r for r in self.replicas if r is not failed and self._usable(r)]
        if not any(r.resident or r.status.state is not LoadState.FAILED for r in others):
            return False
        for job in reversed(batch):
            if not job.finished:
                self._queue.appendleft(job)
        self._gauge()
        self._wake.set()
        return True

    def _finished_batch(
        self, replica: Replica, batch: list[GenerationJob], images: list[list[Image]]
    ) -> None:
        generated = time.monotonic()
        count = sum(len(imgs) for imgs in images)
        started = batch[0].stamps.get(JobState.RUNNING, generated)
        labels = (self.model_id, replica.name)
        self._metrics.inference_seconds.labels(*labels).observe(generated - started)
        self._metrics.batch_images.labels(*labels).observe(count)
        self._metrics.images.labels(self.model_id).inc(count)
        # Jobs cancelled while the batch ran: their images are discarded here.
        kept = [(job, imgs) for job, imgs in zip(batch, images, strict=True) if not job.finished]
        if not kept:
            return
        for job, _ in kept:
            job.move(JobState.POSTPROCESSING, at=generated)
        task = asyncio.get_running_loop().create_task(self._postprocess(kept))
        self._post_tasks.add(task)
        task.add_done_callback(self._post_finished)

    def _post_finished(self, task: asyncio.Task[None]) -> None:
        self._post_tasks.discard(task)
        self._post_done.set()

    def _fail(self, batch: Sequence[GenerationJob], error: MuranoError) -> None:
        for job in batch:
            job.fail(error)

    async def _postprocess(self, kept: Sequence[tuple[GenerationJob, list[Image]]]) -> None:
        flags = await self._inspect(kept)
        await asyncio.gather(
            *(self._finish(job, imgs, fl) for (job, imgs), fl in zip(kept, flags, strict=True))
        )

    async def _finish(
        self, job: GenerationJob, images: list[Image], flags: list[bool] | None
    ) -> None:
        if job.finished:
            return  # cancelled while waiting: nothing to encode
        await finish_job(job, images, flags, self._cpu, self._metrics, self.model_id)

    async def _inspect(
        self, kept: Sequence[tuple[GenerationJob, list[Image]]]
    ) -> list[list[bool] | None]:
        """One call per classifier (normally the server's one) over every image of the jobs
        whose safety decision runs it."""
        groups: dict[Inspector, list[int]] = {}
        for i, (job, _) in enumerate(kept):
            if job.classifier is not None and not job.finished:
                groups.setdefault(job.classifier, []).append(i)
        flags: list[list[bool] | None] = [None] * len(kept)
        for classifier, wanted in groups.items():
            flat = [img for i in wanted for img in kept[i][1]]
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    self._cpu, classifier, flat
                )
            except Exception:
                log.exception("safety classifier failed; flagging the batch's images")
                result = [True] * len(flat)
            offset = 0
            for i in wanted:
                n = len(kept[i][1])
                flags[i] = result[offset : offset + n]
                offset += n
        return flags

    def _gauge(self) -> None:
        self._metrics.queue_depth.labels(self.model_id).set(len(self._queue))
