"""The engine: which models are resident, loading them (at start or on first use), evicting
the least recently used idle model past `max_resident` models or past `memory_budget_bytes`
of weights, and one `ModelQueue` per model. It knows nothing of HTTP or accounts.

The memory budget counts each resident model's `memory_bytes` (the diffusers backend's
weights as loaded; backends without it count 0), known once a model has loaded. Before a
load, idle models are evicted until the model's last known size fits; after it, until the
total fits again. A model that alone exceeds the budget still loads (with a warning), and
models loaded at start never evict one another: one that does not fit waits for first use.

Loads run on a thread of their own, beside inference on the device thread. A loading model
counts towards `max_resident`: a load that finds no room and no idle model to evict waits
for one. A failed load is retried, on the first request after a back-off of `load_retry_s`
doubling up to `load_retry_max_s`; until then requests for the model are refused (503).

The engine owns every job's state: `submit` queues it, `cancel` ends it in any state before
`delivered`, `deliver` marks it delivered once its response was sent, and `drain` stops new
work and waits for the jobs in flight before cancelling the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.backend import Backend
from murano.engine.job import GenerationJob, JobState
from murano.engine.params import GenerationParams
from murano.engine.scheduler import ModelQueue, SchedulerConfig
from murano.errors import JobCancelled, ModelUnavailable, MuranoError, ShuttingDown
from murano.metrics import Metrics

__all__ = ["Engine", "LoadState", "ModelStatus"]

log = logging.getLogger("murano.engine")

BackendFactory = Callable[[ModelEntry], Backend]
# Jobs with equal keys may share one pipeline call (the family adapter knows what must match).
BatchKeyFn = Callable[[ModelEntry, GenerationParams], tuple[Hashable, ...]]


class LoadState(enum.StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    RESIDENT = "resident"
    FAILED = "failed"


@dataclass(slots=True)
class ModelStatus:
    state: LoadState = LoadState.UNLOADED
    backend: Backend | None = None
    error: str = ""
    last_used: float = 0.0
    # The weights' size from the model's last load (0 until it has loaded once).
    memory_bytes: int = 0
    # Failed loads in a row, and when (monotonic; wall clock for display) the next may try.
    failures: int = 0
    retry_at: float = 0.0
    retry_at_unix: float = 0.0


class Engine:
    def __init__(
        self,
        catalog: Catalog,
        factory: BackendFactory,
        *,
        config: SchedulerConfig | None = None,
        metrics: Metrics | None = None,
        max_resident: int = 2,
        memory_budget_bytes: int | None = None,
        postprocess_threads: int = 2,
        batch_key: BatchKeyFn | None = None,
        load_retry_s: float = 30.0,
        load_retry_max_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self._batch_key = batch_key or default_batch_key
        self.metrics = metrics or Metrics()
        self._factory = factory
        self._config = config or SchedulerConfig()
        self._max_resident = max(1, max_resident)
        self._budget = memory_budget_bytes
        self._retry = (load_retry_s, load_retry_max_s)
        # Only the load back-off reads this clock (tests move it); stamps are monotonic.
        self._clock = clock
        # One device thread: batches of every model on this device run one at a time.
        self._device = ThreadPoolExecutor(1, thread_name_prefix="murano-device")
        # Loads (and unloads) beside it, so one model's load never stalls another's batch.
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="murano-load")
        self._cpu = ThreadPoolExecutor(postprocess_threads, thread_name_prefix="murano-post")
        self._status = {entry.id: ModelStatus() for entry in catalog}
        self._locks = {entry.id: asyncio.Lock() for entry in catalog}
        self._room = asyncio.Event()
        self._jobs: set[GenerationJob] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False
        # Called with every job as it is queued (observers: progress streams, tests).
        self.on_submit: list[Callable[[GenerationJob], None]] = []
        self._queues = {
            entry.id: ModelQueue(
                entry.id,
                self._acquirer(entry.id),
                config=self._config,
                device_executor=self._device,
                cpu_executor=self._cpu,
                metrics=self.metrics,
                is_resident=self._resident_check(entry.id),
                on_idle=self._room_changed,
            )
            for entry in catalog
        }

    @property
    def postprocess_pool(self) -> ThreadPoolExecutor:
        """The CPU pool for work that must stay off the event loop (encoding, base64,
        JSON, compression)."""
        return self._cpu

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the models marked `load = "start"`; a failure is logged, not raised."""
        for entry in self.catalog:
            if entry.upstream is not None:  # served by murano.gateway: nothing to load
                continue
            room = self._occupied() < self._max_resident or not self._counted(entry.id)
            if entry.load == "start" and room:
                with contextlib.suppress(ModelUnavailable):
                    await self._ensure_loaded(entry.id, evict=False)
                loaded = self._status[entry.id].backend is not None
                if loaded and self._resident_count() > 1 and self._over_budget():
                    log.warning(
                        "model %s does not fit the memory budget beside the models loaded"
                        " before it; it will load on first use",
                        entry.id,
                    )
                    await self._unload(entry.id)

    async def drain(self, timeout_s: float) -> None:
        """Stop taking jobs, give those in flight up to `timeout_s` to be delivered, then
        cancel the rest (their callers get ShuttingDown)."""
        self.draining = True
        if self._jobs:
            log.info("draining: %d jobs in flight, up to %.0f s", len(self._jobs), timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        for job in list(self._jobs):
            self.cancel(job, ShuttingDown())
        if self._jobs:
            log.warning("draining: cancelled %d unfinished jobs", len(self._jobs))

    async def close(self) -> None:
        for queue in self._queues.values():
            await queue.close()
        # Waiting for a batch still on the device must not block the event loop.
        for pool in (self._device, self._loader, self._cpu):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    # -- jobs ---------------------------------------------------------------------------

    def check_room(self, model_id: str) -> None:
        """Whether a job for `model_id` would be taken now, before anything is reserved for
        it: ShuttingDown, ModelUnavailable (a failed load not yet due for a retry) or
        ModelAtCapacity (its queue is full)."""
        if self.draining:
            raise ShuttingDown()
        status = self._status[model_id]
        if status.state is LoadState.FAILED and self._clock() < status.retry_at:
            raise ModelUnavailable(model_id, status.error)
        self._queues[model_id].check_room()

    def submit(self, job: GenerationJob) -> None:
        """Queue a job (raising as `check_room` does). Await `job.future` for the result;
        call `deliver` once it was sent, or `cancel`."""
        self.check_room(job.params.model_id)
        self._queues[job.params.model_id].submit(job)
        self._track(job)
        for observer in self.on_submit:
            observer(job)

    def cancel(self, job: GenerationJob, error: MuranoError | None = None) -> bool:
        """End `job` as cancelled in whatever state it is, short of delivered: a queued job
        leaves the queue, a running batch whose jobs are all cancelled is interrupted at its
        next step, and later results are discarded. False when it had already ended."""
        if job.finished:
            return False
        self._queues[job.params.model_id].remove(job)
        return job.fail(error or JobCancelled())

    def deliver(self, job: GenerationJob) -> bool:
        """The job's response was sent: `sending` → `delivered`."""
        return job.state is JobState.SENDING and job.move(JobState.DELIVERED)

    def queue_position(self, job: GenerationJob) -> int | None:
        """Jobs ahead of `job` in its model's queue (0: next); None once it left the queue."""
        return self._queues[job.params.model_id].position(job)

    @property
    def in_flight(self) -> int:
        """Jobs submitted and not yet ended."""
        return len(self._jobs)

    def batch_key(self, params: GenerationParams) -> tuple[Hashable, ...]:
        return self._batch_key(self.catalog.get(params.model_id), params)

    def _track(self, job: GenerationJob) -> None:
        self._jobs.add(job)
        self._idle.clear()
        self.metrics.jobs_in_flight.set(len(self._jobs))
        job.add_listener(_StateTimer(job, self.metrics, self._ended))

    def _ended(self, job: GenerationJob) -> None:
        self._jobs.discard(job)
        self.metrics.jobs_in_flight.set(len(self._jobs))
        if not self._jobs:
            self._idle.set()

    # -- models -------------------------------------------------------------------------

    def status(self, model_id: str) -> ModelStatus:
        return self._status[model_id]

    def queue_depth(self, model_id: str) -> int:
        return self._queues[model_id].depth

    @property
    def ready(self) -> bool:
        default = self.catalog.default
        if default.upstream is not None:
            return not self.draining
        return self._status[default.id].state is LoadState.RESIDENT and not self.draining

    def _acquirer(self, model_id: str) -> Callable[[], Any]:
        async def acquire() -> Backend:
            return await self.ensure_loaded(model_id)

        return acquire

    def _resident_check(self, model_id: str) -> Callable[[], bool]:
        return lambda: self._status[model_id].backend is not None

    async def ensure_loaded(self, model_id: str) -> Backend:
        """The model's backend, loading it (and evicting idle models) when it is not
        resident; ModelUnavailable when it failed to load."""
        return await self._ensure_loaded(model_id, evict=True)

    async def _ensure_loaded(self, model_id: str, *, evict: bool) -> Backend:
        status = self._status[model_id]
        async with self._locks[model_id]:
            if status.backend is not None:
                status.last_used = time.monotonic()
                return status.backend
            if status.state is LoadState.FAILED and self._clock() < status.retry_at:
                raise ModelUnavailable(model_id, status.error)
            if evict:
                await self._make_room(model_id)
            # No await between the room check and this line: concurrent loads see it.
            status.state = LoadState.LOADING
            try:
                backend = await self._load(model_id)
            finally:
                self._room_changed()
            if evict:
                await self._fit_budget(model_id)
            return backend

    def _counted(self, model_id: str) -> bool:
        """Whether a model takes one of the `max_resident` places: upscalers and background
        removers are small and do not (the memory budget still counts their bytes)."""
        return self.catalog.get(model_id).type == "image"

    async def _load(self, model_id: str) -> Backend:
        status = self._status[model_id]
        entry = self.catalog.get(model_id)
        log.info("loading model %s from %s", model_id, entry.source)
        began = time.monotonic()
        try:
            backend = await asyncio.get_running_loop().run_in_executor(
                self._loader, self._factory, entry
            )
        except Exception as exc:
            self._load_failed(model_id, f"{type(exc).__name__}: {exc}")
            raise ModelUnavailable(model_id, status.error) from exc
        except asyncio.CancelledError:
            status.state = LoadState.UNLOADED
            raise
        status.backend, status.state = backend, LoadState.RESIDENT
        status.error, status.failures = "", 0
        status.last_used = time.monotonic()
        status.memory_bytes = int(getattr(backend, "memory_bytes", 0))
        self.metrics.model_loaded.labels(model_id).set(1)
        log.info(
            "model %s resident after %.1f s (%.2f GB of weights)",
            model_id,
            time.monotonic() - began,
            status.memory_bytes / 1e9,
        )
        return backend

    def _load_failed(self, model_id: str, error: str) -> None:
        status = self._status[model_id]
        base, cap = self._retry
        wait = min(base * 2**status.failures, cap)
        status.failures += 1
        status.state, status.error = LoadState.FAILED, error
        status.retry_at = self._clock() + wait
        status.retry_at_unix = time.time() + wait
        self.metrics.model_loaded.labels(model_id).set(-1)
        log.error("model %s failed to load (%s); next try in %.0f s", model_id, error, wait)

    def _resident_count(self) -> int:
        return sum(
            1 for mid, s in self._status.items() if s.backend is not None and self._counted(mid)
        )

    def _occupied(self) -> int:
        """Image models resident or loading: what `max_resident` bounds."""
        return sum(
            1
            for mid, s in self._status.items()
            if (s.backend is not None or s.state is LoadState.LOADING) and self._counted(mid)
        )

    def _room_changed(self) -> None:
        """Wake loads waiting for room (a load ended, a model left, a worker went idle)."""
        self._room.set()
        self._room = asyncio.Event()

    def resident_bytes(self) -> int:
        """The weights of the resident models, as far as their backends report them."""
        return sum(s.memory_bytes for s in self._status.values() if s.backend is not None)

    def _over_budget(self, extra: int = 0) -> bool:
        return self._budget is not None and self.resident_bytes() + extra > self._budget

    def _lru_idle(self, model_id: str, *, counted: bool = False) -> str | None:
        idle = [
            (s.last_used, mid)
            for mid, s in self._status.items()
            if s.backend is not None
            and mid != model_id
            and not self._queues[mid].busy
            and (self._counted(mid) or not counted)
        ]
        return min(idle)[1] if idle else None

    async def _make_room(self, model_id: str) -> None:
        """Evict least recently used idle models until one more fits: in number (waiting
        for a model to become idle when none is), and in memory as far as the model's size
        is known from an earlier load (loading anyway when nothing can be evicted)."""
        size = self._status[model_id].memory_bytes
        counted = self._counted(model_id)
        while True:
            full = counted and self._occupied() >= self._max_resident
            if not full and not self._over_budget(size):
                return
            victim = self._lru_idle(model_id, counted=not self._over_budget(size))
            if victim is not None:
                await self._unload(victim)
            elif full:
                await self._room.wait()
            else:
                return

    async def _fit_budget(self, model_id: str) -> None:
        """After `model_id` has loaded: evict idle models until the budget holds again."""
        while self._over_budget():
            victim = self._lru_idle(model_id)
            if victim is None:
                log.warning(
                    "resident models hold %.2f GB, over the %.2f GB memory budget, and none"
                    " can be evicted now",
                    self.resident_bytes() / 1e9,
                    (self._budget or 0) / 1e9,
                )
                return
            await self._unload(victim)

    async def _unload(self, model_id: str) -> None:
        status = self._status[model_id]
        backend, status.backend = status.backend, None
        status.state = LoadState.UNLOADED
        self.metrics.model_loaded.labels(model_id).set(0)
        if backend is not None:
            log.info("evicting model %s", model_id)
            await asyncio.get_running_loop().run_in_executor(self._loader, backend.unload)
        self._room_changed()


class _StateTimer:
    """A job listener: observes how long the job spent in each state it leaves
    (`murano_job_seconds{model,state}`) and reports its end."""

    def __init__(
        self, job: GenerationJob, metrics: Metrics, ended: Callable[[GenerationJob], None]
    ) -> None:
        self.state = job.state
        self.since = job.stamps[job.state]
        self.metrics = metrics
        self.ended = ended

    def __call__(self, job: GenerationJob) -> None:
        if job.state is self.state:
            return  # a progress update
        at = job.stamps[job.state]
        seconds = max(0.0, at - self.since)
        model = job.params.model_id
        self.metrics.job_seconds.labels(model, self.state.value).observe(seconds)
        if job.state is JobState.RUNNING:
            # Queue time as Venice counts it: waiting for the model (and its load) included.
            self.metrics.queue_seconds.labels(model).observe(at - job.stamps[JobState.QUEUED])
        self.state, self.since = job.state, at
        if job.finished:
            self.ended(job)


def default_batch_key(_entry: ModelEntry, params: GenerationParams) -> tuple[Hashable, ...]:
    return (
        params.width,
        params.height,
        params.steps,
        params.cfg_scale,
        params.lora_strength,
        params.task,
        params.strength,
    )
