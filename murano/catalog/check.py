"""`check`: a request against one model's constraints, before any work is done. Every
refusal names the field and says what is allowed; nothing is corrected silently."""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Protocol

from murano.catalog.entries import ModelEntry
from murano.catalog.styles import STYLE_NAMES, apply_style
from murano.engine.params import GenerationParams
from murano.errors import InvalidRequest, UnsupportedFeature

__all__ = [
    "MAX_SIDE",
    "RESOLUTION_TIERS",
    "ImageRequest",
    "TextToImage",
    "check",
    "random_seed",
    "size_for_aspect_ratio",
]

MAX_SIDE = 1280
RESOLUTION_TIERS: dict[str, int] = {"1K": 1024, "2K": 2048, "4K": 4096}


class ImageRequest(Protocol):
    """The fields of Venice's GenerateImageRequest that the catalog looks at."""

    @property
    def prompt(self) -> str: ...
    @property
    def negative_prompt(self) -> str | None: ...
    @property
    def width(self) -> int | None: ...
    @property
    def height(self) -> int | None: ...
    @property
    def aspect_ratio(self) -> str | None: ...
    @property
    def resolution(self) -> str | None: ...
    @property
    def quality(self) -> str | None: ...
    @property
    def cfg_scale(self) -> float | None: ...
    @property
    def steps(self) -> int | None: ...
    @property
    def seed(self) -> int | None: ...
    @property
    def variants(self) -> int | None: ...
    @property
    def lora_strength(self) -> int | None: ...
    @property
    def style_preset(self) -> str | None: ...
    @property
    def enable_web_search(self) -> bool | None: ...
    @property
    def enhance_prompt(self) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class TextToImage:
    """An `ImageRequest` built from another dialect's request (OpenAI's `size`, `n`): the
    fields it sets, the rest absent."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None
    resolution: str | None = None
    quality: str | None = None
    cfg_scale: float | None = None
    steps: int | None = None
    seed: int | None = None
    variants: int | None = None
    lora_strength: int | None = None
    style_preset: str | None = None
    enable_web_search: bool | None = None
    enhance_prompt: bool | None = None


def size_for_aspect_ratio(ratio: str, tier: str, divisor: int) -> tuple[int, int]:
    """The one sizing rule for aspect-ratio models: the image has the tier's area
    (1K = 1024², 2K = 2048², 4K = 4096²) at the asked ratio, each side rounded to the
    nearest multiple of the model's divisor."""
    w_part, _, h_part = ratio.partition(":")
    w_ratio, h_ratio = float(w_part), float(h_part)
    side = RESOLUTION_TIERS[tier]
    width = side * math.sqrt(w_ratio / h_ratio)
    height = side * math.sqrt(h_ratio / w_ratio)
    return _round_to(width, divisor), _round_to(height, divisor)


def _round_to(value: float, divisor: int) -> int:
    return max(divisor, round(value / divisor) * divisor)


def random_seed() -> int:
    return secrets.randbelow(999_999_999) + 1


def check(
    entry: ModelEntry, request: ImageRequest, *, max_side: int = MAX_SIDE
) -> GenerationParams:
    """The request's generation parameters for `entry`, defaults filled in; raises
    InvalidRequest / UnsupportedFeature naming the field."""
    if entry.type != "image":
        raise InvalidRequest(
            "model", f"Model '{entry.id}' serves /image/{entry.type}, not image generation."
        )
    if not entry.family_info.generates:
        raise UnsupportedFeature(
            "model",
            entry.id,
            f"Model '{entry.id}' is an edit model; send it to POST /api/v1/image/edit.",
        )
    _check_features(entry, request)
    constraints = entry.constraints
    limit = constraints.promptCharacterLimit
    for name in ("prompt", "negative_prompt"):
        value = getattr(request, name)
        if value is not None and len(value) > limit:
            raise InvalidRequest(
                name, f"{name} must be at most {limit} characters for model '{entry.id}'."
            )
    width, height, resolution = _size(entry, request, max_side)
    steps = constraints.steps.default if request.steps is None else request.steps
    if steps > constraints.steps.max:
        raise InvalidRequest(
            "steps", f"steps must be at most {constraints.steps.max} for model '{entry.id}'."
        )
    prompt, negative = request.prompt, request.negative_prompt
    if request.style_preset is not None:
        styled = apply_style(request.style_preset, prompt, negative)
        if styled is not None:  # unknown names were refused by _check_features
            prompt, negative = styled
    if negative and not entry.family_info.negative_prompt:
        raise UnsupportedFeature(
            "negative_prompt",
            entry.id,
            f"Model '{entry.id}' ({entry.family} family) cannot use a negative_prompt.",
        )
    cfg = request.cfg_scale if request.cfg_scale is not None else _default_cfg(entry)
    seed = request.seed if request.seed else random_seed()
    return GenerationParams(
        model_id=entry.id,
        prompt=prompt,
        negative_prompt=negative or None,
        width=width,
        height=height,
        steps=steps,
        cfg_scale=float(cfg),
        seed=seed,
        images=request.variants or 1,
        lora_strength=request.lora_strength,
        resolution=resolution,
        step_cache=_step_cache(entry, getattr(request, "step_cache", None)),
    )


