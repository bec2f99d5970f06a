"""A generation job: one request's parameters, its post-processing, the future its caller
awaits, and its life as explicit, time-stamped states owned by the engine:

    queued → loading → running → postprocessing → sending → delivered
       ↘         ↘         ↘             ↘             ↘
                  cancelled | failed | expired

`loading` is skipped when the model is resident. The future resolves (with the
post-processed result) when the job enters `sending`, and fails when it ends in
`cancelled`, `failed` or `expired` before that. Venice's `timing` fields, the metrics and the
access log are all derived from `stamps`. Listeners run on the event loop after every state
change and every progress update (the denoising step, and a preview image when asked for).
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL.Image import Image

from murano.engine.params import GenerationParams
from murano.errors import DeadlineExceeded, JobCancelled, ShuttingDown

__all__ = [
    "TERMINAL",
    "Finisher",
    "GenerationJob",
    "Inspector",
    "JobListener",
    "JobState",
    "JobTimings",
]

log = logging.getLogger("murano.engine")

# Runs on the post-processing thread pool: the job's images and, per image, whether the
# safety classifier flagged it (None when the job did not ask for the check).
Finisher = Callable[[Sequence[Image], Sequence[bool] | None], Any]
# A safe-mode classifier: per image, True when it is flagged (and is then blurred).
Inspector = Callable[[Sequence[Image]], list[bool]]

_ids = itertools.count(1)


class JobState(enum.StrEnum):
    QUEUED = "queued"
    LOADING = "loading"
    RUNNING = "running"
    POSTPROCESSING = "postprocessing"
    SENDING = "sending"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    FAILED = "failed"
    EXPIRED = "expired"


TERMINAL = frozenset({JobState.DELIVERED, JobState.CANCELLED, JobState.FAILED, JobState.EXPIRED})

JobListener = Callable[["GenerationJob"], None]


@dataclass(frozen=True, slots=True)
class JobTimings:
    """Monotonic seconds read off a job's stamps (0.0 where a stage did not happen); the
    response reports their differences in milliseconds."""

    received: float
    enqueued: float = 0.0
    loading: float = 0.0
    started: float = 0.0
    generated: float = 0.0
    finished: float = 0.0

    def as_venice(self) -> dict[str, float]:
        def ms(a: float, b: float) -> float:
            return round(max(0.0, b - a) * 1000, 3) if a and b else 0.0

        return {
            # The pipeline alone: a model load is queue time, not inference.
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
    # Runs on the job's images after the pipeline (the job's `SafetyDecision`, made by
    # `murano.safety.SafetyPolicy`); None: they are not classified.
    classifier: Inspector | None = None
    deadline: float | None = None
    # When the request arrived (monotonic); the start of Venice's `total`.
    received: float = field(default_factory=time.monotonic)
    # Every n-th denoising step hands listeners a preview image (0: never).
    preview_every: int = 0
    id: int = field(default_factory=lambda: next(_ids))
    state: JobState = field(init=False, default=JobState.QUEUED)
    stamps: dict[JobState, float] = field(init=False, default_factory=dict)
    # (step, steps) of the running pipeline, 1-based; None before the first step.
    progress: tuple[int, int] | None = field(init=False, default=None)
    preview: Image | None = field(init=False, default=None)
    error: BaseException | None = field(init=False, default=None)
    # The replica (its device worker's name) the job's batch was handed to; "" before.
    replica: str = field(init=False, default="")
    future: asyncio.Future[Any] = field(init=False)
    _listeners: list[JobListener] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.future = asyncio.get_running_loop().create_future()

    # -- reading ------------------------------------------------------------------------

    @property
    def images(self) -> int:
        return self.params.images

    @property
    def finished(self) -> bool:
        """In a terminal state: delivered, cancelled, failed or expired."""
        return self.state in TERMINAL

    @property
    def done(self) -> bool:
        """The caller has its answer (the result, or why there is none)."""
        return self.future.done()

    @property
    def cancelled(self) -> bool:
        return self.state is JobState.CANCELLED

    @property
    def timings(self) -> JobTimings:
        s = self.stamps
        end = s.get(JobState.SENDING) or next(
            (
                s[state]
                for state in (JobState.CANCELLED, JobState.FAILED, JobState.EXPIRED)
                if state in s
            ),
            0.0,
        )
        return JobTimings(
            received=self.received,
            enqueued=s.get(JobState.QUEUED, 0.0),
            loading=s.get(JobState.LOADING, 0.0),
            started=s.get(JobState.RUNNING, 0.0),
            generated=s.get(JobState.POSTPROCESSING, 0.0),
            finished=end,
        )

    def add_listener(self, listener: JobListener) -> None:
        """Call `listener(job)` on the event loop after every state change and progress
        update from now on."""
        self._listeners.append(listener)

    # -- moving (the engine's; everyone else reads) -------------------------------------

    def move(self, state: JobState, *, at: float | None = None) -> bool:
        """Enter `state`, stamped `at` (monotonic; now by default). False, and nothing
        changes, once the job is in a terminal state."""
        if self.finished:
            return False
        self.state = state
        self.stamps[state] = time.monotonic() if at is None else at
        self._notify()
        return True

    def resolve(self, value: Any) -> None:
        """Post-processing is done: the job's result goes to its caller (`sending`)."""
        if not self.future.done() and self.move(JobState.SENDING):
            self.future.set_result(value)

    def end(self, state: JobState, error: BaseException | None = None) -> bool:
        """Enter a terminal state; the caller's future fails with `error` if it is still
        waiting. False when the job had already ended."""
        if not self.move(state):
            return False
        if error is not None:
            self.error = error
            if not self.future.done():
                self.future.set_exception(error)
                # The caller may be gone already; do not warn about an unread error.
                self.future.exception()
        return True

    def fail(self, error: BaseException) -> bool:
        """End with `error`: `cancelled` for a cancellation, `expired` for a missed
        deadline, `failed` otherwise."""
        if isinstance(error, JobCancelled | ShuttingDown):
            state = JobState.CANCELLED
        elif isinstance(error, DeadlineExceeded):
            state = JobState.EXPIRED
        else:
            state = JobState.FAILED
        return self.end(state, error)

    def set_progress(self, step: int, steps: int, preview: Image | None = None) -> None:
        if self.finished:
            return
        self.progress = (step, steps)
        if preview is not None:
            self.preview = preview
        self._notify()

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener(self)
            except Exception:
                log.exception("a listener of job %d failed", self.id)
