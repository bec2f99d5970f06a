"""`check_edit`: an edit request (`/image/edit`, `/image/multi-edit`, `/images/edits`)
against one model, before any work is done. It picks the task (image-to-image, inpainting
or an instruction edit, by the model's family) and the output size.

Sizing: the output has the resolution tier's area (1K = 1024², 2K = 2048², 4K = 4096²)
at the asked aspect ratio, each side rounded to the model's divisor. `aspect_ratio` absent
or `auto`: the first input's own ratio, or, for models that list `aspectRatios`, the listed
ratio closest to it. Models without resolution tiers take only 1K.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from PIL.Image import Image

from murano.catalog.check import RESOLUTION_TIERS, random_seed
from murano.catalog.entries import ModelEntry
from murano.engine.params import GenerationParams, Task
from murano.errors import InvalidRequest, UnsupportedFeature
from murano.imaging.inputs import MIN_PIXELS, fit, fit_mask, within_area

__all__ = [
    "EDIT_ASPECT_RATIOS",
    "IMG2IMG_STRENGTH",
    "INPAINT_STRENGTH",
    "attach_inputs",
    "can_edit",
    "check_edit",
    "edit_size",
    "max_input_images",
]

# Venice's aspect ratios for edits (EditImageRequest.aspect_ratio), `auto` aside.
EDIT_ASPECT_RATIOS = ("1:1", "3:2", "16:9", "21:9", "9:16", "2:3", "3:4", "4:5")
# How far image-to-image may move from the input: enough for the prompt to show, with the
# input's composition kept. Inpainting on a generation model (its 4-channel denoiser knows
# nothing of masks) starts the masked area from a strongly noised input: from pure noise
# (1.0), diffusers' blend leaves the kept area unanchored to the input.
IMG2IMG_STRENGTH = 0.8
INPAINT_STRENGTH = 0.9


def can_edit(entry: ModelEntry) -> bool:
    if entry.upstream is not None:
        return entry.upstream.edits
    return entry.type == "image" and entry.family_info.edit is not None


def max_input_images(entry: ModelEntry) -> int:
    """How many input images one edit of this model takes (`maxInputImages`)."""
    declared = entry.constraints.maxInputImages
    return declared if declared is not None else entry.family_info.max_input_images


def _ratio(text: str) -> float:
    width, _, height = text.partition(":")
    return float(width) / float(height)


def _closest(ratios: list[str], target: float) -> str:
    return min(ratios, key=lambda r: abs(math.log(_ratio(r) / target)))


def _round_to(value: float, divisor: int) -> int:
    return max(divisor, round(value / divisor) * divisor)


def edit_size(
    entry: ModelEntry, aspect_ratio: str | None, resolution: str | None, first: tuple[int, int]
) -> tuple[int, int, str]:
    """(width, height, tier) of the edit's output; refusals name the field."""
    constraints = entry.constraints
    tiers = constraints.resolutions or ["1K"]
    tier = resolution or constraints.defaultResolution or "1K"
    if tier not in tiers or tier.upper() not in RESOLUTION_TIERS:
        raise InvalidRequest(
            "resolution", f"resolution must be one of {', '.join(tiers)} for model '{entry.id}'."
        )
    listed = [r for r in constraints.aspectRatios or [] if r != "auto"]
    allowed = listed or list(EDIT_ASPECT_RATIOS)
    if aspect_ratio in (None, "auto"):
        own = first[0] / first[1]
        ratio = _ratio(_closest(listed, own)) if listed else own
    elif aspect_ratio in allowed:
        ratio = _ratio(aspect_ratio)
    else:
        raise InvalidRequest(
            "aspect_ratio",
            f"aspect_ratio must be auto or one of {', '.join(allowed)} for model '{entry.id}'.",
        )
    side = RESOLUTION_TIERS[tier.upper()]
    divisor = constraints.widthHeightDivisor
    width = _round_to(side * math.sqrt(ratio), divisor)
    height = _round_to(side / math.sqrt(ratio), divisor)
    return width, height, tier


def _upstream_task(entry: ModelEntry, masked: bool) -> Task:
    """An upstream edits as it sees fit: every input goes to it (`edit`), or, with a mask
    (OpenAI's `/images/edits` only), the first image and the mask at the output size."""
    assert entry.upstream is not None
    if masked and entry.upstream.kind != "openai":
        raise UnsupportedFeature("mask", entry.id, f"Model '{entry.id}' cannot use a mask.")
    return "inpaint" if masked else "edit"


def _task(entry: ModelEntry, inputs: int, masked: bool) -> Task:
    family = entry.family_info
    if family.edit is None or (entry.upstream is not None and not entry.upstream.edits):
        raise UnsupportedFeature(
            "model",
            entry.id,
            f"Model '{entry.id}' ({entry.family} family) cannot edit images; see"
            " GET /api/v1/models?type=inpaint for the models that can.",
        )
    limit = max_input_images(entry)
    if inputs > limit:
        raise InvalidRequest(
            "images",
            f"Model '{entry.id}' takes at most {limit} input image(s); got {inputs}.",
        )
    if entry.upstream is not None:
        return _upstream_task(entry, masked)
    if masked:
        if not family.inpaint:
            raise UnsupportedFeature(
                "mask", entry.id, f"Model '{entry.id}' ({entry.family} family) cannot use a mask."
            )
        return "inpaint"
    return "edit" if family.edit == "instruct" else "img2img"


def check_edit(
    entry: ModelEntry,
    *,
    prompt: str,
    aspect_ratio: str | None,
    resolution: str | None,
    first_size: tuple[int, int],
    inputs: int,
    masked: bool = False,
) -> GenerationParams:
    """The edit's parameters for `entry` (without the images, which the caller attaches
    once they are fitted to the output size)."""
    task = _task(entry, inputs, masked)
    limit = entry.constraints.promptCharacterLimit
    if len(prompt) > limit:
        raise InvalidRequest(
            "prompt", f"prompt must be at most {limit} characters for model '{entry.id}'."
        )
    width, height, tier = edit_size(entry, aspect_ratio, resolution, first_size)
    cfg = entry.family_info.default_cfg if entry.cfg_scale is None else entry.cfg_scale
    strength = {"img2img": IMG2IMG_STRENGTH, "inpaint": INPAINT_STRENGTH}.get(task)
    return GenerationParams(
        model_id=entry.id,
        prompt=prompt,
        negative_prompt=None,
        width=width,
        height=height,
        steps=entry.constraints.steps.default,
        cfg_scale=float(cfg),
        seed=random_seed(),
        images=1,
        lora_strength=None,
        resolution=tier if entry.constraints.resolutions else None,
        task=task,
        strength=strength,
    )


def attach_inputs(
    params: GenerationParams, images: Sequence[Image], mask: Image | None = None
) -> GenerationParams:
    """`params` with its inputs fitted to the output: image-to-image and inpainting start
    from the first image at exactly the output size (and the mask cropped alike);
    instruction edits get every image, scaled down to at most the output's area (never
    below Venice's smallest input, which the pipelines' own minimums are under)."""
    width, height = params.width, params.height
    if params.task == "edit":
        area = max(width * height, MIN_PIXELS)
        return dataclasses.replace(
            params, init_images=tuple(within_area(image, area) for image in images)
        )
    fitted_mask = None if mask is None else fit_mask(mask, width, height)
    return dataclasses.replace(
        params, init_images=(fit(images[0], width, height),), mask=fitted_mask
    )
