"""Tiny random-weight Chroma pipelines.

Chroma is FLUX.1-schnell reworked: T5 only (no CLIP pooled embedding), and the per-block
modulations come from a small "approximator" network on the timestep instead of per-block
linears. Unlike FLUX.1-dev it is not guidance-distilled: `guidance_scale > 1` is real
classifier-free guidance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import (
    diffusers,
    flow_match_scheduler,
    save,
    seeded,
    t5_encoder,
    vae4,
)
from murano.engine.tiny._tokenizers import build_t5_tokenizer
from murano.engine.tiny.flux import FLUX_VAE_LATENTS

__all__ = ["build_chroma", "chroma_pipeline"]

_TEXT_WIDTH = 32


def build_chroma(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight Chroma pipeline and `save_pretrained` it to `out_dir`."""
    return save(chroma_pipeline(seed=seed), out_dir)


def chroma_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `ChromaPipeline` that `build_chroma` saves."""
    lib = diffusers()
    tokenizer = build_t5_tokenizer()
    return lib.ChromaPipeline(
        scheduler=flow_match_scheduler(),
        vae=seeded(seed, lambda: vae4(**FLUX_VAE_LATENTS)),
        text_encoder=seeded(seed, lambda: t5_encoder(tokenizer, d_model=_TEXT_WIDTH)),
        tokenizer=tokenizer,
        transformer=seeded(seed, _transformer),
    )


def _transformer() -> Any:
    return (
        diffusers()
        .ChromaTransformer2DModel(
            patch_size=1,
            in_channels=16,  # 2×2 patches of the 4-channel latent
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=_TEXT_WIDTH,
            axes_dims_rope=(4, 4, 8),
            approximator_hidden_dim=32,
            approximator_layers=1,
            approximator_num_channels=16,
        )
        .eval()
    )
