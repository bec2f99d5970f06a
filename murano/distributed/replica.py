"""`ModelReplica`: one replica of a model's Serve deployment. It holds one loaded pipeline
and murano's own engine around it (queue, batching, cancellation, back-pressure, safety
classifier), exactly as a single server does; Serve only routes requests to it.

`generate` takes a `RemoteJob` and streams the job's life back: `Running` when the device
starts its batch, `Progress` per denoising step (with a preview when asked for), then
`Generated` (the raw images and safety flags: watermarking, encoding and billing stay in the
ingress) or `Failed`. When Serve cancels the call (the client went away), the job is
cancelled in the engine, which interrupts its batch once no job of it is left.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from PIL.Image import Image

from murano.catalog.entries import Catalog, ModelEntry
from murano.distributed._wire import (
    Event,
    Generated,
    Progress,
    RemoteJob,
    Running,
    dump_error,
)
from murano.engine.engine import Engine, LoadState
from murano.engine.job import GenerationJob, Inspector, JobState
from murano.engine.params import GenerationParams
from murano.errors import MuranoError
from murano.metrics import Metrics
from murano.settings import Settings

__all__ = ["ModelReplica", "ServedModelReplica", "build_replica_engine"]

log = logging.getLogger("murano.distributed")


def build_replica_engine(
    settings: Settings, entries: Sequence[ModelEntry], default_id: str, threads: int
) -> Engine:
    """The engine of one replica: the real backends on `entries` (the replica's model, and
    the image model an upscaler's creativity pass needs), torch on `threads` threads."""
    import torch

    from murano.app import build_engine

    torch.set_num_threads(max(1, threads))
    catalog = Catalog(entries, default_id)
    return build_engine(settings, Metrics(), catalog)


def _classifier(settings: Settings) -> Inspector | None:
    """The replica's copy of the server's safe-mode classifier."""
    from murano.app import build_inspector

    return build_inspector(settings)


class ModelReplica:
    # Serve awaits an async constructor: the replica takes requests once its model loaded.
    async def __init__(  # type: ignore[misc]
        self,
        settings: Settings,
        model_id: str,
        entries: list[ModelEntry],
        default_id: str,
        threads: int,
    ) -> None:
        self.model_id = model_id
        self._settings = settings
        self.engine = build_replica_engine(settings, entries, default_id, threads)
        self.classifier = _classifier(settings)
        # Ready (for Serve's routing) only once the pipeline is loaded.
        await self.engine.ensure_loaded(model_id)

    @classmethod
    def on_engine(cls, model_id: str, engine: Engine, settings: Settings) -> ModelReplica:
        """A replica around an engine built elsewhere (tests: a fake backend's)."""
        replica = cls.__new__(cls)
        replica.model_id, replica.engine, replica._settings = model_id, engine, settings
        replica.classifier = _classifier(settings)
        return replica

    async def generate(self, request: RemoteJob) -> AsyncIterator[Event]:
        try:
            await self._load_helpers(request.params)
        except MuranoError as exc:
            yield dump_error(exc)
            return
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        job = GenerationJob(
            params=request.params,
            finish=_keep,
            batch_key=self.engine.batch_key(request.params),
            classifier=self.classifier if request.classify else None,
            deadline=None if request.timeout_s is None else time.monotonic() + request.timeout_s,
            preview_every=request.preview_every,
        )
        job.add_listener(_Relay(events))
        try:
            self.engine.submit(job)
        except MuranoError as exc:
            yield dump_error(exc)
            return
        try:
            while (event := await events.get()) is not None:
                yield event
            try:
                images, flags = await job.future
            except Exception as exc:
                yield dump_error(exc)
                return
            self.engine.deliver(job)
            yield Generated(list(images), None if flags is None else list(flags))
        finally:
            # Cancelled by Serve (the caller went away), or the stream was closed early.
            if not job.finished:
                self.engine.cancel(job)

    async def _load_helpers(self, params: GenerationParams) -> None:
        """An upscale with creativity runs a pass of an image model: have it resident
        first (a single server's API does this before queueing)."""
        entry = self.engine.catalog.get(self.model_id)
        if entry.type == "upscale" and params.strength:
            from murano.catalog.postops import upscale_options

            model_id = upscale_options(entry).creativity_model or self.engine.catalog.default_id
            await self.engine.ensure_loaded(model_id)

    def check_health(self) -> None:
        """Serve's health check: a replica whose model cannot load is replaced."""
        status = self.engine.status(self.model_id)
        if status.state is LoadState.FAILED:
            raise RuntimeError(f"model {self.model_id} is not loaded")

    async def shutdown(self) -> None:
        """Drain the jobs in flight, then stop the engine."""
        await self.engine.drain(self._settings.drain_timeout_s)
        await self.engine.close()


class ServedModelReplica(ModelReplica):
    """The class Serve deploys: Serve awaits an async `__del__` when it stops a replica
    (Python's own garbage collector would not, hence not on `ModelReplica` itself)."""

    async def __del__(self) -> None:
        await self.shutdown()


def _keep(images: Sequence[Image], flags: Sequence[bool] | None) -> tuple[Any, Any]:
    """Post-processing stays in the ingress: the replica hands the images back as they are."""
    return images, flags


class _Relay:
    """A job listener that turns the job's state changes and progress into events."""

    def __init__(self, events: asyncio.Queue[Event | None]) -> None:
        self._events = events
        self._state = JobState.QUEUED
        self._progress: tuple[int, int] | None = None
        self._preview: Image | None = None

    def __call__(self, job: GenerationJob) -> None:
        if job.state is not self._state:
            self._state = job.state
            if job.state is JobState.RUNNING:
                self._events.put_nowait(Running())
            elif job.state is JobState.SENDING or job.finished:
                # The outcome is in the job's future (set after listeners have run).
                self._events.put_nowait(None)
            return
        if job.progress is not None and job.progress != self._progress:
            self._progress = job.progress
            preview = job.preview if job.preview is not self._preview else None
            self._preview = job.preview
            self._events.put_nowait(Progress(*job.progress, preview))
