"""A generation job: one request's parameters, its post-processing, its timings, and the
future its caller awaits. The scheduler resolves each job exactly once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL.Image import Image

from murano.catalog.check import GenerationParams

__all__ = ["Finisher", "GenerationJob", "JobTimings"]

# Runs on the post-processing thread pool: the job's images and, per image, whether the
# safety classifier flagged it (None when the job did not ask for the check).
Finisher = Callable[[Sequence[Image], Sequence[bool] | None], Any]

_ids = itertools.count(1)


@dataclass(slots=True)
class JobTimings:
    """Monotonic seconds; the response reports their differences in milliseconds."""

    received: float
    enqueued: float = 0.0
    started: float = 0.0
    generated: float = 0.0
    finished: float = 0.0

    def as_venice(self) -> dict[str, float]:
        def ms(a: float, b: float) -> float:
            return round(max(0.0, b - a) * 1000, 3)

        return {
            "inferenceDuration": ms(self.started, self.generated),
            "inferencePreprocessingTime": ms(self.received, self.enqueued),
            "inferenceQueueTime": ms(self.enqueued, self.started),
            "total": ms(self.received, self.finished or time.monotonic()),
        }


@dataclass(eq=False)
class GenerationJob:
    params: GenerationParams
    finish: Finisher
    batch_key: tuple[Any, ...] = ()
    safety_check: bool = False
    deadline: float | None = None
    timings: JobTimings = field(default_factory=lambda: JobTimings(time.monotonic()))
    id: int = field(default_factory=lambda: next(_ids))
    future: asyncio.Future[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.future = asyncio.get_running_loop().create_future()

    @property
    def images(self) -> int:
        return self.params.images

    @property
    def done(self) -> bool:
        return self.future.done()

    def resolve(self, value: Any) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)
