"""The pipelines the benchmarks run, built offline with random weights and cached.

* The embedded default model ("murano-tiny"), built by `murano.engine.tiny` exactly as
  `murano serve` builds it.
* An SD-Turbo-shaped pipeline: Stable Diffusion 2.1's real UNet and VAE configs (so a
  step costs what SD-Turbo's costs), an OpenCLIP-H-wide text encoder with fewer layers
  (23 in the real model, `TEXT_LAYERS` here: the text encoder runs once per image, and a
  cheaper one only makes the server's fixed overhead a larger share of the total, so the
  overhead ratio errs against murano), an SD-Turbo scheduler and random weights.
  `--quick` builds the same topology with every width divided down ("mini").

Everything is written under `benchmarks/.cache/` (git-ignored by its own `.gitignore`) and
reused: a directory's name carries a hash of its config, so a changed config builds a new
one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_DIR",
    "FULL",
    "MINI",
    "TurboShape",
    "build_tiny",
    "build_turbo_shaped",
    "load_pipeline",
]

CACHE_DIR = Path(__file__).resolve().parent / ".cache"

# Real SD 2.1 / OpenCLIP ViT-H text tower: 23 layers are used. Four keep the width.
TEXT_LAYERS = 4


@dataclass(frozen=True, slots=True)
class TurboShape:
    """The sizes that differ between the full-size pipeline and its quick-mode miniature."""

    name: str
    unet_channels: tuple[int, int, int, int]
    # diffusers' (historically misnamed) attention_head_dim: the number of heads per level.
    unet_heads: tuple[int, int, int, int]
    unet_groups: int
    vae_channels: tuple[int, int, int, int]
    vae_groups: int
    text_hidden: int
    text_heads: int
    text_intermediate: int
    text_layers: int
    sample_size: int


FULL = TurboShape(
    name="sd-turbo-shaped",
    unet_channels=(320, 640, 1280, 1280),
    unet_heads=(5, 10, 20, 20),
    unet_groups=32,
    vae_channels=(128, 256, 512, 512),
    vae_groups=32,
    text_hidden=1024,
    text_heads=16,
    text_intermediate=4096,
    text_layers=TEXT_LAYERS,
    sample_size=64,
)

MINI = TurboShape(
    name="sd-turbo-shaped-mini",
    unet_channels=(16, 32, 64, 64),
    unet_heads=(1, 2, 4, 4),
    unet_groups=8,
    vae_channels=(8, 8, 16, 16),
    vae_groups=4,
    text_hidden=32,
    text_heads=4,
    text_intermediate=64,
    text_layers=2,
    sample_size=8,
)


def _byte_alphabet() -> list[str]:
    """GPT-2/CLIP's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the
    others are shifted above U+0100."""
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    shifted = iter(range(256, 512))
    return [chr(b if b in printable else next(shifted)) for b in range(256)]


def _clip_tokenizer(work: Path) -> Any:
    """A byte-level CLIP tokenizer (no merges: one token per character), built from code so
    nothing comes from the hub. BOS/EOS are ids 512/513; EOS is the highest id, as CLIP's
    argmax pooling expects."""
    from transformers import CLIPTokenizer

    alphabet = _byte_alphabet()
    tokens = [*alphabet, *(c + "</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    work.mkdir(parents=True, exist_ok=True)
    vocab, merges = work / "vocab.json", work / "merges.txt"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    merges.write_text("#version: 0.2\n", encoding="utf-8")
    return CLIPTokenizer(
        vocab=str(vocab), merges=str(merges), pad_token="<|endoftext|>", model_max_length=77
    )


def _turbo_components(shape: TurboShape, work: Path) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = _clip_tokenizer(work / "tokenizer-src")
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=shape.sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=shape.unet_channels,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=shape.unet_heads,
        cross_attention_dim=shape.text_hidden,
        use_linear_projection=True,
        norm_num_groups=shape.unet_groups,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=shape.vae_channels,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=shape.vae_groups,
        sample_size=shape.sample_size * 8,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=shape.text_hidden,
            intermediate_size=shape.text_intermediate,
            num_attention_heads=shape.text_heads,
            num_hidden_layers=shape.text_layers,
            hidden_act="gelu",
            projection_dim=512,
            max_position_embeddings=77,
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
        )
    ).eval()
    # SD-Turbo's scheduler: Euler, trailing timesteps (one step starts from pure noise).
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        timestep_spacing="trailing",
        steps_offset=1,
    )
    return {
        "unet": unet,
        "vae": vae,
        "text_encoder": text_encoder,
        "tokenizer": tokenizer,
        "scheduler": scheduler,
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
        "requires_safety_checker": False,
    }


def _config_hash(shape: TurboShape) -> str:
    return hashlib.sha256(json.dumps(asdict(shape)).encode()).hexdigest()[:10]


def build_turbo_shaped(shape: TurboShape, cache: Path = CACHE_DIR) -> Path:
    """The saved pipeline's directory, built on the first call (minutes for FULL)."""
    target = cache / f"{shape.name}-{_config_hash(shape)}"
    if (target / "model_index.json").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    # Git ignores the cache (gigabytes) even before .gitignore says so, as pytest's does.
    (cache / ".gitignore").write_text("*\n", encoding="utf-8")
    from diffusers import StableDiffusionPipeline

    work = cache / f".building-{target.name}"
    shutil.rmtree(work, ignore_errors=True)
    pipe = StableDiffusionPipeline(**_turbo_components(shape, work))
    pipe.save_pretrained(work / "pipeline", safe_serialization=True)
    (work / "pipeline").rename(target)
    shutil.rmtree(work, ignore_errors=True)
    return target


def build_tiny(data_dir: Path) -> Path:
    """The embedded default model, where `murano serve --data-dir data_dir` looks for it."""
    from murano.engine.tiny import build_default_model
    from murano.settings import Settings

    return Path(build_default_model(Settings(data_dir=data_dir).default_model_dir))


def load_pipeline(model_dir: Path, device: str = "cpu") -> Any:
    """The pipeline loaded as murano's diffusers backend loads it: float32 on a CPU,
    bfloat16 on a GPU."""
    import torch
    from diffusers import DiffusionPipeline

    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    pipe = DiffusionPipeline.from_pretrained(str(model_dir), dtype=dtype, use_safetensors=True)
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
