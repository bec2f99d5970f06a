"""The engine: which models are resident, loading them (at start or on first use), evicting
the least recently used idle model past `max_resident` models or past `memory_budget_bytes`
of weights, and one `ModelQueue` per model. It knows nothing of HTTP or accounts.

The memory budget counts each resident model's `memory_bytes` (the diffusers backend's
weights as loaded; backends without it count 0), known once a model has loaded. Before a
load, idle models are evicted until the model's last known size fits; after it, until the
total fits again. A model that alone exceeds the budget still loads (with a warning), and
models loaded at start never evict one another: one that does not fit waits for first use.

Each model has one or more replicas (`murano.engine.replica`), each a loaded pipeline on one
device worker (`murano.engine.devices`: one thread per device of `MURANO_DEVICES`). What is
said here of a model holds per replica and per device: `max_resident` and
`memory_budget_bytes` bound each device, and the LRU eviction picks among the idle replicas
of the device that needs room.

Loads run on a thread of their own (one load at a time), beside inference on the device
threads. A loading model counts towards `max_resident`: a load that finds no room and no
idle model to evict waits for one. A failed load is retried, on the first request after a
back-off of `load_retry_s` doubling up to `load_retry_max_s`; until then requests for the
model are refused (503) when no other replica of it can serve.

The engine owns every job's state: `submit` queues it, `cancel` ends it in any state before
`delivered`, `deliver` marks it delivered once its response was sent, and `drain` stops new
work and waits for the jobs in flight before cancelling the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor

from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.backend import Backend
from murano.engine.devices import DeviceWorker, current_worker, make_workers, working_for
from murano.engine.job import GenerationJob, JobState
from murano.engine.params import GenerationParams
from murano.engine.replica import LoadState, ModelStatus, Replica, combined_status, place
from murano.engine.scheduler import ModelQueue, SchedulerConfig
from murano.errors import JobCancelled, ModelUnavailable, MuranoError, ShuttingDown
from murano.metrics import Metrics

__all__ = ["Engine", "LoadState", "ModelStatus", "Replica"]

log = logging.getLogger("murano.engine")

BackendFactory = Callable[[ModelEntry], Backend]
# Jobs with equal keys may share one pipeline call (the family adapter knows what must match).
BatchKeyFn = Callable[[ModelEntry, GenerationParams], tuple[Hashable, ...]]


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
        devices: Sequence[str] | None = None,
        torch_threads: int | None = None,
    ) -> None:
        """`devices`: one device worker each (`murano.engine.devices`); None: one worker,
        and each model on its entry's own device. `max_resident` and
        `memory_budget_bytes` bound each device. ValueError when a model's `replicas` or
        `devices` do not fit the devices."""
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
        # One thread per device: batches placed on a device run there one at a time.
        self.workers = make_workers(devices, torch_threads=torch_threads)
        # Loads (and unloads) beside them, so one model's load never stalls another's batch;
        # one at a time: diffusers' loading patches torch globally (empty-weight init), so
        # two loads at once in one process break each other.
        self._loader = ThreadPoolExecutor(1, thread_name_prefix="murano-load")
        self._cpu = ThreadPoolExecutor(postprocess_threads, thread_name_prefix="murano-post")
        self._replicas = self._place_replicas()
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
                self._replicas[entry.id],
                self._ensure_replica,
                config=self._config,
                cpu_executor=self._cpu,
                metrics=self.metrics,
                usable=self._usable,
                on_idle=self._room_changed,
            )
            for entry in catalog
        }

    def _place_replicas(self) -> dict[str, list[Replica]]:
        taken: dict[str, int] = {}
        placed: dict[str, list[Replica]] = {}
        for entry in self.catalog:
            if entry.upstream is not None:  # served by murano.gateway: nothing to place
                placed[entry.id] = []
                continue
            indices = place(entry, self.workers, taken)
            placed[entry.id] = [
                Replica(entry.id, n, self.workers[i]) for n, i in enumerate(indices)
            ]
        return placed

    @property
    def postprocess_pool(self) -> ThreadPoolExecutor:
        """The CPU pool for work that must stay off the event loop (encoding, base64,
        JSON, compression)."""
        return self._cpu

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load every replica of the models marked `load = "start"`; a failure is logged,
        not raised."""
        for entry in self.catalog:
            if entry.load == "start":
                for replica in self._replicas[entry.id]:
                    await self._start_replica(replica)

    async def _start_replica(self, replica: Replica) -> None:
        worker = replica.worker
        room = self._occupied(worker) < self._max_resident or not self._counted(replica)
        if not room:
            return
        with contextlib.suppress(ModelUnavailable):
            await self._ensure_loaded(replica, evict=False)
        if replica.resident and self._resident_count(worker) > 1 and self._over_budget(worker):
            log.warning(
                "model %s does not fit the memory budget of %s beside the models loaded"
                " before it; it will load on first use",
                replica.model_id,
                worker.name,
            )
            await self._unload(replica)

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
        # Waiting for a batch still on a device must not block the event loop.
        pools = [*(w.executor for w in self.workers), self._loader, self._cpu]
        for pool in pools:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    # -- jobs ---------------------------------------------------------------------------

    def check_room(self, model_id: str) -> None:
        """Whether a job for `model_id` would be taken now, before anything is reserved for
        it: ShuttingDown, ModelUnavailable (every replica failed to load and none is due for
        a retry yet) or ModelAtCapacity (its queue is full)."""
        if self.draining:
            raise ShuttingDown()
        replicas = self._replicas[model_id]
        if replicas and not any(self._usable(r) for r in replicas):
            raise ModelUnavailable(model_id, replicas[0].status.error)
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
        """The model's load state, its replicas' combined (`combined_status`)."""
        replicas = self._replicas[model_id]
        return combined_status(replicas) if replicas else ModelStatus()

    def replicas(self, model_id: str) -> list[Replica]:
        """The model's replicas, in order (none for a model served upstream)."""
        return list(self._replicas[model_id])

    def local_backend(self, model_id: str) -> Backend | None:
        """The model's loaded backend on the device this thread works for, else any
        resident replica's (None when none is resident)."""
        worker = current_worker()
        resident = [r for r in self._replicas[model_id] if r.status.backend is not None]
        for replica in resident:
            if replica.worker is worker:
                return replica.status.backend
        return resident[0].status.backend if resident else None

    def queue_depth(self, model_id: str) -> int:
        return self._queues[model_id].depth

    @property
    def ready(self) -> bool:
        default = self.catalog.default
        if default.upstream is not None:
            return not self.draining
        return self.status(default.id).state is LoadState.RESIDENT and not self.draining

    def _usable(self, replica: Replica) -> bool:
        """Not in a failed load's back-off."""
        status = replica.status
        return status.state is not LoadState.FAILED or self._clock() >= status.retry_at

    async def ensure_loaded(self, model_id: str) -> Backend:
        """A loaded backend of the model: a resident replica's, else the first replica
        that may load now is loaded (evicting idle models on its device); ModelUnavailable
        when it failed to load."""
        replicas = self._replicas[model_id]
        resident = [r for r in replicas if r.resident]
        if resident:
            return await self._ensure_loaded(resident[0], evict=True)
        usable = [r for r in replicas if self._usable(r)]
        return await self._ensure_loaded((usable or replicas)[0], evict=True)

    async def _ensure_replica(self, replica: Replica) -> Backend:
        return await self._ensure_loaded(replica, evict=True)

    async def _ensure_loaded(self, replica: Replica, *, evict: bool) -> Backend:
        status = replica.status
        async with replica.lock:
            if status.backend is not None:
                status.last_used = time.monotonic()
                return status.backend
            if status.state is LoadState.FAILED and self._clock() < status.retry_at:
                raise ModelUnavailable(replica.model_id, status.error)
            if evict:
                await self._make_room(replica)
            # No await between the room check and this line: concurrent loads see it.
            status.state = LoadState.LOADING
            try:
                backend = await self._load(replica)
            finally:
                self._room_changed()
            if evict:
                await self._fit_budget(replica)
            return backend

    def _counted(self, replica: Replica) -> bool:
        """Whether a replica takes one of its device's `max_resident` places: upscalers and
        background removers are small and do not (the memory budget still counts them)."""
        return self.catalog.get(replica.model_id).type == "image"

    async def _load(self, replica: Replica) -> Backend:
        status = replica.status
        model_id = replica.model_id
        entry = self._entry_on(replica)
        log.info("loading model %s from %s on %s", model_id, entry.source, replica.name)
        began = time.monotonic()
        try:
            backend = await asyncio.get_running_loop().run_in_executor(
                self._loader, self._make_backend, replica.worker, entry
            )
        except Exception as exc:
            self._load_failed(replica, f"{type(exc).__name__}: {exc}")
            raise ModelUnavailable(model_id, status.error) from exc
        except asyncio.CancelledError:
            status.state = LoadState.UNLOADED
            raise
        status.backend, status.state = backend, LoadState.RESIDENT
        status.error, status.failures = "", 0
        status.last_used = time.monotonic()
        status.memory_bytes = int(getattr(backend, "memory_bytes", 0))
        self._loaded_gauge(model_id)
        log.info(
            "model %s resident on %s after %.1f s (%.2f GB of weights)",
            model_id,
            replica.name,
            time.monotonic() - began,
            status.memory_bytes / 1e9,
        )
        return backend

    def _entry_on(self, replica: Replica) -> ModelEntry:
        """The entry as the factory gets it: on the replica's device."""
        entry = self.catalog.get(replica.model_id)
        device = replica.worker.device
        return entry if device is None else entry.model_copy(update={"device": device})

    def _make_backend(self, worker: DeviceWorker, entry: ModelEntry) -> Backend:
        with working_for(worker):
            return self._factory(entry)

    def _load_failed(self, replica: Replica, error: str) -> None:
        status = replica.status
        base, cap = self._retry
        wait = min(base * 2**status.failures, cap)
        status.failures += 1
        status.state, status.error = LoadState.FAILED, error
        status.retry_at = self._clock() + wait
        status.retry_at_unix = time.time() + wait
        self._loaded_gauge(replica.model_id)
        log.error(
            "model %s failed to load on %s (%s); next try in %.0f s",
            replica.model_id,
            replica.name,
            error,
            wait,
        )

    def _loaded_gauge(self, model_id: str) -> None:
        state = self.status(model_id).state
        value = 1 if state is LoadState.RESIDENT else -1 if state is LoadState.FAILED else 0
        self.metrics.model_loaded.labels(model_id).set(value)

    def _on(self, worker: DeviceWorker) -> list[Replica]:
        return [r for rs in self._replicas.values() for r in rs if r.worker is worker]

    def _resident_count(self, worker: DeviceWorker) -> int:
        return sum(1 for r in self._on(worker) if r.resident and self._counted(r))

    def _occupied(self, worker: DeviceWorker) -> int:
        """Image models resident or loading on the device: what `max_resident` bounds."""
        return sum(
            1
            for r in self._on(worker)
            if (r.resident or r.status.state is LoadState.LOADING) and self._counted(r)
        )

    def _room_changed(self) -> None:
        """Wake loads waiting for room (a load ended, a model left, a worker went idle)."""
        self._room.set()
        self._room = asyncio.Event()

    def resident_bytes(self, worker: DeviceWorker | None = None) -> int:
        """The weights of the resident replicas (on `worker`, else on every device), as
        far as their backends report them."""
        replicas = self._on(worker) if worker is not None else self._all()
        return sum(r.status.memory_bytes for r in replicas if r.resident)

    def _all(self) -> list[Replica]:
        return [r for rs in self._replicas.values() for r in rs]

    def _over_budget(self, worker: DeviceWorker, extra: int = 0) -> bool:
        return self._budget is not None and self.resident_bytes(worker) + extra > self._budget

    def _lru_idle(self, replica: Replica, *, counted: bool = False) -> Replica | None:
        idle = [
            r
            for r in self._on(replica.worker)
            if r.resident and r is not replica and not r.busy and (self._counted(r) or not counted)
        ]
        return min(idle, key=lambda r: r.status.last_used) if idle else None

    async def _make_room(self, replica: Replica) -> None:
        """Evict least recently used idle replicas of the device until one more fits: in
        number (waiting for one to become idle when none is), and in memory as far as the
        model's size is known from an earlier load (loading anyway when nothing can be
        evicted)."""
        worker = replica.worker
        size = replica.status.memory_bytes
        counted = self._counted(replica)
        while True:
            full = counted and self._occupied(worker) >= self._max_resident
            if not full and not self._over_budget(worker, size):
                return
            victim = self._lru_idle(replica, counted=not self._over_budget(worker, size))
            if victim is not None:
                await self._unload(victim)
            elif full:
                await self._room.wait()
            else:
                return

    async def _fit_budget(self, replica: Replica) -> None:
        """After `replica` has loaded: evict idle replicas of its device until the budget
        holds again."""
        worker = replica.worker
        while self._over_budget(worker):
            victim = self._lru_idle(replica)
            if victim is None:
                log.warning(
                    "resident models on %s hold %.2f GB, over the %.2f GB memory budget, and"
                    " none can be evicted now",
                    worker.name,
                    self.resident_bytes(worker) / 1e9,
                    (self._budget or 0) / 1e9,
                )
                return
            await self._unload(victim)

    async def _unload(self, replica: Replica) -> None:
        status = replica.status
        backend, status.backend = status.backend, None
        status.state = LoadState.UNLOADED
        self._loaded_gauge(replica.model_id)
        if backend is not None:
            log.info("evicting model %s from %s", replica.model_id, replica.name)
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
            waited = at - job.stamps[JobState.QUEUED]
            self.metrics.queue_seconds.labels(model, job.replica).observe(waited)
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
