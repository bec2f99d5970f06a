"""Upstream model entries in a models file, read by the real catalog code, and the entries
for Venice's proprietary models in `examples/venice-models.toml`."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from murano.catalog.build import build_catalog
from murano.catalog.check import check
from murano.catalog.entries import Catalog

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "venice-models.toml"

# Venice's proprietary image models: name and USD price (flat, or per resolution tier), from
# Venice's static model list (shared/reference/venice-image-models.json). bria-bg-remover is
# left out: Venice serves it only at /image/background-remove.
PROPRIETARY: dict[str, tuple[str, str | dict[str, str]]] = {
    "flux-2-max": ("Flux 2 Max", "0.09"),
    "flux-2-pro": ("Flux 2 Pro", "0.03"),
    "gpt-image-1-5": ("GPT Image 1.5", "0.26"),
    "gpt-image-2": ("GPT Image 2", {"1K": "0.27", "2K": "0.51", "4K": "0.84"}),
    "grok-imagine-image": ("Grok Imagine", {"1K": "0.03", "2K": "0.04"}),
    "grok-imagine-image-2-0": ("Grok Imagine 2.0", {"1K": "0.07", "2K": "0.1"}),
    "grok-imagine-image-quality": (
        "Grok Imagine High Quality (SOTA)",
        {"1K": "0.06", "2K": "0.09"},
    ),
    "hunyuan-image-v3": ("Hunyuan Image 3.0", "0.09"),
    "ideogram-v4": ("Ideogram V4", "0.06"),
    "imagineart-1.5-pro": ("ImagineArt 1.5 Pro", "0.06"),
    "krea-2-turbo": ("Krea 2 Turbo", {"1K": "0.04", "2K": "0.06"}),
    "krea-v2-large": ("Krea v2 Large", "0.07"),
    "krea-v2-medium": ("Krea v2 Medium", "0.04"),
    "luma-uni-1": ("Luma Uni-1", "0.05"),
    "luma-uni-1-max": ("Luma Uni-1 Max", "0.12"),
    "nano-banana-2": ("Nano Banana 2", {"1K": "0.1", "2K": "0.14", "4K": "0.19"}),
    "nano-banana-2-lite": ("Nano Banana 2 Lite", "0.06"),
    "nano-banana-pro": ("Nano Banana Pro", {"1K": "0.18", "2K": "0.23", "4K": "0.35"}),
    "qwen-image-2": ("Qwen Image 2", "0.05"),
    "qwen-image-2-pro": ("Qwen Image 2 Pro", "0.1"),
    "qwen-image-3": ("Qwen Image 3", {"1K": "0.04", "2K": "0.04"}),
    "qwen-image-3-pro": ("Qwen Image 3 Pro", {"1K": "0.05", "2K": "0.09"}),
    "recraft-v4": ("Recraft V4", "0.05"),
    "recraft-v4-pro": ("Recraft V4 Pro", "0.29"),
    "seedream-v4": ("Seedream V4.5", "0.05"),
    "seedream-v5-lite": ("Seedream V5 Lite", "0.05"),
    "seedream-v5-pro": ("Seedream V5 Pro", {"1K": "0.06", "2K": "0.11"}),
    "wan-2-7-pro-text-to-image": ("Wan 2.7 Pro", "0.09375"),
    "wan-2-7-text-to-image": ("Wan 2.7", "0.0375"),
}

ISSUE_EXAMPLE = """
[[models]]
id = "grok-imagine-image"
[models.upstream]
kind = "venice"
base_url = "https://api.venice.ai/api/v1"
key_env = "VENICE_API_KEY"
model = "grok-imagine-image"
timeout_s = 120
[models.model_spec]
name = "Grok Imagine"
constraints = { promptCharacterLimit = 1500, widthHeightDivisor = 16, \
aspectRatios = ["1:1", "16:9", "9:16"], defaultAspectRatio = "1:1" }
pricing = { generation = { usd = 0.04, diem = 0.04 } }
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_issues_entry_loads(tmp_path: Path) -> None:
    catalog = build_catalog(write(tmp_path, ISSUE_EXAMPLE), [])
    entry = catalog.get("grok-imagine-image")
    assert entry.upstream is not None
    assert (entry.upstream.kind, entry.upstream.key_env) == ("venice", "VENICE_API_KEY")
    assert entry.family == "venice-upstream" and entry.source == ""
    assert entry.model_spec.pricing.unit_price(None) == Decimal("0.04")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('source = "owner/repo"\n', "exactly one of"),
        ('family = "sd"\n', "does not fit"),
    ],
)
def test_an_upstream_entry_names_no_weights(tmp_path: Path, extra: str, message: str) -> None:
    text = ISSUE_EXAMPLE.replace('id = "grok-imagine-image"\n', f'id = "g"\n{extra}')
    with pytest.raises(ValueError, match=message):
        build_catalog(write(tmp_path, text), [])


