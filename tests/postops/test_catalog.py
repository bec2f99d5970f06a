"""Upscalers and background removers in models files, the example catalog and the CLI; the
engine's resident places; the creativity pass on the image model's own weights."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.catalog.build import build_catalog
from murano.catalog.entries import Catalog
from murano.catalog.postops import build_postop_entry
from murano.cli import main
from murano.engine.engine import Engine, LoadState
from murano.engine.upscale import creativity_refiner, load_upscale_backend
from tests.conftest import AUTH
from tests.edit.images import encoded
from tests.postops.conftest import (
    UPSCALER,
    Parts,
    image_entry,
    postop_catalog,
    postop_entry,
    serving,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "venice-models.toml"


def test_the_example_catalog_has_venices_upscaler_and_background_remover() -> None:
    catalog = build_catalog(EXAMPLE, [])
    (upscaler,) = catalog.of_type("upscale")
    (remover,) = catalog.of_type("background-remove")
    assert (upscaler.id, upscaler.family, upscaler.revision) == ("upscaler", "swin2sr", "refs/pr/1")
    assert (remover.id, remover.family, remover.weight_name) == (
        "bria-bg-remover",
        "onnx",
        "onnx/model.onnx",
    )
    pricing = upscaler.model_spec.pricing
    assert (pricing.unit_price("2x"), pricing.unit_price("4x")) == (
        Decimal("0.02"),
        Decimal("0.08"),
    )
    assert remover.model_spec.pricing.unit_price(None) == Decimal("0.03")
    assert catalog.default_id == "z-image-turbo"


def test_models_file_entries_and_detected_families(tmp_path: Path) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        """
[[models]]
id = "gen"
source = "/m/gen"
family = "sd"

[[models]]
id = "esrgan"
type = "upscale"
source = "/m/4x-UltraSharp.pth"

[[models]]
id = "swin"
type = "upscale"
source = "/m/swin2sr-folder"
options = { tile = 256, creativity_model = "gen" }

[[models]]
id = "cutout"
type = "background-remove"
source = "/m/rmbg"
"""
    )
    catalog = build_catalog(models, [])
    families = {entry.id: (entry.type, entry.family) for entry in catalog}
    assert families == {
        "gen": ("image", "sd"),
        "esrgan": ("upscale", "spandrel"),
        "swin": ("upscale", "swin2sr"),
        "cutout": ("background-remove", "onnx"),
    }
    assert catalog.default_id == "gen"
    assert catalog.get("esrgan").model_spec.pricing.unit_price("4x") == Decimal("0.08")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ('type = "upscale"\nfamily = "onnx"', "family is one of swin2sr, spandrel"),
        ('type = "upscale"\noptions = { tile = 8 }', "tile"),
        ('type = "upscale"\noptions = { colour = 1 }', "colour"),
        ('type = "background-remove"\noptions = { activation = "tanh" }', "activation"),
        ('type = "upscale"\noptions = { creativity_model = "nope" }', "creativity_model"),
    ],
)
def test_bad_entries_are_refused_at_start(tmp_path: Path, lines: str, message: str) -> None:
    models = tmp_path / "models.toml"
    models.write_text(
        '[[models]]\nid = "gen"\nsource = "/m/gen"\nfamily = "sd"\n\n'
        f'[[models]]\nid = "post"\nsource = "/m/post"\n{lines}\n'
    )
    with pytest.raises(ValueError, match=message):
        build_catalog(models, [])


def test_a_catalog_needs_an_image_model() -> None:
    with pytest.raises(ValueError, match="no image model"):
        Catalog([postop_entry("u", "upscale")])
    with pytest.raises(ValueError, match="not an image model"):
        Catalog([image_entry(), postop_entry("u", "upscale")], "u")


@pytest.mark.parametrize("family", ["swin2sr", "spandrel", "onnx"])
def test_cli_builds_the_tiny_post_op_models(
    tmp_path: Path, family: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / family
    assert main(["models", "tiny", "--family", family, "--out", str(out)]) == 0
    assert f"tiny {family} model written to {out}" in capsys.readouterr().out
    kind = "background-remove" if family == "onnx" else "upscale"
    raw: dict[str, Any] = {"id": "m", "type": kind, "source": str(out)}
    if family == "spandrel":
        raw["weight_name"] = "model.safetensors"
    assert build_postop_entry(raw).family == family


async def test_post_op_models_take_no_resident_place(parts: Parts) -> None:
    engine = Engine(postop_catalog(), parts.factory, max_resident=1)
    parts.engine = engine
    await engine.ensure_loaded("test-model")
    await engine.ensure_loaded(UPSCALER)
    assert engine.status("test-model").state is LoadState.RESIDENT
    assert engine.status(UPSCALER).state is LoadState.RESIDENT
    await engine.close()


async def test_creativity_runs_img2img_on_the_image_model(
    tmp_path: Path, parts: Parts, tiny_models: dict[str, Path]
) -> None:
    """The real tiny upscaler, then the image model's image-to-image at creativity × 10."""

    def real_upscaler(entry: Any, engine: Engine) -> Any:
        entry = entry.model_copy(update={"source": str(tiny_models["swin2sr"])})
        image_model = engine.catalog.get("test-model")
        refiner = creativity_refiner(image_model, lambda: engine.status("test-model").backend)
        return load_upscale_backend(entry, "cpu", refiner)

    parts.real[UPSCALER] = real_upscaler
    image = base64.b64encode(encoded(260, 256)).decode()
    async with serving(tmp_path, parts) as client:
        body = {"image": image, "creativity": 0.02}
        response = await client.post("/api/v1/image/upscale", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        plain = await client.post(
            "/api/v1/image/upscale", json={"image": image, "creativity": 0}, headers=AUTH
        )
        assert plain.status_code == 200
    (batch,) = parts.image().batches  # the second request made no image-model call
    (job,) = batch
    assert (job.task, job.strength, job.prompt) == ("img2img", pytest.approx(0.2), "")
    assert (job.width, job.height) == (520, 512)  # divisible by the model's 8
    assert job.steps * job.strength >= 1  # at least one denoising step
    assert job.init_images[0].size == (520, 512)


async def test_creativity_off_in_the_entry(tmp_path: Path, parts: Parts) -> None:
    catalog = postop_catalog(options={"creativity": False})
    async with serving(tmp_path, parts, catalog=catalog) as client:
        image = base64.b64encode(encoded()).decode()
        response = await client.post(
            "/api/v1/image/upscale", json={"image": image, "creativity": 0.02}, headers=AUTH
        )
        assert response.status_code == 200
    assert parts.fake(UPSCALER).batches[0][0].strength is None


async def test_models_listing_survives_post_ops(client: httpx.AsyncClient) -> None:
    for kind in ("image", "upscale", "inpaint", "all"):
        assert (await client.get(f"/api/v1/models?type={kind}")).status_code == 200
    traits = (await client.get("/api/v1/models/traits?type=image")).json()["data"]
    assert traits == {"default": "test-model"}
