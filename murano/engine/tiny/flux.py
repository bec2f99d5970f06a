"""Tiny random-weight FLUX.1 pipelines.

FLUX.1's layout at a few channels: CLIP-L gives the pooled embedding, T5 the token
sequence, and an MMDiT (one double-stream and one single-stream block) works on 2×2
patches of a 4-channel latent. `guidance_embeds=True` makes it a guidance-distilled
("dev"-like) model: `guidance_scale` is an input of the transformer, not CFG.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import (
    clip_encoder,
    diffusers,
    flow_match_scheduler,
    save,
    seeded,
    t5_encoder,
    vae4,
)
from murano.engine.tiny._tokenizers import build_clip_tokenizer, build_t5_tokenizer

__all__ = ["FLUX_VAE_LATENTS", "build_flux", "flux_pipeline", "flux_transformer_config"]

# FLUX.1's latent statistics (the real VAE's scaling and shift).
FLUX_VAE_LATENTS: Mapping[str, Any] = {"scaling_factor": 0.3611, "shift_factor": 0.1159}
_TEXT_WIDTH = 32


def build_flux(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight FLUX.1-dev-like pipeline and `save_pretrained` it to `out_dir`."""
    return save(flux_pipeline(seed=seed), out_dir)


def flux_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `FluxPipeline` that `build_flux` saves."""
    lib = diffusers()
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = build_clip_tokenizer(Path(vocab_dir))
    tokenizer_2 = build_t5_tokenizer()
    return lib.FluxPipeline(
        scheduler=flow_match_scheduler(),
        vae=seeded(seed, lambda: vae4(**FLUX_VAE_LATENTS)),
        text_encoder=seeded(seed, lambda: clip_encoder(tokenizer, hidden_size=_TEXT_WIDTH)),
        tokenizer=tokenizer,
        text_encoder_2=seeded(seed, lambda: t5_encoder(tokenizer_2, d_model=_TEXT_WIDTH)),
        tokenizer_2=tokenizer_2,
        transformer=seeded(
            seed, lambda: lib.FluxTransformer2DModel(**flux_transformer_config()).eval()
        ),
    )


def flux_transformer_config() -> dict[str, Any]:
    """The tiny MMDiT's config; Chroma and Flux2 start from the same shape."""
    return {
        "patch_size": 1,
        # The pipeline packs 2×2 patches of the 4-channel latent into 16 channels.
        "in_channels": 16,
        "num_layers": 1,
        "num_single_layers": 1,
        "attention_head_dim": 16,
        "num_attention_heads": 2,
        "joint_attention_dim": _TEXT_WIDTH,
        "pooled_projection_dim": _TEXT_WIDTH,
        "guidance_embeds": True,
        # RoPE over (text index, row, column); the parts must sum to attention_head_dim.
        "axes_dims_rope": (4, 4, 8),
    }
