"""Tiny random-weight FLUX.1 Kontext pipelines: FLUX.1's tiny components (`flux_pipeline`)
in `FluxKontextPipeline`, which adds the input image's latents to the transformer's
sequence. The real Kontext [dev] has FLUX.1-dev's architecture too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import diffusers, save
from murano.engine.tiny.flux import flux_pipeline

__all__ = ["build_flux_kontext", "flux_kontext_pipeline"]


def build_flux_kontext(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight FLUX.1-Kontext-like pipeline and `save_pretrained` it."""
    return save(flux_kontext_pipeline(seed=seed), out_dir)


def flux_kontext_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `FluxKontextPipeline` that `build_flux_kontext` saves."""
    components = dict(flux_pipeline(seed=seed).components)
    return diffusers().FluxKontextPipeline(**components)
