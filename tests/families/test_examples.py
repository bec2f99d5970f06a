"""`examples/venice-models.toml` read by the real catalog code: every entry valid, with its
family given (so nothing is downloaded), and Venice's ids, constraints, prices and traits."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from murano.catalog.build import build_catalog
from murano.catalog.entries import Catalog, load_models_file
from murano.catalog.families import FAMILIES
from murano.engine.families import adapter_for
from murano.engine.lora import effective_strength
from tests.families.conftest import params

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "venice-models.toml"

# Venice's constraints from its captured /models (steps default/max, prompt limit).
VENICE = {
    "z-image-turbo": ((8, 8), 7500),
    "venice-sd35": ((25, 30), 1500),
    "qwen-image": ((8, 8), 1500),
    "chroma": ((10, 10), 7500),
    "hidream": ((20, 50), 1500),
    "lustify-sdxl": ((20, 50), 1500),
    "wai-Illustrious": ((25, 30), 1500),
    "flux-dev": ((25, 30), 2048),
}


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return build_catalog(EXAMPLE, [])


def test_every_entry_names_its_family() -> None:
    raws, default = load_models_file(EXAMPLE)
    assert default == "z-image-turbo"
    assert all(raw.get("family") in FAMILIES for raw in raws if "upstream" not in raw)


def test_venice_ids_and_families(catalog: Catalog) -> None:
    families = {entry.id: entry.family for entry in catalog if entry.upstream is None}
    assert families == {
        "z-image-turbo": "z-image",
        "venice-sd35": "sd3",
        "qwen-image": "qwen-image",
        "chroma": "chroma",
        "hidream": "hidream",
        "lustify-sdxl": "sdxl",
        "wai-Illustrious": "sdxl",
        "flux-dev": "flux",
        "flux-schnell": "flux",
        "flux-krea-dev": "flux",
        "flux-2-dev": "flux2",
    }
    for entry in catalog:
        if entry.upstream is None:  # Venice's proprietary ids: tests/gateway/test_catalog.py
            adapter_for(entry.family)


def test_default_and_traits_are_venices(catalog: Catalog) -> None:
    assert catalog.default_id == "z-image-turbo"
    assert catalog.traits() == {
        "default": "z-image-turbo",
        "fastest": "z-image-turbo",
        "eliza-default": "venice-sd35",
        "highest_quality": "qwen-image",
    }
    assert [e.id for e in catalog if e.load == "start" and e.upstream is None] == ["z-image-turbo"]


@pytest.mark.parametrize("model_id", VENICE)
def test_venice_constraints(catalog: Catalog, model_id: str) -> None:
    steps, limit = VENICE[model_id]
    constraints = catalog.get(model_id).constraints
    assert (constraints.steps.default, constraints.steps.max) == steps
    assert constraints.promptCharacterLimit == limit


def test_prices(catalog: Catalog) -> None:
    prices = {entry.id: entry.model_spec.pricing.unit_price(None) for entry in catalog}
    assert prices["qwen-image"] == prices["flux-2-dev"] == Decimal("0.03")
    assert prices["z-image-turbo"] == prices["chroma"] == Decimal("0.01")


def test_single_file_fine_tunes_carry_their_config(catalog: Catalog) -> None:
    for model_id in ("lustify-sdxl", "wai-Illustrious"):
        entry = catalog.get(model_id)
        assert entry.source.endswith(".safetensors")
        assert entry.config == "stabilityai/stable-diffusion-xl-base-1.0"


def test_requests_get_the_model_defaults(catalog: Catalog) -> None:
    defaults = {"steps": None, "cfg_scale": None, "width": 1024, "height": 1024}
    turbo = params(catalog.get("z-image-turbo"), **defaults)
    assert (turbo.steps, turbo.cfg_scale) == (8, 0.0)
    qwen = catalog.get("qwen-image")
    assert params(qwen, **defaults).cfg_scale == 1.0
    assert params(catalog.get("wai-Illustrious"), **defaults).cfg_scale == 6.0
    # Its only LoRA is the fused Lightning one: lora_strength has nothing to scale.
    assert effective_strength(qwen, 100) is None
    flux2 = params(catalog.get("flux-2-dev"), width=None, height=None, aspect_ratio="16:9")
    assert (flux2.width, flux2.height) == (1360, 768)
    hidream = catalog.get("hidream")
    assert sorted(hidream.components) == ["text_encoder_4", "tokenizer_4"]
    assert hidream.cpu_offload
