"""LoRAs of a model entry, on every tiny family: loaded once with the model, scaled per
request by `lora_strength` (scale = entry scale × strength / 50) with no reload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from murano.catalog.entries import ModelEntry
from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.families import batch_key
from murano.engine.lora import DEFAULT_STRENGTH, effective_strength, scales
from murano.engine.tiny.lora import LORA_WEIGHT_NAME, build_tiny_lora
from tests.families.conftest import (
    BATCH_TOLERANCE,
    Renderer,
    TinyModels,
    generate_one,
    max_diff,
    params,
    pixels,
    tiny_entry,
)


@pytest.fixture(scope="module")
def lora_dir(
    family: str, tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp(f"lora-{family}")
    return build_tiny_lora(family, tiny_models.path(family), out)


@pytest.fixture(scope="module")
def lora_entry(family: str, tiny_models: TinyModels, lora_dir: Path) -> ModelEntry:
    return tiny_entry(
        family, tiny_models.path(family), "tiny-lora", loras=[{"source": str(lora_dir)}]
    )


@pytest.fixture(scope="module")
def lora_backend(lora_entry: ModelEntry) -> Iterator[DiffusersBackend]:
    loaded = load_backend(lora_entry)
    yield loaded
    loaded.unload()


def no_reload(monkeypatch: pytest.MonkeyPatch, pipeline: Any) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("LoRA weights were loaded again")

    monkeypatch.setattr(pipeline, "load_lora_weights", refuse)


def test_strength_zero_is_the_base_model_exactly_and_switching_needs_no_reload(
    lora_backend: DiffusersBackend,
    lora_entry: ModelEntry,
    render: Renderer,
    entry: ModelEntry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    no_reload(monkeypatch, lora_backend.pipeline)
    pipeline = lora_backend.pipeline
    base = render.image(params(entry))
    full = generate_one(lora_backend, params(lora_entry, lora_strength=100))[0]
    off = generate_one(lora_backend, params(lora_entry, lora_strength=0))[0]
    again = generate_one(lora_backend, params(lora_entry, lora_strength=100))[0]
    np.testing.assert_array_equal(pixels(off), pixels(base))
    assert max_diff(full, base) > 0
    np.testing.assert_array_equal(pixels(again), pixels(full))
    assert lora_backend.pipeline is pipeline


def test_absent_strength_is_the_default_strength(
    lora_backend: DiffusersBackend, lora_entry: ModelEntry
) -> None:
    absent = generate_one(lora_backend, params(lora_entry, seed=3))[0]
    default = generate_one(
        lora_backend, params(lora_entry, seed=3, lora_strength=DEFAULT_STRENGTH)
    )[0]
    np.testing.assert_array_equal(pixels(absent), pixels(default))


def test_a_model_without_loras_ignores_lora_strength(render: Renderer, entry: ModelEntry) -> None:
    plain = render.image(params(entry))
    strong = generate_one(render.backend, params(entry, lora_strength=100))[0]
    np.testing.assert_array_equal(pixels(strong), pixels(plain))
    assert batch_key(entry, params(entry, lora_strength=100)) == batch_key(entry, params(entry))


def test_strengths_never_share_a_batch(lora_entry: ModelEntry) -> None:
    keys = {batch_key(lora_entry, params(lora_entry, lora_strength=s)) for s in (0, 50, 100)}
    assert len(keys) == 3
    assert batch_key(lora_entry, params(lora_entry)) == batch_key(
        lora_entry, params(lora_entry, lora_strength=DEFAULT_STRENGTH)
    )


# --- the strength rule and fixed LoRAs, on SD only (the rule is family-independent) ------


def sd_entry(tiny_models: TinyModels, **raw: Any) -> ModelEntry:
    return tiny_entry("sd", tiny_models.path("sd"), "sd-lora", **raw)


@pytest.fixture(scope="module")
def sd_lora(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_lora("sd", tiny_models.path("sd"), tmp_path_factory.mktemp("sd-lora"))


def test_scale_is_entry_scale_times_strength_over_50(tiny_models: TinyModels) -> None:
    entry = sd_entry(
        tiny_models,
        loras=[
            {"source": "a", "scale": 0.8},
            {"source": "b", "scale": 1.5},
            {"source": "c", "fixed": True},
        ],
    )
    assert scales(entry, 50) == [0.8, 1.5]
    assert scales(entry, None) == [0.8, 1.5]
    assert scales(entry, 100) == [1.6, 3.0]
    assert scales(entry, 0) == [0.0, 0.0]
    assert scales(entry, 25) == [0.4, 0.75]


def test_only_fixed_loras_mean_no_strength(tiny_models: TinyModels) -> None:
    entry = sd_entry(tiny_models, loras=[{"source": "speed", "fixed": True}])
    assert effective_strength(entry, 80) is None


def test_fixed_lora_is_fused_and_ignores_strength(tiny_models: TinyModels, sd_lora: Path) -> None:
    file = str(sd_lora / LORA_WEIGHT_NAME)  # a file path works as well as its folder
    fixed = load_backend(sd_entry(tiny_models, loras=[{"source": file, "fixed": True}]))
    variable = load_backend(sd_entry(tiny_models, loras=[{"source": str(sd_lora)}]))
    base = load_backend(sd_entry(tiny_models))
    p = params(fixed.entry, lora_strength=0)
    fused = generate_one(fixed, p)[0]
    assert max_diff(fused, generate_one(base, p)[0]) > 0
    # Fused at scale 1 == the adapter at scale 1 (strength 50), up to rounding.
    at_50 = generate_one(variable, params(variable.entry, lora_strength=50))[0]
    assert max_diff(fused, at_50) <= BATCH_TOLERANCE
    assert not fixed.pipeline.get_list_adapters()  # the LoRA layers are gone


def test_two_adapters_scale_together(tiny_models: TinyModels, sd_lora: Path) -> None:
    def two(style: float, detail: float) -> DiffusersBackend:
        loras = [
            {"source": str(sd_lora), "adapter_name": "style", "scale": style},
            {"source": str(sd_lora), "adapter_name": "detail", "scale": detail},
        ]
        return load_backend(sd_entry(tiny_models, loras=loras))

    halves, doubled = two(0.5, 1.0), two(1.0, 2.0)
    at_100 = generate_one(halves, params(halves.entry, lora_strength=100))[0]
    at_50 = generate_one(doubled, params(doubled.entry, lora_strength=50))[0]
    np.testing.assert_array_equal(pixels(at_100), pixels(at_50))
    assert max_diff(at_100, generate_one(halves, params(halves.entry))[0]) > 0
    assert sorted(halves.pipeline.get_active_adapters()) == ["detail", "style"]