def _default_cfg(entry: ModelEntry) -> float:
    return entry.family_info.default_cfg if entry.cfg_scale is None else entry.cfg_scale


def _step_cache(entry: ModelEntry, asked: bool | None) -> bool:
    """murano's `step_cache` field: false turns the model's step cache off for this request,
    only where its entry allows it (`cache.allow_request_off`); true or absent is the model's
    own setting."""
    cache = entry.optimize.cache
    if asked is not False or cache is None:
        return True
    if not cache.allow_request_off:
        raise UnsupportedFeature(
            "step_cache",
            entry.id,
            f"Model '{entry.id}' does not allow turning its step cache off per request.",
        )
    return False


def _check_features(entry: ModelEntry, request: ImageRequest) -> None:
    spec = entry.model_spec
    if request.enable_web_search and not spec.supportsWebSearch:
        raise UnsupportedFeature("enable_web_search", entry.id)
    if request.enhance_prompt:
        raise UnsupportedFeature(
            "enhance_prompt",
            entry.id,
            f"Model '{entry.id}' does not support 'enhance_prompt': murano does not rewrite"
            " prompts.",
        )
    if request.quality is not None:
        raise UnsupportedFeature("quality", entry.id)
    if getattr(request, "style_references", None):
        raise UnsupportedFeature("style_references", entry.id)
    if request.style_preset is not None and request.style_preset not in STYLE_NAMES:
        raise InvalidRequest(
            "style_preset",
            f"Unknown style_preset '{request.style_preset}'. Allowed values (case-sensitive) are"
            " listed by GET /api/v1/image/styles.",
        )


def _size(entry: ModelEntry, request: ImageRequest, max_side: int) -> tuple[int, int, str | None]:
    constraints = entry.constraints
    if constraints.aspectRatios:
        return _size_by_ratio(entry, request)
    for name in ("aspect_ratio", "resolution"):
        if getattr(request, name) is not None:
            raise InvalidRequest(
                name,
                f"Model '{entry.id}' is sized by width and height, not by {name}.",
            )
    divisor = constraints.widthHeightDivisor
    sizes = []
    for name in ("width", "height"):
        value = getattr(request, name) or 1024
        if value > max_side:
            raise InvalidRequest(name, f"{name} must be at most {max_side}.")
        if value % divisor:
            raise InvalidRequest(
                name,
                f"{name} must be divisible by {divisor} for model '{entry.id}' (got {value}).",
            )
        sizes.append(value)
    return sizes[0], sizes[1], None


def _size_by_ratio(entry: ModelEntry, request: ImageRequest) -> tuple[int, int, str | None]:
    constraints = entry.constraints
    ratios = constraints.aspectRatios or []
    for name in ("width", "height"):
        if getattr(request, name) is not None:
            raise InvalidRequest(
                name,
                f"Model '{entry.id}' is sized by aspect_ratio (one of {', '.join(ratios)}), "
                "not by width and height.",
            )
    ratio = request.aspect_ratio or constraints.defaultAspectRatio or ratios[0]
    if ratio not in ratios:
        raise InvalidRequest(
            "aspect_ratio",
            f"aspect_ratio must be one of {', '.join(ratios)} for model '{entry.id}'.",
        )
    tiers = constraints.resolutions
    if tiers is None:
        if request.resolution is not None:
            raise InvalidRequest(
                "resolution", f"Model '{entry.id}' has no resolution tiers; omit resolution."
            )
        tier = "1K"
    else:
        tier = request.resolution or constraints.defaultResolution or tiers[0]
        if tier not in tiers or tier.upper() not in RESOLUTION_TIERS:
            raise InvalidRequest(
                "resolution",
                f"resolution must be one of {', '.join(tiers)} for model '{entry.id}'.",
            )
    width, height = size_for_aspect_ratio(ratio, tier.upper(), constraints.widthHeightDivisor)
    return width, height, tier if tiers is not None else None
