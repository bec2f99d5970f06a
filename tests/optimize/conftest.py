"""Tiny models with speed settings, loaded through `load_backend` as the server loads them,
and a counter of the work the denoiser really does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from murano.catalog.check import check
from murano.catalog.entries import ModelEntry
from murano.engine.diffusers_backend import DiffusersBackend
from murano.engine.optimize import denoiser
from murano.engine.params import GenerationParams
from tests.families.conftest import Request, TinyModels, tiny_entry, tiny_models

__all__ = ["ComputeCounter", "SpeedRequest", "loaded", "optimized", "params", "tiny_models"]


@dataclass(frozen=True)
class SpeedRequest(Request):
    """A request with murano's own `step_cache` field."""

    step_cache: bool | None = None


def params(entry: ModelEntry, **fields: Any) -> GenerationParams:
    """A request's parameters after `check`, CFG off unless the test sets `cfg_scale`."""
    fields.setdefault("cfg_scale", entry.family_info.cfg_off_at)
    return check(entry, SpeedRequest(**fields))


def optimized(
    tiny_models: TinyModels, family: str, model_id: str = "tiny", **optimize: Any
) -> ModelEntry:
    """The family's tiny model with `[models.optimize]` set to `optimize`, on the CPU."""
    return tiny_entry(family, tiny_models.path(family), model_id, optimize=optimize)


@pytest.fixture
def loaded() -> Iterator[list[DiffusersBackend]]:
    """Backends a test loads, unloaded after it."""
    backends: list[DiffusersBackend] = []
    yield backends
    for backend in backends:
        backend.unload()


class ComputeCounter:
    """Counts the attention query projections the denoiser computes: a block that a step
    cache skips, or an attention it predicts, computes none. (A hook on the block itself
    would fire for skipped blocks too: diffusers' cache hooks replace `forward`, not
    `__call__`.)"""

    def __init__(self, pipeline: Any) -> None:
        self.calls = 0
        self._handles = [
            module.register_forward_hook(self._count)
            for name, module in denoiser(pipeline).named_modules()
            if name.endswith("to_q")
        ]
        assert self._handles, "the denoiser has no attention projections to count"

    def _count(self, *_: object) -> None:
        self.calls += 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
