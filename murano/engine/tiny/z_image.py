"""Tiny random-weight Z-Image pipelines.

Z-Image's layout at a few channels: a Qwen3 model encodes the ChatML-wrapped prompt (its
second-to-last hidden state is the caption), and a single-stream DiT with noise and
caption refiners works on 2×2 patches of a 16-channel latent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import diffusers, save, seeded, transformers, vae4
from murano.engine.tiny._tokenizers import build_qwen2_tokenizer

__all__ = ["build_z_image", "z_image_pipeline"]

_TEXT_WIDTH = 16


def build_z_image(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight Z-Image pipeline and `save_pretrained` it to `out_dir`."""
    return save(z_image_pipeline(seed=seed), out_dir)


def z_image_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `ZImagePipeline` that `build_z_image` saves."""
    lib = diffusers()
    tokenizer = build_qwen2_tokenizer()
    return lib.ZImagePipeline(
        # Z-Image-Turbo's schedule: a fixed shift, not Flux's resolution-dependent one.
        scheduler=lib.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=seeded(
            seed,
            lambda: vae4(latent_channels=16, scaling_factor=0.3611, shift_factor=0.1159),
        ),
        text_encoder=seeded(seed, lambda: _text_encoder(tokenizer)),
        tokenizer=tokenizer,
        transformer=seeded(seed, _transformer),
    )


def _text_encoder(tokenizer: Any) -> Any:
    lib = transformers()
    config = lib.Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=_TEXT_WIDTH,
        intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=8,  # the default (128) would dwarf everything else
        max_position_embeddings=1024,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return lib.Qwen3Model(config).eval()


def _transformer() -> Any:
    import torch

    model = diffusers().ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=32,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        qk_norm=True,
        cap_feat_dim=_TEXT_WIDTH,
        axes_dims=[8, 4, 4],
        # RoPE table sizes: caption positions, then latent-patch rows and columns. 512
        # patches a side covers 8192 px; diffusers' test value (32) stops at 512 px.
        axes_lens=[1024, 512, 512],
    )
    # Some diffusers releases allocate the pad embeddings with torch.empty (garbage, even
    # NaN); give them a defined value so padded sequences are reproducible.
    with torch.no_grad():
        model.x_pad_token.fill_(1.0)
        model.cap_pad_token.fill_(1.0)
    return model.eval()
