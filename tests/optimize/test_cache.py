"""Step caching on the tiny models of the families whose pipelines drive diffusers' cache
hooks (flux, qwen-image): it provably skips work, keeps the image's shape and stays close to
the uncached image; a request may turn it off only where the entry allows it; the other
families refuse it at load, naming the setting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.optimize import OptimizeError
from murano.engine.params import GenerationParams
from murano.errors import UnsupportedFeature
from tests.families.conftest import TinyModels, pixels
from tests.optimize.conftest import ComputeCounter, optimized, params

STEPS = 8
# Mean absolute difference from the uncached image, in levels of 255. The tiny random-weight
# models' steps change little from one to the next, so a skipped block costs under a level
# on average (measured: 0.01–0.2); 2 leaves room and still fails for a wrong image (a fresh
# random image differs by about 85).
MEAN_TOLERANCE = 2.0

CACHES: dict[str, dict[str, Any]] = {
    # Thresholds far above the diffusers defaults: random weights change every step about
    # as much as a real model's late steps, and the test needs skips to count.
    "first-block": {"type": "first-block", "threshold": 0.5},
    "taylorseer": {
        "type": "taylorseer",
        "options": {"cache_interval": 2, "disable_cache_before_step": 2},
    },
    "magcache": {"type": "magcache", "threshold": 0.5},
    "faster": {"type": "faster"},
}
# Which caches each family is tested with (magcache needs ratios calibrated for the model:
# diffusers ships FLUX's; FasterCache targets flux's attention layout here).
FAMILY_CACHES = [
    ("flux", "first-block"),
    ("flux", "taylorseer"),
    ("flux", "magcache"),
    ("flux", "faster"),
    ("qwen-image", "first-block"),
    ("qwen-image", "taylorseer"),
]


def render(backend: DiffusersBackend, p: GenerationParams) -> tuple[int, np.ndarray]:
    counter = ComputeCounter(backend.pipeline)
    try:
        image = backend.generate([p])[0][0]
    finally:
        counter.remove()
    return counter.calls, pixels(image)


@pytest.fixture(scope="module")
def baselines(tiny_models: TinyModels) -> dict[str, tuple[int, np.ndarray]]:
    """Each family's uncached image and work, rendered once."""
    found = {}
    for family in {family for family, _ in FAMILY_CACHES}:
        backend = load_backend(optimized(tiny_models, family))
        found[family] = render(backend, params(backend.entry, steps=STEPS))
        backend.unload()
    return found


@pytest.mark.parametrize(("family", "cache"), FAMILY_CACHES)
def test_the_cache_skips_work_and_keeps_the_image(
    tiny_models: TinyModels,
    baselines: dict[str, tuple[int, np.ndarray]],
    loaded: list[DiffusersBackend],
    family: str,
    cache: str,
) -> None:
    entry = optimized(tiny_models, family, cache={**CACHES[cache], "allow_request_off": True})
    backend = load_backend(entry)
    loaded.append(backend)
    full_work, uncached = baselines[family]

    work, cached = render(backend, params(entry, steps=STEPS))
    assert work < full_work
    assert cached.shape == uncached.shape
    assert np.abs(cached - uncached).mean() <= MEAN_TOLERANCE

    # The same model with the request's `step_cache: false`: all the work, the exact image.
    off_work, off = render(backend, params(entry, steps=STEPS, step_cache=False))
    assert off_work == full_work
    assert np.array_equal(off, uncached)
    # ...and the cache is back for the next request.
    again, _ = render(backend, params(entry, steps=STEPS))
    assert again == work


@pytest.mark.parametrize("family", ["sd", "sdxl", "z-image", "chroma", "sd3"])
def test_families_without_cache_support_refuse_it_at_load(
    tiny_models: TinyModels, family: str
) -> None:
    entry = optimized(tiny_models, family, cache={"type": "first-block"})
    with pytest.raises(OptimizeError, match=r"optimize\.cache: .*does not support"):
        load_backend(entry)


def test_an_unknown_cache_option_fails_the_load_naming_it(tiny_models: TinyModels) -> None:
    entry = optimized(
        tiny_models, "flux", cache={"type": "first-block", "options": {"treshold": 0.1}}
    )
    with pytest.raises(OptimizeError, match=r"optimize\.cache: first-block: .*treshold"):
        load_backend(entry)


def test_magcache_without_ratios_fails_on_a_family_with_none_shipped(
    tiny_models: TinyModels,
) -> None:
    entry = optimized(tiny_models, "qwen-image", cache={"type": "magcache"})
    with pytest.raises(OptimizeError, match=r"optimize\.cache: magcache: .*mag_ratios"):
        load_backend(entry)


def test_step_cache_off_is_refused_where_the_entry_does_not_allow_it(
    tiny_models: TinyModels,
) -> None:
    entry = optimized(tiny_models, "flux", cache={"type": "first-block"})
    with pytest.raises(UnsupportedFeature) as caught:
        params(entry, step_cache=False)
    assert caught.value.field == "step_cache"
    # Asking for the cache, or not saying, is always fine; so is turning off a cache the
    # model does not have.
    assert params(entry, step_cache=True).step_cache is True
    assert params(entry).step_cache is True
    assert params(optimized(tiny_models, "flux"), step_cache=False).step_cache is True
