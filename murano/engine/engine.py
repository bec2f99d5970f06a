"""The engine: which models are resident, loading them (at start or on first use), evicting
the least recently used idle model past `max_resident` models or past `memory_budget_bytes`
of weights, and one `ModelQueue` per model. It knows nothing of HTTP or accounts.

The memory budget counts each resident model's `memory_bytes` (the diffusers backend's
weights as loaded; backends without it count 0), known once a model has loaded. Before a
load, idle models are evicted until the model's last known size fits; after it, until the
total fits again. A model that alone exceeds the budget still loads (with a warning), and
models loaded at start never evict one another: one that does not fit waits for first use.
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

from murano.catalog.check import GenerationParams
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.backend import Backend
from murano.engine.job import GenerationJob
from murano.engine.scheduler import Inspector, ModelQueue, SchedulerConfig
from murano.errors import ModelUnavailable
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
        inspector: Inspector | None = None,
        batch_key: BatchKeyFn | None = None,
    ) -> None:
        self.catalog = catalog
        self._batch_key = batch_key or default_batch_key
        self.metrics = metrics or Metrics()
        self._factory = factory
        self._config = config or SchedulerConfig()
        self._max_resident = max(1, max_resident)
        self._budget = memory_budget_bytes
        # One device thread: batches of every model on this device run one at a time.
        self._device = ThreadPoolExecutor(1, thread_name_prefix="murano-device")
        self._cpu = ThreadPoolExecutor(postprocess_threads, thread_name_prefix="murano-post")
        self._status = {entry.id: ModelStatus() for entry in catalog}
        self._locks = {entry.id: asyncio.Lock() for entry in catalog}
        self._queues = {
            entry.id: ModelQueue(
                entry.id,
                self._acquirer(entry.id),
                config=self._config,
                device_executor=self._device,
                cpu_executor=self._cpu,
                metrics=self.metrics,
                inspector=inspector,
            )
            for entry in catalog
        }

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the models marked `load = "start"`; a failure is logged, not raised."""
        for entry in self.catalog:
            if entry.upstream is not None:  # served by murano.gateway: nothing to load
                continue
            if entry.load == "start" and self._resident_count() < self._max_resident:
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

    async def close(self) -> None:
        for queue in self._queues.values():
            await queue.close()
        # Waiting for a batch still on the device must not block the event loop.
        for pool in (self._device, self._cpu):
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    # -- jobs ---------------------------------------------------------------------------

    def submit(self, job: GenerationJob) -> None:
        """Queue a job (ModelAtCapacity when the queue is full; ModelUnavailable when the
        model failed to load). Await `job.future` for the result."""
        status = self._status[job.params.model_id]
        if status.state is LoadState.FAILED:
            raise ModelUnavailable(job.params.model_id, status.error)
        self._queues[job.params.model_id].submit(job)

    def cancel(self, job: GenerationJob) -> bool:
        return self._queues[job.params.model_id].cancel(job)

    def batch_key(self, params: GenerationParams) -> tuple[Hashable, ...]:
        return self._batch_key(self.catalog.get(params.model_id), params)

    # -- models -------------------------------------------------------------------------

    def status(self, model_id: str) -> ModelStatus:
        return self._status[model_id]

    def queue_depth(self, model_id: str) -> int:
        return self._queues[model_id].depth

    @property
    def ready(self) -> bool:
        default = self.catalog.default
        return default.upstream is not None or self._status[default.id].state is LoadState.RESIDENT

    def _acquirer(self, model_id: str) -> Callable[[], Any]:
        async def acquire() -> Backend:
            return await self.ensure_loaded(model_id)

        return acquire

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
            if status.state is LoadState.FAILED:
                raise ModelUnavailable(model_id, status.error)
            if evict:
                await self._make_room(model_id)
            entry = self.catalog.get(model_id)
            status.state = LoadState.LOADING
            log.info("loading model %s from %s", model_id, entry.source)
            began = time.monotonic()
            try:
                backend = await asyncio.get_running_loop().run_in_executor(
                    self._device, self._factory, entry
                )
            except Exception as exc:
                status.state, status.error = LoadState.FAILED, f"{type(exc).__name__}: {exc}"
                self.metrics.model_loaded.labels(model_id).set(-1)
                log.error("model %s failed to load: %s", model_id, status.error)
                raise ModelUnavailable(model_id, status.error) from exc
            status.backend, status.state = backend, LoadState.RESIDENT
            status.last_used = time.monotonic()
            status.memory_bytes = int(getattr(backend, "memory_bytes", 0))
            self.metrics.model_loaded.labels(model_id).set(1)
            log.info(
                "model %s resident after %.1f s (%.2f GB of weights)",
                model_id,
                time.monotonic() - began,
                status.memory_bytes / 1e9,
            )
            if evict:
                await self._fit_budget(model_id)
            return backend

    def _resident_count(self) -> int:
        return sum(1 for s in self._status.values() if s.backend is not None)

    def resident_bytes(self) -> int:
        """The weights of the resident models, as far as their backends report them."""
        return sum(s.memory_bytes for s in self._status.values() if s.backend is not None)

    def _over_budget(self, extra: int = 0) -> bool:
        return self._budget is not None and self.resident_bytes() + extra > self._budget

    def _lru_idle(self, model_id: str) -> str | None:
        idle = [
            (s.last_used, mid)
            for mid, s in self._status.items()
            if s.backend is not None and mid != model_id and not self._queues[mid].busy
        ]
        return min(idle)[1] if idle else None

    async def _make_room(self, model_id: str) -> None:
        """Evict least recently used idle models until one more fits: in number, and in
        memory as far as the model's size is known from an earlier load."""
        size = self._status[model_id].memory_bytes
        while self._resident_count() >= self._max_resident or self._over_budget(size):
            victim = self._lru_idle(model_id)
            if victim is None:
                return
            await self._unload(victim)

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
            await asyncio.get_running_loop().run_in_executor(self._device, backend.unload)


def default_batch_key(_entry: ModelEntry, params: GenerationParams) -> tuple[Hashable, ...]:
    return (params.width, params.height, params.steps, params.cfg_scale, params.lora_strength)
