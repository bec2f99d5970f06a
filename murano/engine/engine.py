"""The engine: which models are resident, loading them (at start or on first use), evicting
the least recently used past `max_resident`, and one `ModelQueue` per model. It knows
nothing of HTTP or accounts."""

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


class Engine:
    def __init__(
        self,
        catalog: Catalog,
        factory: BackendFactory,
        *,
        config: SchedulerConfig | None = None,
        metrics: Metrics | None = None,
        max_resident: int = 2,
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
            if entry.load == "start" and self._resident_count() < self._max_resident:
                with contextlib.suppress(ModelUnavailable):
                    await self.ensure_loaded(entry.id)

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
        return self._status[self.catalog.default_id].state is LoadState.RESIDENT

    def _acquirer(self, model_id: str) -> Callable[[], Any]:
        async def acquire() -> Backend:
            return await self.ensure_loaded(model_id)

        return acquire

    async def ensure_loaded(self, model_id: str) -> Backend:
        status = self._status[model_id]
        async with self._locks[model_id]:
            if status.backend is not None:
                status.last_used = time.monotonic()
                return status.backend
            if status.state is LoadState.FAILED:
                raise ModelUnavailable(model_id, status.error)
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
            self.metrics.model_loaded.labels(model_id).set(1)
            log.info("model %s resident after %.1f s", model_id, time.monotonic() - began)
            return backend

    def _resident_count(self) -> int:
        return sum(1 for s in self._status.values() if s.backend is not None)

    async def _make_room(self, model_id: str) -> None:
        """Evict least recently used idle models until one more fits."""
        while self._resident_count() >= self._max_resident:
            idle = [
                (s.last_used, mid)
                for mid, s in self._status.items()
                if s.backend is not None and mid != model_id and not self._queues[mid].busy
            ]
            if not idle:
                return
            _, victim = min(idle)
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
