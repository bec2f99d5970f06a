"""Tiny random-weight diffusers pipelines, built from code with no hub access.

They serve two purposes: fixtures for tests of every model family murano serves, and the
server's embedded default model (`build_default_model`), which renders 1024² in well under
a second on a small CPU so that a fresh install can answer requests before any real weights
are downloaded.

Importing this package is cheap: torch, diffusers and transformers load only when a
builder runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from murano.engine.tiny import (
    chroma,
    flux,
    flux2,
    flux_kontext,
    hidream,
    qwen_image,
    sd,
    sd3,
    sdxl,
    segmenter,
    upscaler,
    z_image,
)

if TYPE_CHECKING:
    from murano.catalog.entries import ModelEntry

__all__ = [
    "DEFAULT_MODEL_CFG",
    "DEFAULT_MODEL_STEPS",
    "EDIT_FAMILIES",
    "FAMILIES",
    "PIPELINE_CLASSES",
    "POSTOP_FAMILIES",
    "TINY_BACKGROUND_REMOVER_ID",
    "TINY_UPSCALER_ID",
    "build_default_model",
    "build_default_postops",
    "build_tiny",
]


class _Builder(Protocol):
    def __call__(self, out_dir: Path, *, seed: int = 0) -> Path: ...


# Keyed by the family names murano uses; each builder writes a `save_pretrained` folder
# that `DiffusionPipeline.from_pretrained` loads offline.
_BUILDERS: Mapping[str, _Builder] = {
    "sd": sd.build_sd,
    "sdxl": sdxl.build_sdxl,
    "sd3": sd3.build_sd3,
    "flux": flux.build_flux,
    "flux2": flux2.build_flux2,
    "chroma": chroma.build_chroma,
    "z-image": z_image.build_z_image,
    "qwen-image": qwen_image.build_qwen_image,
    "hidream": hidream.build_hidream,
}
# Instruction-edit families: tested by the edit tests, not the text-to-image ones.
_EDIT_BUILDERS: Mapping[str, _Builder] = {
    "flux-kontext": flux_kontext.build_flux_kontext,
}

FAMILIES: tuple[str, ...] = tuple(_BUILDERS)
EDIT_FAMILIES: tuple[str, ...] = tuple(_EDIT_BUILDERS)

# Upscalers and background removers, by their entries' family (`murano.catalog.postops`):
# a transformers Swin2SR folder, a spandrel (Real-ESRGAN Compact) `.safetensors` file in a
# folder, an ONNX matting model with its preprocessor config.
_POSTOP_BUILDERS: Mapping[str, _Builder] = {
    "swin2sr": upscaler.build_swin2sr,
    "spandrel": upscaler.build_compact,
    "onnx": segmenter.build_segmenter,
}
POSTOP_FAMILIES: tuple[str, ...] = tuple(_POSTOP_BUILDERS)

# The embedded upscaler and background remover's ids.
TINY_UPSCALER_ID = "murano-tiny-upscaler"
TINY_BACKGROUND_REMOVER_ID = "murano-tiny-bg-remover"

# The diffusers pipeline class each family's tiny model is, as `model_index.json` records it.
PIPELINE_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "sd": "StableDiffusionPipeline",
        "sdxl": "StableDiffusionXLPipeline",
        "sd3": "StableDiffusion3Pipeline",
        "flux": "FluxPipeline",
        "flux2": "Flux2Pipeline",
        "chroma": "ChromaPipeline",
        "z-image": "ZImagePipeline",
        "qwen-image": "QwenImagePipeline",
        "hidream": "HiDreamImagePipeline",
    }
)

# The embedded model's recommended call: 4 Euler steps (its scheduler uses "trailing"
# spacing, so even 1–2 steps start from pure noise) with classifier-free guidance on, so the
# prompt visibly steers the image.
DEFAULT_MODEL_STEPS: int = 4
DEFAULT_MODEL_CFG: float = 7.5

# Written last, once `save_pretrained` has returned: only its presence says that a folder
# holds a finished build (and is ours), whatever else the folder contains.
_COMPLETE_MARKER = ".murano-complete"


def build_tiny(family: str, out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny test pipeline of `family` into `out_dir` and return `out_dir`."""
    builder = _BUILDERS.get(family) or _EDIT_BUILDERS.get(family) or _POSTOP_BUILDERS.get(family)
    if builder is None:
        known = ", ".join((*FAMILIES, *EDIT_FAMILIES, *POSTOP_FAMILIES))
        raise ValueError(f"unknown model family {family!r}; known families: {known}")
    return builder(out_dir, seed=seed)


def build_default_model(out_dir: Path) -> Path:
    """The server's embedded default model in `out_dir`, built there on first use.

    Idempotent: a complete model already in `out_dir` is returned as is. The build goes to
    a temporary folder beside `out_dir` and is renamed into place, so an interrupted build
    never leaves a half-written model behind.
    """
    return _build_once(out_dir, lambda staging, seed=0: sd.build_sd(staging, profile="default"))


def build_default_postops(models_dir: Path) -> list[ModelEntry]:
    """The embedded upscaler (Swin2SR x4) and background remover (ONNX), built under
    `models_dir` on first use like the default model, as catalog entries."""
    from murano.catalog.postops import tiny_entry

    upscaler_dir = _build_once(models_dir / TINY_UPSCALER_ID, upscaler.build_swin2sr)
    remover_dir = _build_once(models_dir / TINY_BACKGROUND_REMOVER_ID, segmenter.build_segmenter)
    return [
        tiny_entry("upscale", TINY_UPSCALER_ID, upscaler_dir, "swin2sr"),
        tiny_entry("background-remove", TINY_BACKGROUND_REMOVER_ID, remover_dir, "onnx"),
    ]


def _build_once(out_dir: Path, builder: _Builder) -> Path:
    """`builder`'s model in `out_dir`, built there unless a complete one is there already;
    staged beside it and renamed into place, as `build_default_model` does."""
    if _is_complete(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        builder(staging)
        (staging / _COMPLETE_MARKER).touch()
        _move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _is_complete(model_dir: Path) -> bool:
    return (model_dir / _COMPLETE_MARKER).is_file()


def _move_into_place(staging: Path, out_dir: Path) -> None:
    if out_dir.is_dir() and not any(out_dir.iterdir()):
        out_dir.rmdir()  # an empty folder made ahead of time (say, a mount point's child)
    try:
        os.rename(staging, out_dir)
    except OSError:
        # Either another process renamed its own build into place first (that one is as
        # good), or out_dir holds something else, which is not ours to delete.
        if not _is_complete(out_dir):
            raise FileExistsError(
                f"{out_dir} exists and is not a complete murano default model; "
                "remove it or choose another folder"
            ) from None
