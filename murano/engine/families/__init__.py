"""One small adapter per model family: how a batch of jobs becomes pipeline arguments, and
which jobs may share a call. `adapter_for(name)` finds the adapter of a family."""

from __future__ import annotations

from collections.abc import Hashable

from murano.catalog.check import GenerationParams
from murano.catalog.entries import ModelEntry
from murano.engine.families.base import Adapter, ClassicCfgAdapter

__all__ = ["ADAPTERS", "Adapter", "adapter_for", "batch_key"]

ADAPTERS: dict[str, Adapter] = {
    "sd": ClassicCfgAdapter("sd", "StableDiffusionPipeline"),
}


def adapter_for(family: str) -> Adapter:
    try:
        return ADAPTERS[family]
    except KeyError:
        known = ", ".join(ADAPTERS)
        raise ValueError(f"no adapter for family {family!r}; known: {known}") from None


def batch_key(entry: ModelEntry, params: GenerationParams) -> tuple[Hashable, ...]:
    """The engine's batch key for a model: its family adapter's."""
    return adapter_for(entry.family).batch_key(params)
