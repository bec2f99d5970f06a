"""Tiny random-weight Qwen-Image pipelines.

Qwen-Image's layout at a few channels: a Qwen2.5-VL model encodes the prompt inside a
fixed ChatML template (the pipeline drops the template's first 34 tokens from the
caption), an MMDiT works on 2×2 patches of the latent, and the VAE is Wan's causal 3D-conv
VAE applied to one-frame videos. `guidance_embeds=False`, as in the released model: real
CFG needs `true_cfg_scale > 1` *and* a `negative_prompt`.

The tokenizer is byte-level, so the 34 dropped tokens cover less of the system prompt
than with the real vocabulary; the rest stays in the caption. Harmless for a random model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import diffusers, flow_match_scheduler, save, seeded, transformers
from murano.engine.tiny._tokenizers import build_qwen2_tokenizer

__all__ = ["build_qwen_image", "qwen_image_pipeline"]

_TEXT_WIDTH = 16
_LATENT_CHANNELS = 4


def build_qwen_image(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight Qwen-Image pipeline and `save_pretrained` it to `out_dir`."""
    return save(qwen_image_pipeline(seed=seed), out_dir)


def qwen_image_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `QwenImagePipeline` that `build_qwen_image` saves."""
    lib = diffusers()
    tokenizer = build_qwen2_tokenizer()
    return lib.QwenImagePipeline(
        # Qwen-Image's own shift range, over up to 8192 latent patches.
        scheduler=flow_match_scheduler(max_shift=0.9, max_image_seq_len=8192),
        vae=seeded(seed, _vae),
        text_encoder=seeded(seed, lambda: _text_encoder(tokenizer)),
        tokenizer=tokenizer,
        transformer=seeded(seed, _transformer),
    )


def _vae() -> Any:
    return (
        diffusers()
        .AutoencoderKLQwenImage(
            base_dim=8,
            z_dim=_LATENT_CHANNELS,
            # Three spatial downsamplings: vae_scale_factor 8, as in the real model.
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=1,
            temperal_downsample=[False, True, True],
            latents_mean=[0.0] * _LATENT_CHANNELS,
            latents_std=[1.0] * _LATENT_CHANNELS,
        )
        .eval()
    )


def _text_encoder(tokenizer: Any) -> Any:
    lib = transformers()
    ids = tokenizer.convert_tokens_to_ids
    config = lib.Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            # Special ids are the local vocabulary's, not the real model's (151643, …).
            "bos_token_id": ids("<|endoftext|>"),
            "eos_token_id": ids("<|im_end|>"),
            "pad_token_id": tokenizer.pad_token_id,
            "hidden_size": _TEXT_WIDTH,
            "intermediate_size": 16,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "rope_theta": 1e6,
            # Multimodal RoPE sections (time, height, width), summing to head_dim / 2.
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
        },
        # Never run for text-to-image, but the model class requires one.
        vision_config={
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": _TEXT_WIDTH,
        },
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
    )
    return lib.Qwen2_5_VLForConditionalGeneration(config).eval()


def _transformer() -> Any:
    return (
        diffusers()
        .QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=4 * _LATENT_CHANNELS,  # the pipeline packs 2×2 latent patches
            out_channels=_LATENT_CHANNELS,
            num_layers=2,
            attention_head_dim=16,
            num_attention_heads=3,
            joint_attention_dim=_TEXT_WIDTH,
            guidance_embeds=False,
            axes_dims_rope=(8, 4, 4),
        )
        .eval()
    )
