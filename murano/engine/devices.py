"""Device workers: one thread per device, on which every batch placed on that device runs.

`MURANO_DEVICES` lists the devices (`auto`: every visible CUDA device, else the CPU; or
`cuda:0,cuda:1`, `cpu,cpu`, ...). A device listed twice gets two workers, told apart by a
`#n` suffix in their names (`cpu#0`, `cpu#1`); the name is what `/models` and the metrics'
`replica` label show. Unset, the engine has one worker, `default`, and each model runs on its
entry's own `device` (`MURANO_DEVICE`), as before replicas existed.

The thread a worker runs on (and the load thread while it loads a replica for that worker)
knows its worker: `current_worker()`. Backends that need the device a thread works for read
it (the upscaler's creativity pass, the fake backend of the tests).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_WORKER",
    "DeviceWorker",
    "check_device",
    "current_worker",
    "make_workers",
    "parse_devices",
    "working_for",
]

DEFAULT_WORKER = "default"

_DEVICE = re.compile(r"^(cpu|mps|cuda(:[0-9]+)?)$")

_local = threading.local()


def check_device(name: str) -> str:
    """`name` when it is a device murano can place a replica on, else ValueError."""
    if not _DEVICE.match(name):
        raise ValueError(f"{name!r} is not a device; use cpu, mps, cuda or cuda:N")
    return name


def parse_devices(value: str, cuda_count: Callable[[], int] | None = None) -> list[str]:
    """The devices of a `MURANO_DEVICES` value: `auto` (every visible CUDA device, else the
    CPU; `cuda_count` says how many, torch's count by default) or a comma-separated list."""
    text = value.strip()
    if text == "auto":
        count = (cuda_count or _cuda_count)()
        return [f"cuda:{i}" for i in range(count)] or ["cpu"]
    devices = [part.strip() for part in text.split(",") if part.strip()]
    if not devices:
        raise ValueError("MURANO_DEVICES is empty; use auto or a list such as cuda:0,cuda:1")
    for device in devices:
        try:
            check_device(device)
        except ValueError as exc:
            raise ValueError(f"MURANO_DEVICES: {exc}, comma-separated, or auto") from None
    return devices


def _cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


@dataclass(eq=False)
class DeviceWorker:
    """One device and the single thread its batches run on. `device` is what the backend
    factory gets as the entry's device; None: the entry's own (the one-device engine)."""

    name: str
    device: str | None
    torch_threads: int | None = None
    # Batches of any model on this worker's thread now (queued there or running).
    running: int = 0
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = ThreadPoolExecutor(
            1, thread_name_prefix=f"murano-device-{self.name}", initializer=self._init_thread
        )

    def _init_thread(self) -> None:
        _local.worker = self
        if self.torch_threads is not None:
            # Process-wide in effect (see the README's "Many devices"); set again here so
            # that a thread that reads its own OpenMP setting sees it too.
            import torch

            torch.set_num_threads(self.torch_threads)

    def matches(self, device: str) -> bool:
        """Whether an entry's `devices` item (or its `device`) names this worker: `cuda:1`,
        `cpu#1`, or `cuda` for every CUDA device."""
        if device == "cuda" and self.device is not None:
            return self.device.startswith("cuda")
        return device in (self.name, self.device)


def make_workers(
    devices: Sequence[str] | None, *, torch_threads: int | None = None
) -> list[DeviceWorker]:
    """One worker per device (`None`: the single `default` worker)."""
    if not devices:
        return [DeviceWorker(DEFAULT_WORKER, None, torch_threads)]
    names = list(devices)
    for device in set(devices):
        if names.count(device) > 1:
            indices = iter(range(len(names)))
            names = [f"{n}#{next(indices)}" if n == device else n for n in names]
    return [
        DeviceWorker(name, device, torch_threads)
        for name, device in zip(names, devices, strict=True)
    ]


def current_worker() -> DeviceWorker | None:
    """The worker this thread works for: its device thread, or the load thread while it
    loads a replica for it; None elsewhere."""
    worker: DeviceWorker | None = getattr(_local, "worker", None)
    return worker


@contextmanager
def working_for(worker: DeviceWorker) -> Iterator[None]:
    """Within the block, this thread works for `worker` (`current_worker()`)."""
    before = getattr(_local, "worker", None)
    _local.worker = worker
    try:
        yield
    finally:
        _local.worker = before
