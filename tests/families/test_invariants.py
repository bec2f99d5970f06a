"""The invariants every family must keep, as diffusers' pipeline mixins check them, on each
tiny model `murano.engine.tiny` builds (64×64 or 128×64, 2 steps, CPU), loaded through
`load_backend` and driven with requests that went through the catalog's `check`.

Tolerance: a request batched with others must give the image it gives alone within 2/255
per channel (max abs difference of the 8-bit images): CPU matmuls over a larger batch add
up in a different order, which moves a pixel by a level now and then."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

from murano.catalog.entries import ModelEntry
from murano.errors import InvalidRequest, UnsupportedFeature
from tests.families.conftest import (
    BATCH_TOLERANCE,
    Renderer,
    generate_one,
    max_diff,
    params,
    pixels,
)

# Another seed gives another image: much more than rounding apart.
DIFFERENT_SEED = 10

CAT = "a red cat on a sofa"
DOG = "a blue dog asleep on green grass"


def test_same_seed_gives_the_same_image(render: Renderer, entry: ModelEntry) -> None:
    p = params(entry, seed=1)
    first = render.image(p)
    again = generate_one(render.backend, p)[0]
    np.testing.assert_array_equal(pixels(first), pixels(again))
    assert max_diff(first, render.image(params(entry, seed=2))) > DIFFERENT_SEED


def test_batched_request_gives_the_image_it_gives_alone(
    render: Renderer, entry: ModelEntry
) -> None:
    # With CFG on, so that the unconditional half of the batch is checked too.
    jobs = [
        params(entry, prompt=CAT, seed=1, cfg_scale=4.0),
        params(entry, prompt=DOG, seed=7, variants=2, cfg_scale=4.0),
        params(entry, prompt="ships", seed=3, cfg_scale=4.0),
    ]
    batched = render.backend.generate(jobs)
    assert [len(images) for images in batched] == [1, 2, 1]
    for job, images in zip(jobs, batched, strict=True):
        for i, together in enumerate(images):
            alone = params(entry, prompt=job.prompt, seed=job.seed + i, cfg_scale=4.0)
            assert max_diff(together, render.image(alone)) <= BATCH_TOLERANCE


def test_variants_are_seed_plus_i(render: Renderer, entry: ModelEntry) -> None:
    images = generate_one(
        render.backend, params(entry, prompt=DOG, seed=7, variants=2, cfg_scale=4.0)
    )
    assert len(images) == 2
    for i, image in enumerate(images):
        alone = render.image(params(entry, prompt=DOG, seed=7 + i, cfg_scale=4.0))
        assert max_diff(image, alone) <= BATCH_TOLERANCE
    assert max_diff(images[0], images[1]) > DIFFERENT_SEED


# Conditioning checks compare two single renders, each exactly reproducible (see the first
# test), so any difference comes from the input. Some tiny models respond weakly (the tiny
# Qwen-Image moves pixels by a level or two), so any difference counts.


def test_prompt_conditions_the_image(render: Renderer, entry: ModelEntry) -> None:
    cat = render.image(params(entry, prompt=CAT, seed=1, cfg_scale=4.0))
    dog = render.image(params(entry, prompt=DOG, seed=1, cfg_scale=4.0))
    assert max_diff(cat, dog) > 0


def test_non_square_size_is_served_exactly(render: Renderer, entry: ModelEntry) -> None:
    # HiDream would rescale this to its default 1024² area without its adapter's fix.
    image = render.image(params(entry, width=128, height=64))
    assert image.size == (128, 64)
    assert pixels(image).std() > 1  # an image, not a flat fill


@pytest.mark.parametrize("side", ["width", "height"])
def test_size_off_the_family_divisor_is_refused(entry: ModelEntry, side: str) -> None:
    divisor = entry.family_info.divisor
    with pytest.raises(InvalidRequest, match=f"divisible by {divisor}") as caught:
        params(entry, **{side: 64 + divisor // 2})
    assert caught.value.field == side


def test_cfg_scale_reaches_the_image(render: Renderer, entry: ModelEntry) -> None:
    low = render.image(params(entry, prompt=CAT, seed=1, cfg_scale=2.0))
    high = render.image(params(entry, prompt=CAT, seed=1, cfg_scale=4.0))
    assert max_diff(low, high) > 0


def test_negative_prompt_changes_the_image_or_is_refused(
    render: Renderer, entry: ModelEntry
) -> None:
    if not entry.family_info.negative_prompt:
        with pytest.raises(UnsupportedFeature) as caught:
            params(entry, negative_prompt="blurry")
        assert caught.value.field == "negative_prompt"
        return
    plain = render.image(params(entry, prompt=CAT, seed=1, cfg_scale=4.0))
    negative = render.image(
        params(entry, prompt=CAT, seed=1, cfg_scale=4.0, negative_prompt="blurry")
    )
    assert max_diff(plain, negative) > 0


class CallSpy:
    """Records the keyword arguments of every call of a pipeline class."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pipeline: Any) -> None:
        self.calls: list[dict[str, Any]] = []
        original = type(pipeline).__call__

        def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            # Copied now: some pipelines (Z-Image) rewrite the prompt lists in place.
            self.calls.append({k: copy.copy(v) for k, v in kwargs.items()})
            return original(pipe, *args, **kwargs)

        monkeypatch.setattr(type(pipeline), "__call__", spy)


def expected_guidance(entry: ModelEntry, cfg: float, negative: str | None) -> dict[str, Any]:
    """The documented cfg_scale mapping (murano.catalog.families) for one image."""
    mode = entry.family_info.cfg_mode
    if entry.family == "qwen-image":
        return {"true_cfg_scale": cfg, "negative_prompt": [negative or " "]}
    if mode == "true_cfg":
        extra = {"true_cfg_scale": cfg, "negative_prompt": [negative]} if negative else {}
        return {"guidance_scale": cfg, **extra}
    if mode == "distilled":
        return {"guidance_scale": cfg}
    return {"guidance_scale": cfg, **({"negative_prompt": [negative]} if negative else {})}


@pytest.mark.parametrize("negative", [None, "blurry"])
def test_cfg_and_negative_prompt_reach_the_pipeline(
    render: Renderer,
    entry: ModelEntry,
    monkeypatch: pytest.MonkeyPatch,
    negative: str | None,
) -> None:
    if negative and not entry.family_info.negative_prompt:
        pytest.skip("the family takes no negative prompt (refused by the catalog)")
    spy = CallSpy(monkeypatch, render.backend.pipeline)
    render.fresh(params(entry, prompt=CAT, seed=1, cfg_scale=4.0, negative_prompt=negative))
    (call,) = spy.calls
    for name, value in expected_guidance(entry, 4.0, negative).items():
        assert call[name] == value, name
    if negative is None and entry.family != "qwen-image":
        assert "negative_prompt" not in call
    assert (call["width"], call["height"], call["num_inference_steps"]) == (64, 64, 2)
    if entry.family_info.max_sequence_length is not None:
        assert call["max_sequence_length"] == entry.family_info.max_sequence_length
