"""Tiny random-weight FLUX.2 pipelines.

FLUX.2 [dev]'s layout at a few channels: a Mistral 3 (Small) model encodes the chat-wrapped
prompt and the hidden states of three of its layers, stacked, are the caption; an MMDiT
works on 2×2 patches of the latent; the VAE normalizes its (patchified) latents with
batch-norm statistics instead of a scaling factor. `guidance_scale` is an embedding input
(guidance-distilled), not classifier-free guidance.

The text encoder has 30 layers (only 16 wide) so that the pipeline's default
`text_encoder_out_layers=(10, 20, 30)` works without extra arguments, as with the real
model. The tokenizer is a bare tokenizer with Mistral's chat template rather than the
hub's `PixtralProcessor`, which needs torchvision; text-to-image only calls
`apply_chat_template`. (Prompt upsampling, `caption_upsample_temperature`, needs the real
processor and is not supported.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import (
    diffusers,
    flow_match_scheduler,
    save,
    seeded,
    transformers,
    vae4,
)
from murano.engine.tiny._tokenizers import build_mistral_tokenizer

__all__ = ["TEXT_ENCODER_OUT_LAYERS", "build_flux2", "flux2_pipeline"]

# The pipeline's default caption layers; the encoder needs at least max() layers.
TEXT_ENCODER_OUT_LAYERS = (10, 20, 30)
_TEXT_WIDTH = 16


def build_flux2(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight FLUX.2-dev-like pipeline and `save_pretrained` it to `out_dir`."""
    return save(flux2_pipeline(seed=seed), out_dir)


def flux2_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `Flux2Pipeline` that `build_flux2` saves."""
    lib = diffusers()
    tokenizer = build_mistral_tokenizer()
    return lib.Flux2Pipeline(
        scheduler=flow_match_scheduler(),
        vae=seeded(seed, lambda: vae4(cls_name="AutoencoderKLFlux2")),
        text_encoder=seeded(seed, lambda: _text_encoder(tokenizer)),
        tokenizer=tokenizer,
        transformer=seeded(seed, _transformer),
    )


def _text_encoder(tokenizer: Any) -> Any:
    lib = transformers()
    config = lib.Mistral3Config(
        text_config={
            "model_type": "mistral",
            "vocab_size": len(tokenizer),
            "hidden_size": _TEXT_WIDTH,
            "intermediate_size": 37,
            "num_hidden_layers": max(TEXT_ENCODER_OUT_LAYERS),
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 4,
            # Holds the pipeline's 512-token prompts.
            "max_position_embeddings": 1024,
            "rope_theta": 1e9,
            "sliding_window": None,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        # Never run for text-to-image, but Mistral3ForConditionalGeneration requires one.
        vision_config={
            "model_type": "pixtral",
            "hidden_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 4,
            "intermediate_size": 37,
            "image_size": 30,
            "patch_size": 6,
            "head_dim": 4,
        },
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
        image_seq_length=4,
        vision_feature_layer=-1,
        spatial_merge_size=1,
    )
    return lib.Mistral3ForConditionalGeneration(config).eval()


def _transformer() -> Any:
    return (
        diffusers()
        .Flux2Transformer2DModel(
            patch_size=1,
            in_channels=16,  # 2×2 patches of the 4-channel latent
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            # The caption is the stacked states of len(TEXT_ENCODER_OUT_LAYERS) layers.
            joint_attention_dim=len(TEXT_ENCODER_OUT_LAYERS) * _TEXT_WIDTH,
            timestep_guidance_channels=256,
            axes_dims_rope=(4, 4, 4, 4),
        )
        .eval()
    )
