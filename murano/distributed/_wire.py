"""What travels between the ingress and a model replica: the job (`RemoteJob`), the events
of its life that the replica streams back (`Running`, `Progress`, `Generated`, `Failed`), and
murano's domain errors as plain data (their constructors take different arguments, so they
are rebuilt here rather than pickled)."""

from __future__ import annotations

from dataclasses import dataclass

from PIL.Image import Image

from murano.engine.params import GenerationParams
from murano.errors import (
    DeadlineExceeded,
    InferenceFailed,
    InvalidRequest,
    JobCancelled,
    ModelAtCapacity,
    ModelUnavailable,
    MuranoError,
    ShuttingDown,
)

__all__ = [
    "Event",
    "Failed",
    "Generated",
    "Progress",
    "RemoteJob",
    "Running",
    "dump_error",
    "load_error",
]


@dataclass(frozen=True, slots=True)
class RemoteJob:
    params: GenerationParams
    # Whether the job's images are classified (the replica runs its own copy of the
    # server's classifier: a function does not travel).
    classify: bool
    preview_every: int
    # Seconds left before the job must have reached the device (None: the replica's own).
    timeout_s: float | None


@dataclass(frozen=True, slots=True)
class Running:
    """The replica's device thread started the job's batch."""


@dataclass(frozen=True, slots=True)
class Progress:
    step: int
    steps: int
    preview: Image | None = None


@dataclass(frozen=True, slots=True)
class Generated:
    images: list[Image]
    # Per image, whether the safety classifier flagged it (None: not checked).
    flags: list[bool] | None


@dataclass(frozen=True, slots=True)
class Failed:
    kind: str
    detail: str


Event = Running | Progress | Generated | Failed


def dump_error(error: BaseException) -> Failed:
    match error:
        case ModelAtCapacity():
            return Failed("capacity", error.model)
        case ModelUnavailable():
            return Failed("unavailable", f"{error.model}\n{error.reason}")
        case DeadlineExceeded():
            return Failed("deadline", str(error.waited_ms))
        case ShuttingDown():
            return Failed("shutting-down", "")
        case JobCancelled():
            return Failed("cancelled", "")
        case InvalidRequest():
            return Failed("invalid", f"{error.field}\n{error.message}")
        case InferenceFailed():
            return Failed("failed", error.cause)
        case _:
            return Failed("failed", repr(error))


def load_error(failed: Failed) -> MuranoError:
    first, _, rest = failed.detail.partition("\n")
    match failed.kind:
        case "capacity":
            return ModelAtCapacity(failed.detail)
        case "unavailable":
            return ModelUnavailable(first, rest)
        case "deadline":
            return DeadlineExceeded(float(failed.detail))
        case "shutting-down":
            return ShuttingDown()
        case "cancelled":
            return JobCancelled()
        case "invalid":
            return InvalidRequest(first, rest)
        case _:
            return InferenceFailed(failed.detail)
