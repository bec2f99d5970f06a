"""The adapter interface and the classic-CFG adapter (Stable Diffusion 1.x/2.x, SDXL, SD3,
Chroma, HiDream, Z-Image: pipelines that take `guidance_scale` plus `negative_prompt` as
classifier-free guidance)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from murano.catalog.check import GenerationParams
from murano.catalog.families import Family, get_family

__all__ = ["Adapter", "ClassicCfgAdapter", "expand"]


def expand(batch: Sequence[GenerationParams]) -> tuple[list[str], list[str], list[int]]:
    """Per-image prompts, negative prompts ("" = none) and seeds, in batch order."""
    prompts: list[str] = []
    negatives: list[str] = []
    seeds: list[int] = []
    for params in batch:
        for i in range(params.images):
            prompts.append(params.prompt)
            negatives.append(params.negative_prompt or "")
            seeds.append(params.seed + i)
    return prompts, negatives, seeds


class Adapter:
    """Maps a batch of jobs to one pipeline call. Subclasses override `guidance` (how
    cfg_scale and the negative prompt reach the pipeline) and, for quirks, `before_call`."""

    def __init__(self, family: str) -> None:
        self.info: Family = get_family(family)
        self.family = family
        self.pipeline_class = self.info.pipeline_classes[0]

    def batch_key(self, params: GenerationParams) -> tuple[Hashable, ...]:
        """What must be equal for jobs to share a call: everything the pipeline takes once
        per call rather than once per image. Whether a negative prompt is present is one of
        them: true-CFG pipelines turn CFG on for the whole call when any image has one, and
        SDXL zeroes the unconditional embedding only when none has one."""
        return (
            params.width,
            params.height,
            params.steps,
            params.cfg_scale,
            params.lora_strength,
            params.negative_prompt is not None,
        )

    def call_kwargs(self, batch: Sequence[GenerationParams]) -> dict[str, Any]:
        """The pipeline's keyword arguments for `batch` (its generators aside)."""
        head = batch[0]
        prompts, negatives, _ = expand(batch)
        kwargs: dict[str, Any] = {
            "prompt": prompts,
            "width": head.width,
            "height": head.height,
            "num_inference_steps": head.steps,
        }
        kwargs.update(self.guidance(head.cfg_scale, negatives))
        if self.info.max_sequence_length is not None:
            kwargs["max_sequence_length"] = self.info.max_sequence_length
        return kwargs

    def guidance(self, cfg_scale: float, negatives: list[str]) -> dict[str, Any]:
        """Classic CFG: `guidance_scale`, and the negative prompts as the unconditional
        prompts when there are any."""
        kwargs: dict[str, Any] = {"guidance_scale": cfg_scale}
        if any(negatives):
            kwargs["negative_prompt"] = negatives
        return kwargs

    def prepare(self, pipeline: Any) -> None:
        """Adjust a freshly loaded pipeline. Default: nothing."""

    def before_call(self, pipeline: Any, batch: Sequence[GenerationParams]) -> None:
        """Set per-call pipeline state the call's arguments cannot carry. Runs on the device
        thread, which makes one call at a time. Default: nothing."""


class ClassicCfgAdapter(Adapter):
    """`guidance_scale` is classifier-free guidance (on above the family's `cfg_off_at`),
    the negative prompt is the unconditional prompt."""
