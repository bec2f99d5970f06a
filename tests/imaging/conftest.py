"""Images shared by the imaging tests, built once per session (the 1024² photo takes ~0.5 s).
Tests must not modify them; every function under test returns a new image."""

from __future__ import annotations

import pytest
from PIL import Image

from murano.imaging.samples import noise_image, synthetic_photo


@pytest.fixture(scope="session")
def photo_1024() -> Image.Image:
    return synthetic_photo(1024, 1024, seed=1)


@pytest.fixture(scope="session")
def noise_1024() -> Image.Image:
    return noise_image(1024, 1024, seed=1)


@pytest.fixture(scope="session")
def photo_512() -> Image.Image:
    return synthetic_photo(512, 512, seed=2)


@pytest.fixture(scope="session")
def noise_512() -> Image.Image:
    return noise_image(512, 512, seed=2)
