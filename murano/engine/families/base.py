"""The adapter interface and the classic-CFG adapter (Stable Diffusion 1.x/2.x, SDXL, SD3,
Chroma, HiDream, Z-Image: pipelines that take `guidance_scale` plus `negative_prompt` as
classifier-free guidance)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import Any

from murano.catalog.families import Family, get_family
from murano.engine.params import GenerationParams

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
            *self.input_key(params),
        )

    def input_key(self, params: GenerationParams) -> tuple[Hashable, ...]:
        """The batch key's part for input images: jobs of different tasks never share a
        call; image-to-image and inpainting jobs share one when their strength matches
        (their inputs are fitted to the output size, one per image); an instruction edit's
        inputs are the whole call's, so it shares a call with no other job."""
        if params.task == "generate":
            return ()
        if params.task == "edit":
            return (params.task, id(params.init_images))
        return (params.task, params.strength)

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

    def edit_kwargs(self, batch: Sequence[GenerationParams], kwargs: dict[str, Any]) -> None:
        """Add the input images of an edit batch to `kwargs` (from `call_kwargs`)."""
        head = batch[0]
        if head.task == "edit":
            self.instruct_kwargs(head, kwargs)
            return
        kwargs["image"] = [p.init_images[0] for p in batch for _ in range(p.images)]
        if head.task == "inpaint":
            kwargs["mask_image"] = [p.mask for p in batch for _ in range(p.images)]
        strength = head.strength if head.strength is not None else 1.0
        kwargs["strength"] = strength
        # img2img runs int(steps × strength) steps: at least one.
        kwargs["num_inference_steps"] = max(head.steps, math.ceil(1 / max(strength, 1e-3)))

    def instruct_kwargs(self, head: GenerationParams, kwargs: dict[str, Any]) -> None:
        """An instruction edit (one job per call): the prompt once, `images` outputs of
        it, and the job's input image(s) as the pipeline's `image`."""
        kwargs["prompt"] = head.prompt
        if "negative_prompt" in kwargs:
            kwargs["negative_prompt"] = kwargs["negative_prompt"][0]
        kwargs["num_images_per_prompt"] = head.images
        images = list(head.init_images)
        kwargs["image"] = images if self.info.max_input_images > 1 else images[0]

    def prepare(self, pipeline: Any) -> None:
        """Adjust a freshly loaded pipeline. Default: nothing."""

    def before_call(self, pipeline: Any, batch: Sequence[GenerationParams]) -> None:
        """Set per-call pipeline state the call's arguments cannot carry. Runs on the device
        thread, which makes one call at a time. Default: nothing."""


class ClassicCfgAdapter(Adapter):
    """`guidance_scale` is classifier-free guidance (on above the family's `cfg_off_at`),
    the negative prompt is the unconditional prompt."""
