"""The adapter interface and the classic-CFG adapter (Stable Diffusion 1.x/2.x and the
families whose pipelines take `guidance_scale` plus `negative_prompt` the same way)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from murano.catalog.check import GenerationParams

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
    """Maps jobs to one pipeline call. Subclasses override what differs per family."""

    def __init__(self, family: str, pipeline_class: str) -> None:
        self.family = family
        self.pipeline_class = pipeline_class

    def batch_key(self, params: GenerationParams) -> tuple[Hashable, ...]:
        """What must be equal for jobs to share a call: everything the pipeline takes once
        per call rather than once per image."""
        return (params.width, params.height, params.steps, params.cfg_scale, params.lora_strength)

    def call_kwargs(self, batch: Sequence[GenerationParams]) -> dict[str, Any]:
        head = batch[0]
        prompts, negatives, _ = expand(batch)
        kwargs: dict[str, Any] = {
            "prompt": prompts,
            "width": head.width,
            "height": head.height,
            "num_inference_steps": head.steps,
            "guidance_scale": head.cfg_scale,
        }
        if any(negatives):
            kwargs["negative_prompt"] = negatives
        return kwargs

    def prepare(self, pipeline: Any) -> None:
        """Adjust a freshly loaded pipeline (schedulers, quirks). Default: nothing."""


class ClassicCfgAdapter(Adapter):
    """`guidance_scale` is classifier-free guidance (on above 1), the negative prompt is
    the unconditional prompt: Stable Diffusion 1.x/2.x, SDXL, SD3, Chroma, HiDream."""
