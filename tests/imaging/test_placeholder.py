from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from murano.imaging.encode import sniff_format
from murano.imaging.placeholder import PLACEHOLDER_SIZE, blacked_out, violation_placeholder_png
from tests.imaging._containers import png_chunks


def test_blacked_out_is_all_black_at_the_requested_size() -> None:
    image = blacked_out(1280, 720)
    assert image.size == (1280, 720)
    assert image.mode == "RGB"
    assert image.getextrema() == ((0, 0), (0, 0), (0, 0))


@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (-1, 5)])
def test_blacked_out_refuses_empty_sizes(width: int, height: int) -> None:
    with pytest.raises(ValueError, match="positive"):
        blacked_out(width, height)


def test_placeholder_is_a_dark_png_without_metadata() -> None:
    data = violation_placeholder_png()
    assert sniff_format(data) == "png"
    assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}
    image = Image.open(io.BytesIO(data))
    assert image.size == PLACEHOLDER_SIZE
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.mean() < 10  # mostly black
    assert pixels.max() > 64  # with a readable label


def test_placeholder_is_built_once() -> None:
    assert violation_placeholder_png() is violation_placeholder_png()
