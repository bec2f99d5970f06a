"""Deterministic synthetic images for tests and benchmarks, built from code (no files, no
network), so that encoders and the watermark are measured on something like a generated
picture and not only on flat colour.

`synthetic_photo` has what photographs and diffusion outputs have and flat test images
lack: a smooth sky gradient, hard-edged objects, 1/f ("pink") texture with correlated
colour channels, and a little sensor-like grain. `noise_image` is uniform RGB noise, which is
what murano's tiny test model produces and the worst case for every encoder.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

__all__ = ["noise_image", "synthetic_photo"]

# Mixes three independent textures into correlated colour channels, as in real scenes.
_CHANNEL_MIX = np.array([[1.0, 0.8, 0.6], [0.3, 1.0, 0.5], [0.2, 0.4, 1.0]])


def synthetic_photo(width: int = 1024, height: int = 1024, *, seed: int = 0) -> Image.Image:
    """An RGB "photo": sky on the top quarter, textured ground, a dozen flat shapes."""
    _check_size(width, height)
    rng = np.random.default_rng(seed)
    ground = np.clip(128.0 + 36.0 * _pink_texture(width, height, rng), 0, 255)
    image = Image.fromarray(ground.astype(np.uint8))
    _draw_shapes(image, rng)
    pixels = np.asarray(image, dtype=np.float64).copy()
    sky_rows = height // 4
    t = np.linspace(0.0, 1.0, height)[:sky_rows, None]
    pixels[:sky_rows] = np.stack([90 + 100 * t, 140 + 80 * t, 230 - 20 * t], axis=-1)
    image = Image.fromarray(pixels.astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))
    grain = rng.normal(0.0, 1.5, (height, width, 1))
    pixels = np.asarray(image, dtype=np.float64) + grain
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def noise_image(width: int = 1024, height: int = 1024, *, seed: int = 0) -> Image.Image:
    """Uniform RGB noise: every pixel independent, the hardest image to compress or mark."""
    _check_size(width, height)
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _pink_texture(width: int, height: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Three channels of 1/f noise (amplitude falls as 1/frequency, like natural scenes),
    mixed and scaled to unit standard deviation."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    channels = []
    for _ in range(3):
        spectrum = rng.normal(size=(height, width)) + 1j * rng.normal(size=(height, width))
        spectrum /= radius
        spectrum[0, 0] = 0.0
        plane = np.real(np.fft.ifft2(spectrum))
        channels.append((plane - plane.mean()) / plane.std())
    mixed = np.stack(channels, axis=-1) @ _CHANNEL_MIX.T
    result: NDArray[np.float64] = mixed / mixed.std()
    return result


def _draw_shapes(image: Image.Image, rng: np.random.Generator) -> None:
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(12):
        x0 = int(rng.integers(0, width))
        y0 = int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(max(1, width // 16), max(2, width // 3)))
        y1 = y0 + int(rng.integers(max(1, height // 16), max(2, height // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)


def _check_size(width: int, height: int) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
