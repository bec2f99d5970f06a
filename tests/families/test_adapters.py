"""The family table and the adapters as plain functions (no pipeline runs): every family
has an adapter, its defaults reach requests, the cfg_scale mapping per family, the batch
key, and HiDream's exact-size rule over every size the catalog lets through."""

from __future__ import annotations

import dataclasses
import math

import pytest

from murano.catalog.check import MAX_SIDE
from murano.catalog.entries import build_entry
from murano.catalog.families import FAMILIES
from murano.engine.families import ADAPTERS, adapter_for
from murano.engine.families.hidream import sample_size_for
from murano.engine.tiny import PIPELINE_CLASSES
from murano.errors import InvalidRequest
from tests.conftest import generation_params
from tests.families.conftest import params, tiny_entry

BASE = generation_params(model_id="m", prompt="a cat", steps=2, cfg_scale=4.0)


def test_every_family_has_an_adapter_for_its_pipeline() -> None:
    assert set(ADAPTERS) == set(FAMILIES)
    for name, family in FAMILIES.items():
        assert adapter_for(name).pipeline_class in family.pipeline_classes
        if name in PIPELINE_CLASSES:  # the tiny builder's class for the family
            assert adapter_for(name).pipeline_class == PIPELINE_CLASSES[name]
    with pytest.raises(ValueError, match="no adapter for family 'wan'"):
        adapter_for("wan")


@pytest.mark.parametrize("name", [name for name, f in FAMILIES.items() if f.generates])
def test_family_defaults_reach_a_request(name: str) -> None:
    family = FAMILIES[name]
    entry = tiny_entry(name, "/models/x")
    p = params(entry, steps=None, cfg_scale=None, width=None, height=None)
    assert (p.steps, p.cfg_scale) == (family.default_steps, family.default_cfg)
    assert (p.width, p.height) == (1024, 1024)
    with pytest.raises(InvalidRequest, match=f"at most {family.max_steps}") as caught:
        params(entry, steps=family.max_steps + 1)
    assert caught.value.field == "steps"


def test_fixed_step_models_keep_their_venice_steps() -> None:
    turbo = tiny_entry(
        "z-image", "/models/z", model_spec={"constraints": {"steps": {"default": 8, "max": 8}}}
    )
    assert params(turbo, steps=None).steps == 8
    assert params(turbo, steps=None).cfg_scale == 0.0  # Turbo: no CFG
    with pytest.raises(InvalidRequest, match="at most 8"):
        params(turbo, steps=9)


def test_an_entry_divisor_off_the_family_divisor_is_refused() -> None:
    spec = {"constraints": {"widthHeightDivisor": 8}}
    with pytest.raises(ValueError, match="widthHeightDivisor 8 is not a multiple of 16"):
        build_entry({"id": "q", "source": "x", "model_spec": spec}, family="qwen-image")
    spec = {"constraints": {"widthHeightDivisor": 32}}
    entry = build_entry({"id": "q", "source": "x", "model_spec": spec}, family="qwen-image")
    assert entry.constraints.widthHeightDivisor == 32


def test_flux_true_cfg_needs_a_negative_prompt_and_cfg_above_one() -> None:
    flux = adapter_for("flux")
    assert flux.guidance(3.5, [""]) == {"guidance_scale": 3.5}
    assert flux.guidance(1.0, ["blurry"]) == {"guidance_scale": 1.0}
    assert flux.guidance(3.5, ["blurry"]) == {
        "guidance_scale": 3.5,
        "true_cfg_scale": 3.5,
        "negative_prompt": ["blurry"],
    }


def test_flux2_refuses_a_negative_prompt_the_catalog_let_through() -> None:
    with pytest.raises(ValueError, match="flux2 family takes no negative prompt"):
        adapter_for("flux2").guidance(4.0, ["blurry"])


def test_qwen_image_cfg_is_on_above_one_with_a_blank_negative() -> None:
    qwen = adapter_for("qwen-image")
    assert qwen.guidance(1.0, ["blurry"]) == {"true_cfg_scale": 1.0}
    assert qwen.guidance(4.0, ["", "blurry"]) == {
        "true_cfg_scale": 4.0,
        "negative_prompt": [" ", "blurry"],
    }


@pytest.mark.parametrize(
    "change",
    [
        {"width": 128},
        {"height": 128},
        {"steps": 3},
        {"cfg_scale": 5.0},
        {"lora_strength": 80},
        {"negative_prompt": "blurry"},
    ],
)
@pytest.mark.parametrize("name", FAMILIES)
def test_batch_key_splits_on_what_a_call_takes_once(name: str, change: dict[str, object]) -> None:
    adapter = adapter_for(name)
    other = dataclasses.replace(BASE, **change)  # type: ignore[arg-type]
    assert adapter.batch_key(other) != adapter.batch_key(BASE)
    same_call = dataclasses.replace(BASE, prompt="a dog", seed=9, images=3)
    assert adapter.batch_key(same_call) == adapter.batch_key(BASE)


def hidream_size(width: int, height: int, sample: float, factor: int) -> tuple[int, int]:
    """HiDreamImagePipeline.__call__'s sizing, as diffusers 0.42 writes it."""
    division = factor * 2
    s_max = (sample * factor) ** 2
    scale = math.sqrt(s_max / (width * height))
    return int(width * scale // division * division), int(height * scale // division * division)


def test_hidream_keeps_every_size_the_catalog_allows() -> None:
    sides = range(16, MAX_SIDE + 1, 16)
    for width in sides:
        for height in sides:
            sample = sample_size_for(width, height, 8)
            assert hidream_size(width, height, sample, 8) == (width, height)
    # Without the fix the pipeline rescales to its 1024² default area.
    assert hidream_size(128, 64, 128, 8) != (128, 64)
