from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from murano.imaging.encode import FORMATS, ImageFormat, encode
from murano.imaging.samples import noise_image, synthetic_photo
from murano.imaging.watermark import (
    MAX_BIT_ERRORS,
    MIN_SIDE,
    PAYLOAD,
    apply_visible_mark,
    apply_watermark,
    has_watermark,
    watermark_bit_errors,
)

KINDS = ["photo", "noise"]


def _image(request: pytest.FixtureRequest, kind: str, size: int) -> Image.Image:
    image: Image.Image = request.getfixturevalue(f"{kind}_{size}")
    return image


def _psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(diff**2)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [1024, 512])
def test_mark_survives_every_shipped_format(
    request: pytest.FixtureRequest, fmt: ImageFormat, kind: str, size: int
) -> None:
    image = _image(request, kind, size)
    data = encode(apply_watermark(image), fmt)
    assert watermark_bit_errors(data) == 0
    assert has_watermark(data)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_unmarked_images_are_not_detected(
    request: pytest.FixtureRequest, fmt: ImageFormat, kind: str
) -> None:
    data = encode(_image(request, kind, 1024), fmt)
    errors = watermark_bit_errors(data)
    assert errors is not None and errors > 2 * MAX_BIT_ERRORS
    assert not has_watermark(data)


def _unmarked_variety() -> list[Image.Image]:
    """Unmarked images of every sort: photos, noise, flat colours, gradients, stripes."""
    images: list[Image.Image] = []
    for seed in range(40):
        images.append(synthetic_photo(256 + 8 * (seed % 5), 256 + 16 * (seed % 3), seed=seed))
    for seed in range(20):
        images.append(noise_image(256, 320, seed=seed))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 320)
    for _ in range(20):
        colour = rng.integers(0, 256, 3)
        images.append(Image.new("RGB", (320, 256), tuple(int(c) for c in colour)))
        gradient = np.stack([ramp * rng.random(), ramp[::-1] * rng.random(), ramp * 0.5], -1)
        images.append(Image.fromarray(np.repeat(gradient[None], 256, 0).astype(np.uint8)))
        period = int(rng.integers(2, 40))
        stripes = (np.arange(320) // period % 2 * 255).astype(np.uint8)
        images.append(Image.fromarray(np.repeat(stripes[None], 288, 0)).convert("RGB"))
    return images


def test_false_positive_rate_is_zero_on_a_varied_unmarked_set() -> None:
    images = _unmarked_variety()
    errors = [watermark_bit_errors(image) for image in images]
    assert all(e is not None for e in errors)
    found = [e for e in errors if e is not None and e <= MAX_BIT_ERRORS]
    assert found == []
    # Unmarked readings behave like random bits (32 ± 4 errors); flat images read as all-0
    # or all-1, 31 or 33 bits from the balanced payload. None comes near the threshold.
    assert min(e for e in errors if e is not None) > 2 * MAX_BIT_ERRORS


def test_mark_survives_at_the_size_limit_on_noise() -> None:
    for seed in range(4):
        image = noise_image(MIN_SIDE, MIN_SIDE, seed=seed)
        marked = apply_watermark(image)
        for fmt in FORMATS:
            assert has_watermark(encode(marked, fmt)), (seed, fmt)


@pytest.mark.parametrize("size", [(MIN_SIDE - 1, 1024), (1024, MIN_SIDE - 1), (64, 64)])
def test_images_too_small_are_left_unmarked(size: tuple[int, int]) -> None:
    image = synthetic_photo(*size, seed=7)
    marked = apply_watermark(image)
    assert marked is not image
    assert marked.tobytes() == image.tobytes()
    assert watermark_bit_errors(marked) is None
    assert not has_watermark(encode(marked, "png"))


def test_odd_sizes_are_marked() -> None:
    image = synthetic_photo(1000, 700, seed=8)
    assert has_watermark(encode(apply_watermark(image), "webp"))


@pytest.mark.parametrize("kind", KINDS)
def test_mark_is_invisible(request: pytest.FixtureRequest, kind: str) -> None:
    image = _image(request, kind, 512)
    marked = apply_watermark(image)
    assert marked.size == image.size and marked.mode == "RGB"
    assert _psnr(image, marked) > 42.0


def test_input_is_not_modified(photo_512: Image.Image) -> None:
    before = photo_512.tobytes()
    apply_watermark(photo_512)
    assert photo_512.tobytes() == before


def test_alpha_channel_is_kept() -> None:
    image = synthetic_photo(320, 320, seed=9).convert("RGBA")
    image.putalpha(Image.linear_gradient("L").resize((320, 320)))
    marked = apply_watermark(image)
    assert marked.mode == "RGBA"
    assert marked.getchannel("A").tobytes() == image.getchannel("A").tobytes()
    assert has_watermark(encode(marked, "png"))


def test_invisible_watermark_package_reads_murano_marks(photo_512: Image.Image) -> None:
    import cv2
    from imwatermark import WatermarkDecoder

    for fmt in FORMATS:
        data = encode(apply_watermark(photo_512), fmt)
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert WatermarkDecoder("bytes", 64).decode(bgr, "dwtDctSvd") == PAYLOAD


def test_murano_reads_marks_made_by_the_invisible_watermark_package(
    photo_512: Image.Image,
) -> None:
    import cv2
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bytes", PAYLOAD)
    bgr = cv2.cvtColor(np.asarray(photo_512), cv2.COLOR_RGB2BGR)
    marked = Image.fromarray(cv2.cvtColor(encoder.encode(bgr, "dwtDctSvd"), cv2.COLOR_BGR2RGB))
    assert has_watermark(marked)


def test_has_watermark_takes_bytes_or_images(photo_512: Image.Image) -> None:
    marked = apply_watermark(photo_512)
    assert has_watermark(marked)
    buffer = io.BytesIO()
    marked.save(buffer, "PNG")
    assert has_watermark(buffer.getvalue())


def test_visible_mark_sits_in_the_bottom_right_corner(photo_512: Image.Image) -> None:
    marked = apply_visible_mark(photo_512, "murano")
    assert marked.size == photo_512.size and marked.mode == photo_512.mode
    before = np.asarray(photo_512, dtype=np.int16)
    diff = np.abs(np.asarray(marked, dtype=np.int16) - before).sum(-1)
    rows, cols = np.nonzero(diff)
    assert rows.size > 50  # something was drawn
    assert rows.min() > 512 * 0.8 and cols.min() > 512 * 0.5
    # Semi-transparent: the picture still shows through the letters.
    assert int(diff.max()) < 3 * 255


def test_visible_mark_needs_text(photo_512: Image.Image) -> None:
    with pytest.raises(ValueError, match="empty"):
        apply_visible_mark(photo_512, "  ")
