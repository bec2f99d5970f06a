"""Tiny random-weight Stable Diffusion 1.x pipelines, built from code and saved offline.

Two profiles share one architecture family (CLIP text encoder, `UNet2DConditionModel` with
cross-attention, `AutoencoderKL` with `vae_scale_factor` 8, an SD-style noise schedule):

- ``"test"``: the layout of diffusers' own SD test components (attention at the highest
  UNet resolution, two layers per block, a VAE with mid-block attention). It is meant for
  64×64 tests and for `single_file` export, which then exercises every kind of LDM key.
- ``"default"``: murano's embedded default model. It is shaped for speed at 1024² on a
  small CPU: attention only at the lowest of four UNet levels (self-attention over many
  tokens is what makes SD slow at high resolution) and a VAE decoder only a few channels
  wide, because at 1024² the decoder, not the UNet, dominates.

Weights are random, but seeded before each component, so a build is byte-for-byte
reproducible for a given seed.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from murano.engine.tiny._tokenizers import build_clip_tokenizer

if TYPE_CHECKING:
    from transformers import CLIPTextConfig, PreTrainedTokenizerBase

__all__ = ["PROFILES", "Profile", "build_sd", "clip_text_config", "sd_pipeline"]

Profile = Literal["test", "default"]
PROFILES: tuple[Profile, ...] = ("test", "default")


@dataclass(frozen=True)
class _Shape:
    """Constructor arguments of the components that differ between profiles."""

    unet: Mapping[str, Any]
    vae: Mapping[str, Any]


_TEST = _Shape(
    unet=MappingProxyType(
        {
            "block_out_channels": (8, 16),
            "layers_per_block": 2,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 4,
            "norm_num_groups": 4,
            "sample_size": 8,  # latent side: the pipeline's default size is 8 × 8 = 64 px
        }
    ),
    vae=MappingProxyType(
        {
            "block_out_channels": (8, 8, 16, 16),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
            "norm_num_groups": 2,
            "latent_channels": 4,
            "sample_size": 64,
        }
    ),
)

_DEFAULT = _Shape(
    unet=MappingProxyType(
        {
            "block_out_channels": (8, 16, 32, 32),
            "layers_per_block": 1,
            # Cross-attention (with its self-attention) only at 1/64 of the latent side:
            # 16 × 16 tokens at 1024², instead of 16k at the top level.
            "down_block_types": (
                "DownBlock2D",
                "DownBlock2D",
                "DownBlock2D",
                "CrossAttnDownBlock2D",
            ),
            "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
            "cross_attention_dim": 32,
            "attention_head_dim": 8,
            "norm_num_groups": 4,
            "sample_size": 128,  # the pipeline's default size is 128 × 8 = 1024 px
        }
    ),
    vae=MappingProxyType(
        {
            # Four levels keep vae_scale_factor at 8, as in real SD; the top levels run at
            # full resolution, so they are kept to a few channels.
            "block_out_channels": (4, 4, 8, 8),
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4,
            "layers_per_block": 1,
            "norm_num_groups": 2,
            "latent_channels": 4,
            "mid_block_add_attention": False,
            "sample_size": 1024,
        }
    ),
)

_SHAPES: Mapping[Profile, _Shape] = MappingProxyType({"test": _TEST, "default": _DEFAULT})

# SD 1.x's training schedule. Euler with "trailing" spacing starts from pure noise
# (t = 999) even at 1–4 steps, where "leading" would start at t ≈ 750 or lower.
# steps_offset=1 matches the released configs and keeps the pipeline from warning.
_SCHEDULER: Mapping[str, Any] = MappingProxyType(
    {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "steps_offset": 1,
        "timestep_spacing": "trailing",
    }
)


def build_sd(out_dir: Path, *, seed: int = 0, profile: Profile = "test") -> Path:
    """Build a random-weight SD pipeline and `save_pretrained` it (safetensors) to `out_dir`."""
    pipeline = sd_pipeline(seed=seed, profile=profile)
    pipeline.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def sd_pipeline(*, seed: int = 0, profile: Profile = "test") -> Any:
    """The in-memory `StableDiffusionPipeline` that `build_sd` saves."""
    shape = _shape(profile)
    import torch

    # Their partial annotations do not survive mypy --strict: use them untyped.
    diffusers: Any = importlib.import_module("diffusers")
    transformers: Any = importlib.import_module("transformers")

    with tempfile.TemporaryDirectory() as vocab_dir:
        tokenizer = build_clip_tokenizer(Path(vocab_dir))
    # Reseeding before each component makes each one's weights independent of the others'
    # sizes, so changing one component's config leaves the others' weights unchanged.
    torch.manual_seed(seed)
    text_encoder = transformers.CLIPTextModel(clip_text_config(tokenizer)).eval()
    torch.manual_seed(seed)
    unet = diffusers.UNet2DConditionModel(**shape.unet).eval()
    torch.manual_seed(seed)
    vae = diffusers.AutoencoderKL(**shape.vae).eval()
    return diffusers.StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=diffusers.EulerDiscreteScheduler(**_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def clip_text_config(
    tokenizer: PreTrainedTokenizerBase, *, hidden_size: int = 32, projection_dim: int = 32
) -> CLIPTextConfig:
    """A 2-layer CLIP text config whose special-token ids are the tokenizer's.

    SDXL's second encoder needs a different `hidden_size`: the single-file loader tells
    the two encoders apart by width alone.
    """
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        hidden_act="gelu",
        projection_dim=projection_dim,
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def _shape(profile: Profile) -> _Shape:
    # Profiles arrive from CLIs and configs too, where Literal types are not enforced.
    if profile not in _SHAPES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return _SHAPES[profile]
