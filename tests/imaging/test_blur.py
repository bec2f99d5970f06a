from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from murano.imaging.blur import blur, detail_retained
from murano.imaging.samples import noise_image, synthetic_photo

# Under 0.1% of the detail finer than 1/16 of the frame may survive (see murano.imaging.blur).
LIMIT = 1e-3


def _text_image(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(12, height // 8))
    for row in range(6):
        draw.text((width // 20, row * height // 6), "MURANO 0123", fill="black", font=font)
    return image


@pytest.mark.parametrize(
    "image",
    [
        synthetic_photo(1024, 1024, seed=11),
        synthetic_photo(768, 1280, seed=12),
        synthetic_photo(256, 256, seed=13),
        noise_image(512, 512, seed=14),
        _text_image(1024, 1024),
    ],
    ids=["photo-1024", "photo-768x1280", "photo-256", "noise-512", "text-1024"],
)
def test_blur_leaves_almost_no_detail(image: Image.Image) -> None:
    assert detail_retained(image, blur(image)) < LIMIT


def test_the_measure_tells_a_mild_blur_from_safe_mode(photo_512: Image.Image) -> None:
    assert detail_retained(photo_512, photo_512) == pytest.approx(1.0)
    mild = photo_512.filter(ImageFilter.GaussianBlur(4))
    assert detail_retained(photo_512, mild) > 100 * LIMIT


def test_flat_image_has_no_detail_to_keep() -> None:
    flat = Image.new("RGB", (300, 200), (40, 90, 200))
    assert detail_retained(flat, blur(flat)) == 0.0


def test_whole_frame_is_blurred_but_keeps_its_overall_colour(photo_1024: Image.Image) -> None:
    blurred = blur(photo_1024)
    before = np.asarray(photo_1024, dtype=np.float64)
    after = np.asarray(blurred, dtype=np.float64)
    # No region is left sharp: every 128-px tile loses its texture.
    for y in range(0, 1024, 128):
        for x in range(0, 1024, 128):
            tile_before = before[y : y + 128, x : x + 128]
            tile_after = after[y : y + 128, x : x + 128]
            assert np.abs(np.diff(tile_after, axis=1)).mean() < 0.25 * max(
                1.0, np.abs(np.diff(tile_before, axis=1)).mean()
            )
    # Still a picture, not a black square: the average colour stays put.
    assert np.abs(before.mean(axis=(0, 1)) - after.mean(axis=(0, 1))).max() < 3.0


@pytest.mark.parametrize(
    ("mode", "expected"), [("RGB", "RGB"), ("RGBA", "RGBA"), ("L", "RGB"), ("P", "RGB")]
)
def test_size_kept_and_mode_normalised(mode: str, expected: str) -> None:
    image = synthetic_photo(333, 222, seed=15).convert(mode)
    blurred = blur(image)
    assert blurred.size == (333, 222)
    assert blurred.mode == expected


def test_tiny_images_are_blurred_too() -> None:
    image = noise_image(8, 5, seed=16)
    blurred = blur(image)
    assert blurred.size == (8, 5)
    assert np.asarray(blurred, dtype=np.float64).std() < np.asarray(image).std() / 4


def test_measure_needs_images_of_one_size(photo_512: Image.Image) -> None:
    with pytest.raises(ValueError, match="differ in size"):
        detail_retained(photo_512, photo_512.resize((256, 256)))
