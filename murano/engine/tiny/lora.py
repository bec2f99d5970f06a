"""Tiny random LoRAs for the tiny pipelines: adapter fixtures for every family.

A LoRA here adapts the denoiser's (UNet's or transformer's) attention projections with
random, non-zero low-rank updates (`init_lora_weights=False`; peft's default would zero
the B matrices, making the LoRA a no-op). It is saved the way trainers ship LoRAs, with
the pipeline class's `save_lora_weights`, as `pytorch_lora_weights.safetensors` in
diffusers' key layout; `pipe.load_lora_weights(out_dir, adapter_name=...)` loads it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from murano.engine.tiny import PIPELINE_CLASSES
from murano.engine.tiny._parts import diffusers, seeded

__all__ = ["LORA_TARGET_MODULES", "LORA_WEIGHT_NAME", "build_tiny_lora"]

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
# Attention projections, named alike in every family's denoiser.
LORA_TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")


def build_tiny_lora(
    family: str, pipeline_dir: Path, out_dir: Path, *, seed: int = 0, rank: int = 4
) -> Path:
    """Save a random LoRA for the tiny `family` pipeline in `pipeline_dir` to `out_dir`.

    Returns `out_dir`, which then holds `LORA_WEIGHT_NAME`.
    """
    pipeline_class = _check_pipeline(family, pipeline_dir)
    if rank < 1:
        raise ValueError(f"rank must be at least 1, got {rank}")
    component = "unet" if (pipeline_dir / "unet").is_dir() else "transformer"
    denoiser = _load_component(pipeline_dir, component)
    layers = seeded(seed, lambda: _random_lora_layers(denoiser, rank))
    getattr(diffusers(), pipeline_class).save_lora_weights(
        out_dir,
        **{f"{component}_lora_layers": layers},
        weight_name=LORA_WEIGHT_NAME,
        safe_serialization=True,
    )
    return out_dir


def _check_pipeline(family: str, pipeline_dir: Path) -> str:
    """The pipeline class of `family`, after checking that `pipeline_dir` holds one."""
    expected = PIPELINE_CLASSES.get(family)
    if expected is None:
        known = ", ".join(PIPELINE_CLASSES)
        raise ValueError(f"unknown model family {family!r}; known families: {known}")
    index = pipeline_dir / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{pipeline_dir} holds no diffusers pipeline (no model_index.json)")
    found = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    if found != expected:
        raise ValueError(f"{pipeline_dir} holds a {found}, not the {expected} of family {family!r}")
    return expected


def _load_component(pipeline_dir: Path, component: str) -> Any:
    # Only the denoiser is needed: loading it alone skips the text encoders and VAE.
    config = json.loads((pipeline_dir / "model_index.json").read_text(encoding="utf-8"))
    _library, class_name = config[component]
    return getattr(diffusers(), class_name).from_pretrained(pipeline_dir / component).eval()


def _random_lora_layers(denoiser: Any, rank: int) -> dict[str, Any]:
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    denoiser.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=rank,  # scale alpha / r = 1: the adapter weight is the only knob
            target_modules=list(LORA_TARGET_MODULES),
            init_lora_weights=False,
        )
    )
    # peft names (`….lora_A.weight`) → diffusers' LoRA names (`….lora.down.weight`).
    convert = importlib.import_module("diffusers.utils").convert_state_dict_to_diffusers
    layers: dict[str, Any] = convert(get_peft_model_state_dict(denoiser))
    return layers
