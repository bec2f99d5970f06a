"""What each model family can do, as plain data (no torch): the catalog validates requests
with it, the engine's adapters turn jobs into pipeline arguments with it.

How a request's `cfg_scale` reaches each family's pipeline (`cfg_mode`):

    family      cfg_mode   pipeline arguments                          negative prompt
    sd, sdxl    cfg        guidance_scale = cfg_scale (CFG above 1)     unconditional prompt
    sd3         cfg        guidance_scale = cfg_scale (CFG above 1)     unconditional prompt
    chroma      cfg        guidance_scale = cfg_scale (CFG above 1)     unconditional prompt
    hidream     cfg        guidance_scale = cfg_scale (CFG above 1)     unconditional prompt
    z-image     cfg        guidance_scale = cfg_scale (CFG above 0)     unconditional prompt
    flux        true_cfg   guidance_scale = cfg_scale (the distilled    with a negative prompt and
                           guidance embedding, ignored by schnell)      cfg_scale > 1: true CFG,
                                                                        true_cfg_scale = cfg_scale
    qwen-image  true_cfg   true_cfg_scale = cfg_scale (CFG above 1;     the negative prompt, " "
                           no guidance embedding)                       when none is given
    flux2       distilled  guidance_scale = cfg_scale (embedding)      refused (400)

`cfg_scale` is always the number the family's own pipeline and model card use, never
rescaled: Z-Image's guidance is off at 0 (Turbo) and its CFG formula is
`pos + g·(pos − neg)`, so its model card's values work unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FAMILIES", "UPSTREAM_FAMILIES", "CfgMode", "Family", "detect_family", "get_family"]

# How `cfg_scale` reaches the pipeline:
#   "cfg"       classic classifier-free guidance (`guidance_scale`, negative prompt)
#   "true_cfg"  true CFG (`true_cfg_scale`) with a negative prompt, plus FLUX's distilled
#               guidance embedding (`guidance_scale`)
#   "distilled" a guidance embedding only; no negative prompt
CfgMode = Literal["cfg", "true_cfg", "distilled"]


@dataclass(frozen=True, slots=True)
class Family:
    """A family's pipeline class(es) and the defaults a model of it gets when its entry
    does not say otherwise (`--model ID=SOURCE` entries get exactly these)."""

    name: str
    pipeline_classes: tuple[str, ...]
    # Width and height must be multiples of this (VAE scale factor × patch size).
    divisor: int
    default_steps: int
    max_steps: int
    default_cfg: float
    cfg_mode: CfgMode
    negative_prompt: bool
    default_dtype: str = "bfloat16"
    prompt_limit: int = 1500
    # A guidance scale the pipeline treats as "off": cfg_scale at or below it skips CFG.
    cfg_off_at: float = 1.0
    # Text tokens given to the long text encoder (T5, an LLM); None: CLIP only (77).
    max_sequence_length: int | None = None
    # The scheduler the family's public checkpoints ship with, for the record: murano runs
    # each model with its own unless its entry names another. None: it varies by checkpoint.
    scheduler: str | None = "FlowMatchEulerDiscreteScheduler"
    # Loads from one original-layout `.safetensors` checkpoint (community fine-tunes).
    single_file: bool = False


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(
            "sd",
            ("StableDiffusionPipeline",),
            divisor=8,
            default_steps=25,
            max_steps=50,
            default_cfg=7.5,
            cfg_mode="cfg",
            negative_prompt=True,
            default_dtype="float16",
            scheduler="PNDMScheduler",
            single_file=True,
        ),
        Family(
            "sdxl",
            ("StableDiffusionXLPipeline",),
            divisor=8,
            default_steps=25,
            max_steps=50,
            default_cfg=7.0,
            cfg_mode="cfg",
            negative_prompt=True,
            default_dtype="float16",
            scheduler="EulerDiscreteScheduler",
            single_file=True,
        ),
        Family(
            "sd3",
            ("StableDiffusion3Pipeline",),
            divisor=16,
            default_steps=28,
            max_steps=50,
            default_cfg=3.5,
            cfg_mode="cfg",
            negative_prompt=True,
            max_sequence_length=256,
        ),
        Family(
            "flux",
            ("FluxPipeline",),
            divisor=16,
            default_steps=28,
            max_steps=50,
            default_cfg=3.5,
            cfg_mode="true_cfg",
            negative_prompt=True,
            prompt_limit=2048,
            max_sequence_length=512,
        ),
        Family(
            "flux2",
            ("Flux2Pipeline",),
            divisor=16,
            default_steps=28,
            max_steps=50,
            default_cfg=4.0,
            cfg_mode="distilled",
            negative_prompt=False,
            prompt_limit=3000,
            max_sequence_length=512,
        ),
        Family(
            "chroma",
            ("ChromaPipeline",),
            divisor=16,
            default_steps=40,
            max_steps=50,
            default_cfg=3.0,
            cfg_mode="cfg",
            negative_prompt=True,
            prompt_limit=7500,
            max_sequence_length=512,
        ),
        Family(
            "z-image",
            ("ZImagePipeline",),
            divisor=16,
            default_steps=8,
            max_steps=50,
            default_cfg=0.0,
            cfg_mode="cfg",
            negative_prompt=True,
            prompt_limit=7500,
            cfg_off_at=0.0,
            max_sequence_length=512,
        ),
        Family(
            "qwen-image",
            ("QwenImagePipeline",),
            divisor=16,
            default_steps=50,
            max_steps=50,
            default_cfg=4.0,
            cfg_mode="true_cfg",
            negative_prompt=True,
            max_sequence_length=512,
        ),
        Family(
            "hidream",
            ("HiDreamImagePipeline",),
            divisor=16,
            default_steps=50,
            max_steps=50,
            default_cfg=5.0,
            cfg_mode="cfg",
            negative_prompt=True,
            max_sequence_length=128,
            scheduler=None,  # Full, Dev and Fast each ship another
        ),
    )
}


# Models served by an upstream API (`[models.upstream]`): no pipeline; what the catalog
# checks before forwarding. cfg_scale 0 means "not given": the upstream's default applies.
# OpenAI's Images API has no negative prompt, so it is refused before anyone pays.
UPSTREAM_FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("venice-upstream", (), 1, 20, 50, 0.0, "cfg", negative_prompt=True),
        Family("openai-upstream", (), 1, 20, 50, 0.0, "cfg", negative_prompt=False),
    )
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name] if name in FAMILIES else UPSTREAM_FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ValueError(f"unknown model family {name!r}; known families: {known}") from None


def detect_family(pipeline_class: str) -> Family:
    """The family of a diffusers pipeline class name (`model_index.json`'s `_class_name`)."""
    for family in FAMILIES.values():
        if pipeline_class in family.pipeline_classes:
            return family
    raise ValueError(f"no murano family serves diffusers pipeline {pipeline_class!r}")