def test_openai_sizes_are_width_x_height(tmp_path: Path) -> None:
    text = ISSUE_EXAMPLE.replace("timeout_s = 120", 'timeout_s = 120\nsizes = ["1024"]')
    with pytest.raises(ValueError, match="sizes"):
        build_catalog(write(tmp_path, text), [])


def test_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'venice' or 'openai'"):
        build_catalog(write(tmp_path, ISSUE_EXAMPLE.replace('"venice"', '"stability"')), [])


def test_an_entry_without_source_or_upstream_is_refused(tmp_path: Path) -> None:
    text = '[[models]]\nid = "x"\nfamily = "sd"\n[models.model_spec]\nname = "X"\n'
    with pytest.raises(ValueError, match="exactly one of"):
        build_catalog(write(tmp_path, text), [])


@pytest.fixture(scope="module")
def example() -> Catalog:
    return build_catalog(EXAMPLE, [])


def test_every_proprietary_venice_model_is_routed_to_venice(example: Catalog) -> None:
    routed = {e.id for e in example if e.upstream is not None}
    assert routed == set(PROPRIETARY)
    for model_id, (name, price) in PROPRIETARY.items():
        entry = example.get(model_id)
        assert entry.upstream is not None
        assert (entry.upstream.kind, entry.upstream.key_env) == ("venice", "VENICE_API_KEY")
        assert entry.upstream.base_url == "https://api.venice.ai/api/v1"
        assert entry.model_spec.name == name
        pricing = entry.model_spec.pricing
        if isinstance(price, str):
            assert pricing.unit_price(None) == Decimal(price)
        else:
            assert {tier: pricing.unit_price(tier) for tier in price} == {
                tier: Decimal(usd) for tier, usd in price.items()
            }


def test_the_seeds_proprietary_requests_pass_the_example_catalog(example: Catalog) -> None:
    from murano.api.protocol import GenerateImageRequest

    nano = GenerateImageRequest(
        model="nano-banana-pro", prompt="p", aspect_ratio="16:9", resolution="2K"
    )
    params = check(example.get("nano-banana-pro"), nano)
    assert params.resolution == "2K"
    assert example.get("nano-banana-pro").model_spec.pricing.unit_price("2K") == Decimal("0.23")
    grok = GenerateImageRequest(model="grok-imagine-image", prompt="p", resolution="2k")
    params = check(example.get("grok-imagine-image"), grok)
    assert example.get("grok-imagine-image").model_spec.pricing.unit_price(
        params.resolution
    ) == Decimal("0.04")


def test_the_readmes_gateway_file_loads(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Venice's proprietary models, behind your own keys", 1)[1]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    catalog = build_catalog(write(tmp_path, toml), [])
    nano, gpt = catalog.get("nano-banana-pro"), catalog.get("gpt-image-1")
    assert nano.upstream is not None and gpt.upstream is not None
    assert (nano.upstream.kind, gpt.upstream.kind) == ("venice", "openai")
    assert nano.model_spec.pricing.unit_price("2K") == Decimal("0.25")
    assert gpt.family_info.negative_prompt is False
