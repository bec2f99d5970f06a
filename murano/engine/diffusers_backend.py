"""The real backend: a diffusers pipeline loaded with `from_pretrained` (a hub repo id or a
local directory) or `from_single_file` (one `.safetensors` checkpoint), run one batch at a
time with one seeded generator per image."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from PIL.Image import Image

from murano.catalog.check import GenerationParams
from murano.catalog.entries import ModelEntry
from murano.engine.families import Adapter, adapter_for
from murano.engine.families.base import expand

__all__ = ["DiffusersBackend", "load_backend", "resolve_device"]

log = logging.getLogger("murano.engine")


def resolve_device(device: str) -> str:
    """`auto` → cuda, then mps, then cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _dtype(name: str | None, family_default: str, device: str) -> Any:
    import torch

    # Half precision on a CPU is slow or unsupported for many kernels: use float32 there.
    chosen = "float32" if device == "cpu" else (name or family_default)
    try:
        return getattr(torch, chosen)
    except AttributeError:
        raise ValueError(f"unknown dtype {chosen!r}") from None


def load_pipeline(entry: ModelEntry, adapter: Adapter, device: str) -> Any:
    import diffusers

    family = entry.family_info
    dtype = _dtype(entry.dtype, family.default_dtype, device)
    pipeline_cls = getattr(diffusers, adapter.pipeline_class)
    source = entry.source
    if source.endswith(".safetensors"):
        # Community fine-tunes: one checkpoint file. `config` (a diffusers-format directory
        # or repo of the same family) supplies the component configs without a download.
        config = entry.config
        pipe = pipeline_cls.from_single_file(
            source, config=config, torch_dtype=dtype, local_files_only=config is not None
        )
    else:
        pipe = pipeline_cls.from_pretrained(
            source,
            revision=entry.revision,
            torch_dtype=dtype,
            use_safetensors=True,
            token=os.environ.get("HF_TOKEN"),
        )
    adapter.prepare(pipe)
    if entry.cpu_offload and device.startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


class DiffusersBackend:
    def __init__(self, entry: ModelEntry, pipeline: Any, adapter: Adapter, device: str) -> None:
        self.model_id = entry.id
        self.entry = entry
        self.pipeline = pipeline
        self.adapter = adapter
        self.device = device

    def generate(self, batch: Sequence[GenerationParams]) -> list[list[Image]]:
        import torch

        _, _, seeds = expand(batch)
        generator_device = "cpu" if self.device == "mps" else self.device
        generators = [torch.Generator(generator_device).manual_seed(seed) for seed in seeds]
        kwargs = self.adapter.call_kwargs(batch)
        with torch.inference_mode():
            output = self.pipeline(**kwargs, generator=generators, output_type="pil")
        images: list[Image] = list(output.images)
        if len(images) != len(seeds):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(seeds)}")
        result, offset = [], 0
        for params in batch:
            result.append(images[offset : offset + params.images])
            offset += params.images
        return result

    def unload(self) -> None:
        import gc

        import torch

        self.pipeline = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def load_backend(entry: ModelEntry) -> DiffusersBackend:
    adapter = adapter_for(entry.family)
    device = resolve_device(entry.device)
    return DiffusersBackend(entry, load_pipeline(entry, adapter, device), adapter, device)
