"""The ingress's engine under Ray Serve: `ServeEngine` is the usual `Engine` (job states,
tracking, drain, cancel, deliver: everything the API and the money rely on) whose model
queues are `RemoteQueue`s. A remote queue hands each job to the model's Serve deployment
and follows the events its replica streams back; batching, the device and the model's
queue live in the replica (`murano.distributed.replica`). Post-processing (safety blur,
watermark, metadata, encoding) runs here, on the ingress's CPU pool.

A job whose replica dies, or cannot be reached, fails with `InferenceFailed` (a 500 whose
reservation is released); cancelling a job cancels its Serve call, which cancels the job
in the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from concurrent.futures import Executor
from typing import Any, Protocol, cast

from PIL.Image import Image

from murano.catalog.entries import Catalog, ModelEntry
from murano.distributed._wire import (
    Event,
    Failed,
    Generated,
    Progress,
    RemoteJob,
    Running,
    load_error,
)
from murano.engine.backend import Backend, StepControl
from murano.engine.engine import Engine, LoadState
from murano.engine.job import GenerationJob, JobState
from murano.engine.params import GenerationParams
from murano.engine.scheduler import ModelQueue, SchedulerConfig, finish_job
from murano.errors import InferenceFailed, JobCancelled, ModelAtCapacity
from murano.metrics import Metrics

__all__ = ["EventStream", "ModelHandle", "RemoteQueue", "ServeEngine", "ServeHandle"]

log = logging.getLogger("murano.distributed")


class EventStream(Protocol):
    """One call to a replica's `generate`: its events, and a way to cancel it."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    def cancel(self) -> None: ...


class ModelHandle(Protocol):
    """How the ingress calls a model's deployment (`ServeHandle`; tests use a replica in
    the same process)."""

    def generate(self, request: RemoteJob) -> EventStream: ...


