"""Tiny random-weight super-resolution models, built from code and saved offline.

- `build_swin2sr`: a transformers Swin2SR x4 (`save_pretrained` folder: `config.json` +
  `model.safetensors`), the architecture of `caidas/swin2SR-*`, one layer of embedding width
  8. The server's embedded upscaler.
- `build_compact`: a Real-ESRGAN "Compact" (SRVGGNetCompact) x2 state dict in one
  `.safetensors` file with the original key names, as ComfyUI's `upscale_models` folder holds
  them; spandrel detects and loads it like a real `realesr-general-x4v3.pth`.

Weights are seeded, so a build is reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["build_compact", "build_swin2sr"]


def build_swin2sr(out_dir: Path, *, seed: int = 0, upscale: int = 4) -> Path:
    import torch
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution

    config = Swin2SRConfig(
        image_size=64,
        patch_size=1,
        num_channels=3,
        embed_dim=8,
        depths=[1],
        num_heads=[1],
        window_size=8,
        mlp_ratio=1.0,
        upscale=upscale,
        img_range=1.0,
        upsampler="pixelshuffledirect",
        resi_connection="1conv",
    )
    torch.manual_seed(seed)
    model: Any = Swin2SRForImageSuperResolution(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return out_dir


def build_compact(out_dir: Path, *, seed: int = 0, upscale: int = 2) -> Path:
    """`out_dir/model.safetensors`: SRVGGNetCompact's keys (`body.N.weight`, PReLU slopes
    between convolutions), 8 features, 2 convolutions in the body."""
    import torch
    from safetensors.torch import save_file

    features, convs = 8, 2
    generator = torch.Generator().manual_seed(seed)

    def conv(cin: int, cout: int) -> tuple[torch.Tensor, torch.Tensor]:
        weight = torch.randn(cout, cin, 3, 3, generator=generator) * (1.0 / (cin * 9) ** 0.5)
        return weight, torch.zeros(cout)

    layers: list[tuple[torch.Tensor, ...]] = [conv(3, features), (torch.full((features,), 0.25),)]
    for _ in range(convs):
        layers += [conv(features, features), (torch.full((features,), 0.25),)]
    layers.append(conv(features, 3 * upscale * upscale))
    state: dict[str, torch.Tensor] = {}
    for index, tensors in enumerate(layers):
        state[f"body.{index}.weight"] = tensors[0].contiguous()
        if len(tensors) == 2:
            state[f"body.{index}.bias"] = tensors[1].contiguous()
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / "model.safetensors"))
    return out_dir
