"""Tiny random-weight Stable Diffusion 3 pipelines.

SD3's layout at a few channels: two CLIP encoders (their pooled outputs concatenated,
their token states concatenated and zero-padded to T5's width) and a T5 encoder feed an
MMDiT that works on 2×2 patches of the latent.

patch_size=2, as in the real model: the position-embedding table (`pos_embed_max_size`
patches a side) then covers 1536 px, where patch 1 would stop at 768.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import clip_encoder, diffusers, save, seeded, t5_encoder, vae4
from murano.engine.tiny._tokenizers import build_clip_tokenizer, build_t5_tokenizer

__all__ = ["build_sd3", "sd3_pipeline"]

_CLIP_WIDTH = 32
# T5's width is the joint (token) width; it must hold both CLIP widths side by side.
_T5_WIDTH = 2 * _CLIP_WIDTH


def build_sd3(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight SD3 pipeline and `save_pretrained` it to `out_dir`."""
    return save(sd3_pipeline(seed=seed), out_dir)


def sd3_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `StableDiffusion3Pipeline` that `build_sd3` saves."""
    lib = diffusers()
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = build_clip_tokenizer(Path(vocab_dir) / "1")
        tokenizer_2 = build_clip_tokenizer(Path(vocab_dir) / "2", pad_token="!")
    tokenizer_3 = build_t5_tokenizer()
    return lib.StableDiffusion3Pipeline(
        transformer=seeded(seed, _transformer),
        scheduler=lib.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=seeded(seed, lambda: vae4(scaling_factor=1.5305, shift_factor=0.0609)),
        text_encoder=seeded(seed, lambda: clip_encoder(tokenizer, projection=True)),
        tokenizer=tokenizer,
        text_encoder_2=seeded(seed, lambda: clip_encoder(tokenizer_2, projection=True)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=seeded(seed, lambda: t5_encoder(tokenizer_3, d_model=_T5_WIDTH)),
        tokenizer_3=tokenizer_3,
    )


def _transformer() -> Any:
    return (
        diffusers()
        .SD3Transformer2DModel(
            sample_size=32,
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_projection_dim=32,
            joint_attention_dim=_T5_WIDTH,
            pooled_projection_dim=2 * _CLIP_WIDTH,
            pos_embed_max_size=96,
        )
        .eval()
    )
