"""One small adapter per model family: how a batch of jobs becomes pipeline arguments, and
which jobs may share a call. `adapter_for(name)` finds the adapter of a family; the
families' defaults and the cfg_scale mapping are in `murano.catalog.families`.

    family      adapter            module
    sd, sdxl,   ClassicCfgAdapter  base.py      guidance_scale + negative_prompt
    sd3,
    chroma,
    z-image
    hidream     HiDreamAdapter     hidream.py   classic CFG; exact size (default_sample_size)
    flux        FluxAdapter        flux.py      guidance embedding; true CFG with a negative
    flux2       Flux2Adapter       flux.py      guidance embedding only
    qwen-image  QwenImageAdapter   qwen_image.py  true CFG, " " when no negative prompt
    flux-kontext  FluxKontextAdapter flux.py  FLUX.1's guidance; instruction edits of one image
    qwen-image-edit[-plus] QwenImageAdapter instruction edits of one (plus: up to 3) images

Edits (`GenerationParams.task`) go through `Adapter.edit_kwargs`: image-to-image and
inpainting add one fitted input (and mask) per image; instruction edits pass the job's
inputs as the pipeline's `image`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable

from murano.catalog.entries import ModelEntry
from murano.engine.families.base import Adapter, ClassicCfgAdapter
from murano.engine.families.flux import Flux2Adapter, FluxAdapter, FluxKontextAdapter
from murano.engine.families.hidream import HiDreamAdapter
from murano.engine.families.qwen_image import QwenImageAdapter
from murano.engine.lora import effective_strength
from murano.engine.params import GenerationParams

__all__ = ["ADAPTERS", "Adapter", "adapter_for", "batch_key"]

ADAPTERS: dict[str, Adapter] = {
    adapter.family: adapter
    for adapter in (
        ClassicCfgAdapter("sd"),
        ClassicCfgAdapter("sdxl"),
        ClassicCfgAdapter("sd3"),
        FluxAdapter("flux"),
        Flux2Adapter("flux2"),
        ClassicCfgAdapter("chroma"),
        ClassicCfgAdapter("z-image"),
        QwenImageAdapter("qwen-image"),
        HiDreamAdapter("hidream"),
        FluxKontextAdapter("flux-kontext"),
        QwenImageAdapter("qwen-image-edit"),
        QwenImageAdapter("qwen-image-edit-plus"),
    )
}


def adapter_for(family: str) -> Adapter:
    try:
        return ADAPTERS[family]
    except KeyError:
        known = ", ".join(ADAPTERS)
        raise ValueError(f"no adapter for family {family!r}; known: {known}") from None


def batch_key(entry: ModelEntry, params: GenerationParams) -> tuple[Hashable, ...]:
    """The engine's batch key for a model: its family adapter's, with `lora_strength` as
    the model uses it (absent = the default strength; ignored without LoRAs), so requests
    that differ only in an unused field still share a call."""
    strength = effective_strength(entry, params.lora_strength)
    normalized = dataclasses.replace(params, lora_strength=strength)
    # A call runs with or without the step cache as a whole (`step_cache: false`).
    return (*adapter_for(entry.family).batch_key(normalized), params.step_cache)
