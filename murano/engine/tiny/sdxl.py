"""Tiny random-weight Stable Diffusion XL pipelines.

SDXL's layout at a few channels: two CLIP text encoders whose penultimate states are
concatenated for cross-attention (the second also gives the pooled embedding), a UNet
with "text_time" micro-conditioning, and the 4-level VAE with its quant convolutions
(the LDM single-file layout has them).

The two encoders differ in width (32 and 48, as the real 768 and 1280 do): the
single-file loader tells them apart by width alone, and with equal widths it loads the
first encoder's weights into both.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import clip_encoder, diffusers, save, seeded, vae4
from murano.engine.tiny._tokenizers import build_clip_tokenizer

__all__ = ["build_sdxl", "sdxl_pipeline"]

_CLIP_WIDTH = 32
_CLIP2_WIDTH = 48
_TIME_EMBED_DIM = 8


def build_sdxl(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight SDXL pipeline and `save_pretrained` it to `out_dir`."""
    return save(sdxl_pipeline(seed=seed), out_dir)


def sdxl_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `StableDiffusionXLPipeline` that `build_sdxl` saves."""
    lib = diffusers()
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = build_clip_tokenizer(Path(vocab_dir) / "1")
        # The released second tokenizer pads with "!", not with its end token.
        tokenizer_2 = build_clip_tokenizer(Path(vocab_dir) / "2", pad_token="!")
    return lib.StableDiffusionXLPipeline(
        vae=seeded(
            seed, lambda: vae4(quant_convs=True, scaling_factor=0.13025, force_upcast=False)
        ),
        text_encoder=seeded(seed, lambda: clip_encoder(tokenizer, hidden_size=_CLIP_WIDTH)),
        text_encoder_2=seeded(
            seed, lambda: clip_encoder(tokenizer_2, hidden_size=_CLIP2_WIDTH, projection=True)
        ),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=seeded(seed, _unet),
        scheduler=lib.EulerDiscreteScheduler(
            num_train_timesteps=1000,
            beta_start=0.00085,
            beta_end=0.012,
            beta_schedule="scaled_linear",
            steps_offset=1,
            timestep_spacing="leading",
        ),
        force_zeros_for_empty_prompt=True,
    )


def _unet() -> Any:
    return (
        diffusers()
        .UNet2DConditionModel(
            sample_size=8,  # latent side: the pipeline's default size is 8 × 8 = 64 px
            block_out_channels=(8, 16),
            # layers_per_block=2 is the layout the LDM single-file format is written for.
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            attention_head_dim=(2, 4),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=_TIME_EMBED_DIM,
            transformer_layers_per_block=(1, 2),
            # Six micro-conditioning numbers (original size, crop, target size), each
            # embedded in _TIME_EMBED_DIM, plus the second encoder's pooled embedding.
            projection_class_embeddings_input_dim=6 * _TIME_EMBED_DIM + _CLIP2_WIDTH,
            cross_attention_dim=_CLIP_WIDTH + _CLIP2_WIDTH,
            norm_num_groups=4,
        )
        .eval()
    )
