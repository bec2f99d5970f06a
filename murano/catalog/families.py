"""What each model family can do, as plain data (no torch): the catalog validates requests
with it, the engine's adapters turn jobs into pipeline arguments with it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["FAMILIES", "Family", "detect_family", "get_family"]

# How `cfg_scale` reaches the pipeline:
#   "cfg"       classic classifier-free guidance (`guidance_scale`, negative prompt)
#   "true_cfg"  distilled guidance embedding plus true CFG when a negative prompt is given
#   "distilled" a guidance embedding only; no negative prompt
CfgMode = Literal["cfg", "true_cfg", "distilled"]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    pipeline_classes: tuple[str, ...]
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


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("sd", ("StableDiffusionPipeline",), 8, 25, 50, 7.5, "cfg", True, "float16"),
        Family("sdxl", ("StableDiffusionXLPipeline",), 8, 25, 50, 7.0, "cfg", True, "float16"),
        Family("sd3", ("StableDiffusion3Pipeline",), 16, 25, 30, 4.5, "cfg", True),
        Family("flux", ("FluxPipeline",), 16, 25, 50, 3.5, "true_cfg", True, prompt_limit=2048),
        Family("flux2", ("Flux2Pipeline",), 16, 28, 50, 4.0, "distilled", False, prompt_limit=3000),
        Family("chroma", ("ChromaPipeline",), 16, 10, 10, 4.0, "cfg", True, prompt_limit=7500),
        Family(
            "z-image",
            ("ZImagePipeline",),
            16,
            8,
            8,
            0.0,
            "cfg",
            True,
            prompt_limit=7500,
            cfg_off_at=0.0,
        ),
        Family("qwen-image", ("QwenImagePipeline",), 16, 8, 50, 4.0, "true_cfg", True),
        Family("hidream", ("HiDreamImagePipeline",), 16, 20, 50, 5.0, "cfg", True),
    )
}


def get_family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ValueError(f"unknown model family {name!r}; known families: {known}") from None


def detect_family(pipeline_class: str) -> Family:
    """The family of a diffusers pipeline class name (`model_index.json`'s `_class_name`)."""
    for family in FAMILIES.values():
        if pipeline_class in family.pipeline_classes:
            return family
    raise ValueError(f"no murano family serves diffusers pipeline {pipeline_class!r}")
