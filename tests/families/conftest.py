"""Tiny random-weight models of every family `murano.engine.tiny` builds, each built once per
session and loaded through `load_backend` (the loader real models use), and requests that go
through the catalog's `check` as an HTTP request would."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL.Image import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from murano.catalog.check import check
from murano.catalog.entries import ModelEntry, build_entry
from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.params import GenerationParams
from murano.engine.tiny import FAMILIES, build_tiny

# Every family the tiny builder offers when the tests run: the suite grows with it.
TINY_FAMILIES: tuple[str, ...] = FAMILIES

Pixels = NDArray[np.int16]

# A request batched with others gives the image it gives alone within this (of 255): CPU
# matmuls over a larger batch add up in another order, moving a pixel by a level at times.
BATCH_TOLERANCE = 2


@dataclass(frozen=True)
class Request:
    """The fields of Venice's GenerateImageRequest that `check` reads."""

    prompt: str = "a red cat on a sofa"
    negative_prompt: str | None = None
    width: int | None = 64
    height: int | None = 64
    aspect_ratio: str | None = None
    resolution: str | None = None
    quality: str | None = None
    cfg_scale: float | None = None
    steps: int | None = 2
    seed: int | None = 1
    variants: int | None = None
    lora_strength: int | None = None
    style_preset: str | None = None
    enable_web_search: bool | None = None
    enhance_prompt: bool | None = None


def tiny_entry(family: str, source: Path | str, model_id: str = "tiny", **raw: Any) -> ModelEntry:
    """An entry as a models file gives it: the family's default constraints, on the CPU."""
    return build_entry(
        {"id": model_id, "source": str(source), "device": "cpu", **raw}, family=family
    )


def params(entry: ModelEntry, **fields: Any) -> GenerationParams:
    """A request's parameters after `check`. CFG is off (the family's `cfg_off_at`) unless
    the test sets `cfg_scale` (None: the model's default): half the work per image."""
    fields.setdefault("cfg_scale", entry.family_info.cfg_off_at)
    return check(entry, Request(**fields))


def pixels(image: Image) -> Pixels:
    return np.asarray(image, dtype=np.int16)


def max_diff(a: Image, b: Image) -> int:
    return int(np.abs(pixels(a) - pixels(b)).max())


def generate_one(backend: DiffusersBackend, p: GenerationParams) -> list[Image]:
    return backend.generate([p])[0]


class Renderer:
    """A backend's images by request, each rendered once per module: the invariant tests
    share their reference images, which keeps the suite fast on a small CPU."""

    def __init__(self, backend: DiffusersBackend) -> None:
        self.backend = backend
        self._cache: dict[GenerationParams, list[Image]] = {}

    def fresh(self, p: GenerationParams) -> list[Image]:
        """Render now (a test that watches the call), and remember the result."""
        self._cache[p] = generate_one(self.backend, p)
        return self._cache[p]

    def images(self, p: GenerationParams) -> list[Image]:
        return self._cache[p] if p in self._cache else self.fresh(p)

    def image(self, p: GenerationParams) -> Image:
        return self.images(p)[0]


class TinyModels:
    """Builds each family's tiny pipeline on first use, once per session."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._built: dict[str, Path] = {}

    def path(self, family: str) -> Path:
        if family not in self._built:
            self._built[family] = build_tiny(family, self._root / family)
        return self._built[family]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-families"))


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def entry(family: str, tiny_models: TinyModels) -> ModelEntry:
    return tiny_entry(family, tiny_models.path(family))


@pytest.fixture(scope="module")
def backend(entry: ModelEntry) -> Iterator[DiffusersBackend]:
    loaded = load_backend(entry)
    yield loaded
    loaded.unload()


@pytest.fixture(scope="module")
def render(backend: DiffusersBackend) -> Renderer:
    return Renderer(backend)
