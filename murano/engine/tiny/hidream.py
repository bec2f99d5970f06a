"""Tiny random-weight HiDream-I1 pipelines.

HiDream-I1's layout at a few channels: two CLIP encoders give the pooled embedding, T5
and Llama 3 (two of its layers' hidden states) give the caption, and a mixture-of-experts
DiT works on 2×2 patches of the latent.

The pipeline ignores the requested image *area*: it rescales height and width to the
area of `(pipe.default_sample_size * vae_scale_factor)²` (1024² by default), keeping the
aspect ratio. `default_sample_size` is a plain attribute set in `__init__`, saved in no
config; callers wanting other sizes set it after loading (8 for 64×64).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from murano.engine.tiny._parts import (
    clip_encoder,
    diffusers,
    save,
    seeded,
    t5_encoder,
    transformers,
    vae4,
)
from murano.engine.tiny._tokenizers import (
    build_clip_tokenizer,
    build_llama_tokenizer,
    build_t5_tokenizer,
)

__all__ = ["MAX_SEQUENCE_LENGTH", "build_hidream", "hidream_pipeline"]

# The pipeline's default `max_sequence_length`. Its CLIP encoders are asked for
# min(max_sequence_length, 218) tokens, so their position tables must be this long too.
MAX_SEQUENCE_LENGTH = 128
_CLIP_WIDTH = 32
_T5_WIDTH = 32
_LLAMA_WIDTH = 16
_LLAMA_LAYERS = (0, 1)


def build_hidream(out_dir: Path, *, seed: int = 0) -> Path:
    """Build a random-weight HiDream-I1 pipeline and `save_pretrained` it to `out_dir`."""
    return save(hidream_pipeline(seed=seed), out_dir)


def hidream_pipeline(*, seed: int = 0) -> Any:
    """The in-memory `HiDreamImagePipeline` that `build_hidream` saves."""
    lib = diffusers()
    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = build_clip_tokenizer(
            Path(vocab_dir) / "1", model_max_length=MAX_SEQUENCE_LENGTH
        )
        tokenizer_2 = build_clip_tokenizer(
            Path(vocab_dir) / "2", pad_token="!", model_max_length=MAX_SEQUENCE_LENGTH
        )
    tokenizer_3 = build_t5_tokenizer(model_max_length=MAX_SEQUENCE_LENGTH)
    tokenizer_4 = build_llama_tokenizer(model_max_length=MAX_SEQUENCE_LENGTH)
    return lib.HiDreamImagePipeline(
        # HiDream-I1-Full's schedule: a fixed shift of 3.
        scheduler=lib.FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0),
        vae=seeded(seed, lambda: vae4(scaling_factor=0.3611, shift_factor=0.1159)),
        text_encoder=seeded(seed, lambda: clip_encoder(tokenizer, projection=True)),
        tokenizer=tokenizer,
        text_encoder_2=seeded(seed, lambda: clip_encoder(tokenizer_2, projection=True)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=seeded(seed, lambda: t5_encoder(tokenizer_3, d_model=_T5_WIDTH)),
        tokenizer_3=tokenizer_3,
        text_encoder_4=seeded(seed, lambda: _llama(tokenizer_4)),
        tokenizer_4=tokenizer_4,
        transformer=seeded(seed, _transformer),
    )


def _llama(tokenizer: Any) -> Any:
    lib = transformers()
    config = lib.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=_LLAMA_WIDTH,
        intermediate_size=32,
        num_hidden_layers=max(_LLAMA_LAYERS) + 1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_SEQUENCE_LENGTH,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return lib.LlamaForCausalLM(config).eval()


def _transformer() -> Any:
    return (
        diffusers()
        .HiDreamImageTransformer2DModel(
            patch_size=2,
            in_channels=4,
            out_channels=4,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=8,
            num_attention_heads=4,
            caption_channels=[_T5_WIDTH, _LLAMA_WIDTH],
            # The two CLIP encoders' pooled embeddings, concatenated.
            text_emb_dim=2 * _CLIP_WIDTH,
            num_routed_experts=4,
            num_activated_experts=2,
            axes_dims_rope=(4, 2, 2),
            max_resolution=(128, 128),
            llama_layers=list(_LLAMA_LAYERS),
        )
        .eval()
    )
