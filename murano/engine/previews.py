"""Cheap previews of a generation in progress, from the latents of a denoising step.

By default a preview is a per-family linear projection of the latent channels to RGB (the
approach of ComfyUI's fast previews: one 3×C matrix and a bias, fitted once per VAE), so it
costs one small matrix product at latent resolution. A model entry may name a tiny VAE
instead (`preview_vae`: diffusers' `AutoencoderTiny`, e.g. TAESD or TAEF1), which looks
closer to the final image for a few milliseconds more.

Latents come in three layouts, all handled here:

    (B, C, H, W)        SD 1.x/2.x, SDXL, SD3, Z-Image, HiDream
    (B, N, 4·C)         packed 2×2 patches: FLUX.1, Chroma, Qwen-Image, FLUX.2 (N = H/2 · W/2)
    (B, C, T, H, W)     video-style VAEs (first frame)

The factors below are the published ones from ComfyUI's `comfy/latent_formats.py` (fitted
by its contributors against each family's VAE; numbers, not code). Where a model's latent
channels do not match its family's table (the tiny random-weight test models), the preview
falls back to a normalised view of the first three channels, so sizes and timing stay real.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from PIL.Image import Image

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MAX_SIDE",
    "LATENT_RGB",
    "LatentRGB",
    "PreviewDecoder",
    "TinyVaeDecoder",
    "latent_grid",
    "preview_images",
    "preview_size",
]

# Previews are small: the longer side is at most this many pixels (the aspect is kept).
DEFAULT_MAX_SIDE = 256


@dataclass(frozen=True, slots=True)
class LatentRGB:
    """RGB ≈ latent · factors + bias, per pixel; `factors` has one (R, G, B) row per channel."""

    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float] = (0.0, 0.0, 0.0)

    @property
    def channels(self) -> int:
        return len(self.factors)


_SD15 = LatentRGB(
    (
        (0.3512, 0.2297, 0.3227),
        (0.3250, 0.4974, 0.2350),
        (-0.2829, 0.1762, 0.2721),
        (-0.2120, -0.2616, -0.7177),
    )
)
_SDXL = LatentRGB(
    (
        (0.3651, 0.4232, 0.4341),
        (-0.2533, -0.0042, 0.1068),
        (0.1076, 0.1111, -0.0362),
        (-0.3165, -0.2492, -0.2188),
    ),
    (0.1084, -0.0175, -0.0011),
)
_SD3 = LatentRGB(
    (
        (-0.0922, -0.0175, 0.0749),
        (0.0311, 0.0633, 0.0954),
        (0.1994, 0.0927, 0.0458),
        (0.0856, 0.0339, 0.0902),
        (0.0587, 0.0272, -0.0496),
        (-0.0006, 0.1104, 0.0309),
        (0.0978, 0.0306, 0.0427),
        (-0.0042, 0.1038, 0.1358),
        (-0.0194, 0.0020, 0.0669),
        (-0.0488, 0.0130, -0.0268),
        (0.0922, 0.0988, 0.0951),
        (-0.0278, 0.0524, -0.0542),
        (0.0332, 0.0456, 0.0895),
        (-0.0069, -0.0030, -0.0810),
        (-0.0596, -0.0465, -0.0293),
        (-0.1448, -0.1463, -0.1189),
    ),
    (0.2394, 0.2135, 0.1925),
)
# The FLUX.1 autoencoder, shared by Chroma, HiDream and Z-Image.
_FLUX = LatentRGB(
    (
        (-0.0346, 0.0244, 0.0681),
        (0.0034, 0.0210, 0.0687),
        (0.0275, -0.0668, -0.0433),
        (-0.0174, 0.0160, 0.0617),
        (0.0859, 0.0721, 0.0329),
        (0.0004, 0.0383, 0.0115),
        (0.0405, 0.0861, 0.0915),
        (-0.0236, -0.0185, -0.0259),
        (-0.0245, 0.0250, 0.1180),
        (0.1008, 0.0755, -0.0421),
        (-0.0515, 0.0201, 0.0011),
        (0.0428, -0.0012, -0.0036),
        (0.0817, 0.0765, 0.0749),
        (-0.1264, -0.0522, -0.1103),
        (-0.0280, -0.0881, -0.0499),
        (-0.1262, -0.0982, -0.0778),
    ),
    (-0.0329, -0.0718, -0.0851),
)
# FLUX.2's 32-channel autoencoder (its transformer sees 2×2 patches: 128 channels).
_FLUX2 = LatentRGB(
    (
        (0.0058, 0.0113, 0.0073),
        (0.0495, 0.0443, 0.0836),
        (-0.0099, 0.0096, 0.0644),
        (0.2144, 0.3009, 0.3652),
        (0.0166, -0.0039, -0.0054),
        (0.0157, 0.0103, -0.0160),
        (-0.0398, 0.0902, -0.0235),
        (-0.0052, 0.0095, 0.0109),
        (-0.3527, -0.2712, -0.1666),
        (-0.0301, -0.0356, -0.0180),
        (-0.0107, 0.0078, 0.0013),
        (0.0746, 0.0090, -0.0941),
        (0.0156, 0.0169, 0.0070),
        (-0.0034, -0.0040, -0.0114),
        (0.0032, 0.0181, 0.0080),
        (-0.0939, -0.0008, 0.0186),
        (0.0018, 0.0043, 0.0104),
        (0.0284, 0.0056, -0.0127),
        (-0.0024, -0.0022, -0.0030),
        (0.1207, -0.0026, 0.0065),
        (0.0128, 0.0101, 0.0142),
        (0.0137, -0.0072, -0.0007),
        (0.0095, 0.0092, -0.0059),
        (0.0000, -0.0077, -0.0049),
        (-0.0465, -0.0204, -0.0312),
        (0.0095, 0.0012, -0.0066),
        (0.0290, -0.0034, 0.0025),
        (0.0220, 0.0169, -0.0048),
        (-0.0332, -0.0457, -0.0468),
        (-0.0085, 0.0389, 0.0609),
        (-0.0076, 0.0003, -0.0043),
        (-0.0111, -0.0460, -0.0614),
    ),
    (-0.0329, -0.0718, -0.0851),
)
# Qwen-Image's autoencoder is Wan 2.1's.
_WAN21 = LatentRGB(
    (
        (-0.1299, -0.1692, 0.2932),
        (0.0671, 0.0406, 0.0442),
        (0.3568, 0.2548, 0.1747),
        (0.0372, 0.2344, 0.1420),
        (0.0313, 0.0189, -0.0328),
        (0.0296, -0.0956, -0.0665),
        (-0.3477, -0.4059, -0.2925),
        (0.0166, 0.1902, 0.1975),
        (-0.0412, 0.0267, -0.1364),
        (-0.1293, 0.0740, 0.1636),
        (0.0680, 0.3019, 0.1128),
        (0.0032, 0.0581, 0.0639),
        (-0.1251, 0.0927, 0.1699),
        (0.0060, -0.0633, 0.0005),
        (0.3477, 0.2275, 0.2950),
        (0.1984, 0.0913, 0.1861),
    ),
    (-0.1835, -0.0868, -0.3360),
)

LATENT_RGB: dict[str, LatentRGB] = {
    "sd": _SD15,
    "sdxl": _SDXL,
    "sd3": _SD3,
    "flux": _FLUX,
    "chroma": _FLUX,
    "hidream": _FLUX,
    "z-image": _FLUX,
    "flux2": _FLUX2,
    "qwen-image": _WAN21,
}

# Decodes a (B, C, H, W) latent grid to (B, 3, h, w) images in [0, 1].
PreviewDecoder = Callable[["torch.Tensor"], "torch.Tensor"]


def preview_size(width: int, height: int, max_side: int = DEFAULT_MAX_SIDE) -> tuple[int, int]:
    """The preview's pixel size: the image's aspect, the longer side at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def latent_grid(latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """The latents as a (B, C, H, W) float grid, whatever the pipeline's layout."""
    if latents.ndim == 5:
        latents = latents[:, :, 0]
    if latents.ndim == 3:
        latents = _unpack(latents, width, height)
    if latents.ndim != 4:
        raise ValueError(f"latents of shape {tuple(latents.shape)} have no known layout")
    return latents.float()


def _unpack(tokens: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(B, N, D) tokens of 2×2 patches (channel index c·4 + dy·2 + dx, as diffusers packs
    them) → (B, D/4, 2h, 2w); h and w follow from N and the image's aspect."""
    batch, count, dim = tokens.shape
    cols = max(1, round(math.sqrt(count * width / height)))
    rows = count // cols
    if rows * cols != count:
        raise ValueError(f"{count} latent tokens do not tile a {width}×{height} image")
    grid = tokens.reshape(batch, rows, cols, dim).permute(0, 3, 1, 2)
    if dim % 4:
        return grid
    channels = dim // 4
    grid = grid.reshape(batch, channels, 2, 2, rows, cols).permute(0, 1, 4, 2, 5, 3)
    return grid.reshape(batch, channels, rows * 2, cols * 2)


def _project(grid: torch.Tensor, table: LatentRGB | None) -> torch.Tensor:
    import torch

    if table is not None and grid.shape[1] == table.channels:
        factors = torch.tensor(table.factors, dtype=grid.dtype, device=grid.device)
        bias = torch.tensor(table.bias, dtype=grid.dtype, device=grid.device)
        rgb = torch.einsum("bchw,ck->bkhw", grid, factors) + bias.view(1, 3, 1, 1)
        return ((rgb + 1) / 2).clamp(0, 1)
    # No table fits (a tiny test model): its first three channels, each image stretched.
    rgb = grid[:, :3]
    if rgb.shape[1] < 3:
        rgb = rgb.repeat(1, 3, 1, 1)[:, :3]
    low = rgb.amin(dim=(1, 2, 3), keepdim=True)
    high = rgb.amax(dim=(1, 2, 3), keepdim=True)
    return (rgb - low) / (high - low).clamp_min(1e-6)


def preview_images(
    family: str,
    latents: torch.Tensor,
    *,
    width: int,
    height: int,
    max_side: int = DEFAULT_MAX_SIDE,
    decoder: PreviewDecoder | None = None,
) -> list[Image]:
    """One small RGB preview per image of the batch, sized by `preview_size`."""
    import torch

    with torch.no_grad():
        grid = latent_grid(latents.detach(), width, height)
        rgb = decoder(grid) if decoder is not None else _project(grid, LATENT_RGB.get(family))
        pixels = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    size = preview_size(width, height, max_side)
    return [
        PILImage.fromarray(item.numpy(), "RGB").resize(size, PILImage.Resampling.BILINEAR)
        for item in pixels
    ]


class TinyVaeDecoder:
    """A preview decoder from diffusers' `AutoencoderTiny` (TAESD, TAESDXL, TAEF1, ...),
    loaded once from a hub repo id or a local directory. It takes the pipeline's latents
    as they are during denoising (already scaled), like the pipelines that swap it in."""

    def __init__(self, source: str, *, device: str = "cpu", dtype: Any = None) -> None:
        import diffusers
        import torch

        loader: Any = diffusers.AutoencoderTiny
        vae = loader.from_pretrained(source, torch_dtype=dtype or torch.float32)
        self.vae: Any = vae.to(device).eval()
        self.dtype = dtype or torch.float32

    def __call__(self, grid: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            image = self.vae.decode(grid.to(self.vae.device, self.dtype)).sample
        result: torch.Tensor = ((image.float() + 1) / 2).clamp(0, 1)
        return result