class ServeHandle:
    """A Serve `DeploymentHandle` of a model deployment, as a `ModelHandle`."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle.options(stream=True)

    def generate(self, request: RemoteJob) -> EventStream:
        return cast(EventStream, self._handle.generate.remote(request))


class RemoteQueue:
    """Stands where a `ModelQueue` stands in the engine, for a model served by a Serve
    deployment: at most `capacity` jobs in flight through this ingress (ModelAtCapacity
    beyond), each followed by a task of its own. A job must reach a device within
    `timeout_s` (the replica expires it otherwise)."""

    def __init__(
        self,
        model_id: str,
        handle: ModelHandle,
        *,
        capacity: int,
        timeout_s: float,
        cpu_executor: Executor,
        metrics: Metrics,
    ) -> None:
        self.model_id = model_id
        self._handle = handle
        self._capacity = capacity
        self._timeout_s = timeout_s
        self._cpu = cpu_executor
        self._metrics = metrics
        self._tasks: dict[GenerationJob, asyncio.Task[None]] = {}

    @property
    def busy(self) -> bool:
        return bool(self._tasks)

    @property
    def depth(self) -> int:
        """Jobs sent and not yet started on a device."""
        return sum(1 for job in self._tasks if job.state is JobState.QUEUED)

    def check_room(self) -> None:
        if len(self._tasks) >= self._capacity:
            raise ModelAtCapacity(self.model_id)

    def submit(self, job: GenerationJob) -> None:
        self.check_room()
        job.move(JobState.QUEUED)
        if job.deadline is None:
            job.deadline = job.stamps[JobState.QUEUED] + self._timeout_s
        task = asyncio.get_running_loop().create_task(
            self._follow(job), name=f"murano-remote-{self.model_id}-{job.id}"
        )
        self._tasks[job] = task
        task.add_done_callback(lambda _: self._tasks.pop(job, None))

    def remove(self, job: GenerationJob) -> bool:
        """Stop following `job`: its Serve call is cancelled (and with it the job in the
        replica). The engine then ends the job."""
        task = self._tasks.pop(job, None)
        if task is None:
            return False
        task.cancel()
        return True

    def position(self, job: GenerationJob) -> int | None:
        return None  # the queue is the replica's

    async def close(self) -> None:
        tasks = list(self._tasks.items())
        for job, task in tasks:
            task.cancel()
            job.fail(JobCancelled())
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)

    async def _follow(self, job: GenerationJob) -> None:
        timeout = None if job.deadline is None else max(0.0, job.deadline - time.monotonic())
        stream = self._handle.generate(
            RemoteJob(job.params, job.classifier is not None, job.preview_every, timeout)
        )
        try:
            async for event in stream:
                if await self._apply(job, event):
                    return
            job.fail(InferenceFailed("the replica ended the call without a result"))
        except asyncio.CancelledError:
            stream.cancel()
            raise
        except Exception as exc:  # the replica died, or Ray could not reach it
            log.warning("job %d on model %s lost its replica: %r", job.id, self.model_id, exc)
            job.fail(InferenceFailed(repr(exc)))

    async def _apply(self, job: GenerationJob, event: Event) -> bool:
        """Apply one event to the job; True once the job has its outcome."""
        match event:
            case Running():
                job.move(JobState.RUNNING)
            case Progress(step=step, steps=steps, preview=preview):
                job.set_progress(step, steps, preview)
            case Failed():
                if event.kind == "failed":
                    log.warning("job %d failed in its replica: %s", job.id, event.detail)
                job.fail(load_error(event))
                return True
            case Generated(images=images, flags=flags):
                await self._finish(job, images, flags)
                return True
        return False

    async def _finish(
        self, job: GenerationJob, images: Sequence[Image], flags: Sequence[bool] | None
    ) -> None:
        self._metrics.images.labels(self.model_id).inc(len(images))
        if not job.move(JobState.POSTPROCESSING):
            return  # cancelled meanwhile
        await finish_job(job, images, flags, self._cpu, self._metrics, self.model_id)


class ServeEngine(Engine):
    """The ingress's engine: every model with weights is served by its deployment
    (`handles`, by model id); `capacity` bounds each model's jobs in flight here."""

    def __init__(
        self,
        catalog: Catalog,
        handles: Mapping[str, ModelHandle],
        *,
        capacity: Mapping[str, int],
        config: SchedulerConfig | None = None,
        metrics: Metrics | None = None,
        postprocess_threads: int = 2,
    ) -> None:
        super().__init__(
            catalog,
            _not_here,
            config=config,
            metrics=metrics,
            postprocess_threads=postprocess_threads,
        )
        remote = {
            model_id: RemoteQueue(
                model_id,
                handle,
                capacity=capacity[model_id],
                timeout_s=self._config.timeout_s,
                cpu_executor=self.postprocess_pool,
                metrics=self.metrics,
            )
            for model_id, handle in handles.items()
        }
        # The engine only calls what both kinds of queue have (check_room, submit, remove,
        # position, depth, busy, close).
        self._queues.update(cast(dict[str, ModelQueue], remote))
        for model_id in remote:
            # Resident as far as this process can tell: the replicas loaded it before
            # Serve routed anything to them.
            self.status(model_id).state = LoadState.RESIDENT

    async def start(self) -> None:
        """Nothing to load here: the model deployments hold the pipelines."""

    async def ensure_loaded(self, model_id: str) -> Backend:
        return _RemoteBackend(model_id)


class _RemoteBackend:
    """What `ensure_loaded` answers in the ingress: the model is loaded, elsewhere."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id

    def generate(
        self, batch: Sequence[GenerationParams], control: StepControl | None = None
    ) -> list[list[Image]]:
        raise RuntimeError(f"model {self.model_id} runs on its Ray Serve replicas")

    def unload(self) -> None:
        return None


def _not_here(entry: ModelEntry) -> Backend:
    raise RuntimeError(f"model {entry.id} is loaded by its Ray Serve replicas, not the ingress")
