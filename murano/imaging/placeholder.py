"""What a refused prompt gets instead of images (Venice answers 200 with
`x-venice-is-content-violation: true`): blacked-out images of the requested size in JSON
responses, and one fixed PNG placeholder for binary responses."""

from __future__ import annotations

import functools
from typing import Final

from PIL import Image, ImageDraw, ImageFont

from murano.imaging.encode import encode

__all__ = ["PLACEHOLDER_SIZE", "blacked_out", "violation_placeholder_png"]

PLACEHOLDER_SIZE: Final = (512, 512)
_LABEL: Final = "Content policy violation"


def blacked_out(width: int, height: int) -> Image.Image:
    """An all-black RGB image of the requested size."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return Image.new("RGB", (width, height), (0, 0, 0))


@functools.cache
def violation_placeholder_png() -> bytes:
    """A black 512×512 PNG with a small grey label saying why, the same bytes every time
    (built once; bytes are immutable, so sharing them is safe)."""
    image = blacked_out(*PLACEHOLDER_SIZE)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=20)
    centre = (PLACEHOLDER_SIZE[0] / 2, PLACEHOLDER_SIZE[1] / 2)
    draw.text(centre, _LABEL, fill=(128, 128, 128), font=font, anchor="mm")
    return encode(image, "png")
