"""Replicas: a model's copies, each its own loaded pipeline on one device worker.

A model entry asks for `replicas` (1 by default; `"all"`: one per device it may use) on the
devices its `devices` list names (else every device; else, where the entry names one
`device`, the workers of that device). Placement is fixed when the engine starts: a model
with fewer replicas than candidate devices goes to those holding the fewest replicas so far,
so single-replica models spread over the devices. Each replica has its own load state,
retry back-off and last use; the model's state is theirs combined (`combined_status`).
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from murano.catalog.entries import ModelEntry
from murano.engine.backend import Backend
from murano.engine.devices import DEFAULT_WORKER, DeviceWorker

__all__ = ["LoadState", "ModelStatus", "Replica", "combined_status", "place"]


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


@dataclass(eq=False)
class Replica:
    """One copy of a model on one device worker."""

    model_id: str
    index: int
    worker: DeviceWorker
    status: ModelStatus = field(default_factory=ModelStatus)
    # Taken by a batch of the model's queue (loading for it, or running it).
    busy: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        """The `replica` label of the metrics: its worker's name."""
        return self.worker.name

    @property
    def resident(self) -> bool:
        return self.status.backend is not None


def combined_status(replicas: Sequence[Replica]) -> ModelStatus:
    """The model's state: resident when any replica is, loading when any loads, failed
    only when every replica failed (then its error and earliest retry are the first
    failed replica's and the earliest), unloaded otherwise. One replica: its own status."""
    if len(replicas) == 1:
        return replicas[0].status
    statuses = [r.status for r in replicas]
    resident = [s for s in statuses if s.backend is not None]
    if resident:
        return ModelStatus(
            LoadState.RESIDENT,
            resident[0].backend,
            last_used=max(s.last_used for s in resident),
            memory_bytes=resident[0].memory_bytes,
        )
    failed = [s for s in statuses if s.state is LoadState.FAILED]
    if any(s.state is LoadState.LOADING for s in statuses):
        state = LoadState.LOADING
    elif failed and len(failed) == len(statuses):
        soonest = min(failed, key=lambda s: s.retry_at)
        return ModelStatus(
            LoadState.FAILED,
            error=failed[0].error,
            failures=min(s.failures for s in failed),
            retry_at=soonest.retry_at,
            retry_at_unix=soonest.retry_at_unix,
        )
    else:
        state = LoadState.UNLOADED
    return ModelStatus(state, memory_bytes=max(s.memory_bytes for s in statuses))


def place(entry: ModelEntry, workers: Sequence[DeviceWorker], taken: dict[str, int]) -> list[int]:
    """The indices (into `workers`) of the devices that hold `entry`'s replicas, counting
    them into `taken` (replicas per worker name so far). ValueError when the entry asks for
    devices or replicas the workers cannot give."""
    candidates = _candidates(entry, workers)
    wanted = len(candidates) if entry.replicas == "all" else entry.replicas
    if wanted > len(candidates):
        names = ", ".join(workers[i].name for i in candidates)
        raise ValueError(
            f"model {entry.id!r}: replicas = {wanted}, but only {len(candidates)} device(s)"
            f" can hold it ({names}); lower `replicas`, or list more devices in"
            " MURANO_DEVICES (one replica per device)"
        )
    chosen = sorted(candidates, key=lambda i: (taken.get(workers[i].name, 0), i))[:wanted]
    for i in chosen:
        taken[workers[i].name] = taken.get(workers[i].name, 0) + 1
    return sorted(chosen)


def _candidates(entry: ModelEntry, workers: Sequence[DeviceWorker]) -> list[int]:
    if len(workers) == 1 and workers[0].name == DEFAULT_WORKER:
        if entry.devices:
            raise ValueError(
                f"model {entry.id!r} lists `devices`, which needs MURANO_DEVICES"
                " (the devices this server uses)"
            )
        return [0]
    listed = entry.devices or ([entry.device] if entry.device != "auto" else None)
    if listed is None:
        return list(range(len(workers)))
    found: list[int] = []
    for device in listed:
        matches = [i for i, w in enumerate(workers) if w.matches(device)]
        if not matches:
            names = ", ".join(w.name for w in workers)
            raise ValueError(
                f"model {entry.id!r}: device {device!r} is not one of MURANO_DEVICES ({names})"
            )
        found += [i for i in matches if i not in found]
    return found
