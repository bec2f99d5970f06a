"""Components the tiny families share: seeding, the 4-level VAE, CLIP and T5 encoders.

diffusers' own tests use 1-level VAEs (`vae_scale_factor` 1), which make a 1024² image
a 128² latent: thousands of times the tokens of the real models. Every tiny family here
uses a 4-level VAE instead, so latents, patch grids and size divisors are those of the
released models.

diffusers and transformers are imported lazily and untyped: their partial annotations do
not survive mypy --strict.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "clip_encoder",
    "diffusers",
    "flow_match_scheduler",
    "save",
    "seeded",
    "t5_encoder",
    "transformers",
    "vae4",
]

T = TypeVar("T")


def diffusers() -> Any:
    return importlib.import_module("diffusers")


def transformers() -> Any:
    return importlib.import_module("transformers")


def seeded(seed: int, build: Callable[[], T]) -> T:
    """`build()` right after seeding torch's global generator.

    Reseeding before each component makes its weights independent of the other components'
    sizes, so changing one config leaves the others' weights unchanged.
    """
    import torch

    torch.manual_seed(seed)
    return build()


def save(pipeline: Any, out_dir: Path) -> Path:
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def vae4(
    *,
    latent_channels: int = 4,
    quant_convs: bool = False,
    norm_num_groups: int = 4,
    cls_name: str = "AutoencoderKL",
    **extra: Any,
) -> Any:
    """A 4-level `AutoencoderKL`-style VAE: `vae_scale_factor` 8, a few channels wide.

    `quant_convs` stays off except where a single-file (LDM) layout expects those layers.
    `extra` carries the family's latent statistics (`scaling_factor`, `shift_factor`, …).
    """
    vae_class = getattr(diffusers(), cls_name)
    return vae_class(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        norm_num_groups=norm_num_groups,
        latent_channels=latent_channels,
        use_quant_conv=quant_convs,
        use_post_quant_conv=quant_convs,
        **extra,
    ).eval()


def clip_encoder(
    tokenizer: PreTrainedTokenizerBase, *, hidden_size: int = 32, projection: bool = False
) -> Any:
    """A 2-layer CLIP text encoder (`WithProjection` for pooled-embedding consumers)."""
    from murano.engine.tiny.sd import clip_text_config

    config = clip_text_config(tokenizer, hidden_size=hidden_size, projection_dim=hidden_size)
    name = "CLIPTextModelWithProjection" if projection else "CLIPTextModel"
    return getattr(transformers(), name)(config).eval()


def t5_encoder(tokenizer: PreTrainedTokenizerBase, *, d_model: int = 32) -> Any:
    """A 2-layer T5 encoder; dropout off so that train/eval modes give the same output."""
    lib = transformers()
    config = lib.T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=8,
        d_ff=37,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        feed_forward_proj="gated-gelu",
        dropout_rate=0.0,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return lib.T5EncoderModel(config).eval()


def flow_match_scheduler(
    *, max_shift: float = 1.15, max_image_seq_len: int = 4096, **extra: Any
) -> Any:
    """Flux-style flow matching with resolution-dependent shift.

    The shift is interpolated on the image's token count, so the tiny models get the real
    models' schedule at every size.
    """
    return diffusers().FlowMatchEulerDiscreteScheduler(
        **(
            {
                "use_dynamic_shifting": True,
                "base_shift": 0.5,
                "max_shift": max_shift,
                "base_image_seq_len": 256,
                "max_image_seq_len": max_image_seq_len,
            }
            | extra
        )
    )
