"""A fresh machine with no models file: the app builds the embedded tiny upscaler and
background remover next to `murano-tiny` on first start and both endpoints answer, the
upscaler's creativity pass running on murano-tiny's own image-to-image pipeline."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from murano.app import create_app
from murano.engine.tiny import TINY_BACKGROUND_REMOVER_ID, TINY_UPSCALER_ID
from tests.conftest import AUTH, make_settings
from tests.edit.images import encoded

pytestmark = pytest.mark.slow

IMAGE = base64.b64encode(encoded(256, 256)).decode()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fresh")


@pytest.fixture
async def client(data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(data_dir, max_resident_models=1))
    async with app.router.lifespan_context(app):
        engine = app.state.engine
        for model_id in (engine.catalog.default_id, TINY_UPSCALER_ID, TINY_BACKGROUND_REMOVER_ID):
            await engine.ensure_loaded(model_id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://murano.test") as c:
            yield c


def png(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


async def test_the_embedded_models_are_listed(client: httpx.AsyncClient, data_dir: Path) -> None:
    upscalers = (await client.get("/api/v1/models?type=upscale")).json()["data"]
    assert [m["id"] for m in upscalers] == [TINY_UPSCALER_ID]
    assert "random weights" in upscalers[0]["model_spec"]["name"]
    assert (data_dir / "models" / TINY_UPSCALER_ID / "model.safetensors").is_file()
    assert (data_dir / "models" / TINY_BACKGROUND_REMOVER_ID / "model.onnx").is_file()


async def test_upscale_out_of_the_box(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/image/upscale", json={"image": IMAGE, "creativity": 0}, headers=AUTH
    )
    assert png(response).size == (512, 512)
    assert response.headers["x-venice-model-id"] == TINY_UPSCALER_ID


async def test_upscale_with_creativity_uses_murano_tiny(client: httpx.AsyncClient) -> None:
    files = {"image": ("in.png", encoded(256, 256), "image/png")}
    response = await client.post(
        "/api/v1/image/upscale", files=files, data={"creativity": "0.02"}, headers=AUTH
    )
    assert png(response).size == (512, 512)


async def test_background_removal_out_of_the_box(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/image/background-remove", json={"image": IMAGE}, headers=AUTH
    )
    image = png(response)
    assert image.mode == "RGBA" and image.size == (256, 256)
    assert response.headers["x-venice-model-id"] == TINY_BACKGROUND_REMOVER_ID


async def test_generation_still_works_beside_them(client: httpx.AsyncClient) -> None:
    body = {"model": "murano-tiny", "prompt": "a boat", "width": 64, "height": 64}
    response = await client.post("/api/v1/image/generate", json=body, headers=AUTH)
    assert response.status_code == 200
