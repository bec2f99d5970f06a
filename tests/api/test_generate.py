"""`POST /api/v1/image/generate` through HTTP against the app on a fake backend."""

from __future__ import annotations

import base64
import gzip
import io
from typing import Any

import brotli
import httpx
import pytest
from PIL import Image

from tests.conftest import AUTH, FakeEngineParts

URL = "/api/v1/image/generate"
MAGIC = {"webp": b"RIFF", "png": b"\x89PNG", "jpeg": b"\xff\xd8\xff"}


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "test-model",
        "prompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        **fields,
    }


async def generate(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post(URL, json=body(**fields), headers=AUTH)


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_json_response_has_venice_shape(client: httpx.AsyncClient) -> None:
    response = await generate(client, seed=42)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"id", "images", "timing", "request"}
    assert data["id"].startswith("generate-image-")
    assert set(data["timing"]) == {
        "inferenceDuration",
        "inferencePreprocessingTime",
        "inferenceQueueTime",
        "total",
    }
    assert all(isinstance(v, int | float) and v >= 0 for v in data["timing"].values())
    assert data["timing"]["total"] >= data["timing"]["inferenceDuration"]
    echo = data["request"]
    assert echo["success"] is True
    assert echo["data"] == {
        "model": "test-model",
        "prompt": "a lighthouse at dusk",
        "width": 64,
        "height": 64,
        "steps": 4,
        "cfg_scale": 7.5,
        "seed": 42,
        "variants": 1,
        "format": "webp",
        "return_binary": False,
        "embed_exif_metadata": False,
        "hide_watermark": False,
        "safe_mode": True,
    }
    image = decode(data["images"][0])
    assert image.format == "WEBP" and image.size == (64, 64)


async def test_headers_on_a_generation(client: httpx.AsyncClient) -> None:
    response = await generate(client)
    headers = response.headers
    assert headers["x-venice-model-id"] == "test-model"
    assert headers["x-venice-model-name"] == "Test test-model"
    assert headers["x-venice-is-blurred"] == "false"
    assert headers["x-venice-is-content-violation"] == "false"
    assert headers["cf-ray"] and headers["x-request-id"] == headers["cf-ray"]
    # No classifier is configured in this app: safe mode could not be honoured.
    assert headers["x-murano-safety-checked"] == "false"


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
async def test_format_is_really_encoded(client: httpx.AsyncClient, fmt: str) -> None:
    response = await generate(client, format=fmt, width=96, height=64)
    raw = base64.b64decode(response.json()["images"][0])
    assert raw.startswith(MAGIC[fmt])
    assert Image.open(io.BytesIO(raw)).size == (96, 64)


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
async def test_return_binary(client: httpx.AsyncClient, fmt: str) -> None:
    response = await generate(client, format=fmt, return_binary=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"image/{fmt}"
    assert response.content.startswith(MAGIC[fmt])
    assert response.headers["x-venice-model-id"] == "test-model"


async def test_same_seed_same_image(client: httpx.AsyncClient) -> None:
    first = await generate(client, seed=7, format="png")
    second = await generate(client, seed=7, format="png")
    other = await generate(client, seed=8, format="png")
    assert first.json()["images"] == second.json()["images"]
    assert first.json()["images"] != other.json()["images"]


async def test_seed_zero_or_absent_picks_a_random_seed(client: httpx.AsyncClient) -> None:
    seeds = set()
    for fields in ({"seed": 0}, {}, {}):
        response = await generate(client, **fields)
        seed = response.json()["request"]["data"]["seed"]
        assert isinstance(seed, int) and seed != 0
        seeds.add(seed)
    assert len(seeds) == 3


async def test_variants_are_one_batch_with_consecutive_seeds(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await generate(client, variants=3, seed=100, format="png")
    images = response.json()["images"]
    assert len(images) == 3 and len(set(images)) == 3
    batches = parts.backends["test-model"].batches
    assert len(batches) == 1 and batches[0][0].images == 3
    for i in range(3):
        single = await generate(client, seed=100 + i, format="png")
        assert single.json()["images"][0] == images[i]


async def test_cfg_steps_negative_reach_the_pipeline(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    await generate(client, cfg_scale=3.5, steps=12, negative_prompt="fog")
    params = parts.backends["test-model"].batches[-1][0]
    assert (params.cfg_scale, params.steps, params.negative_prompt) == (3.5, 12, "fog")


async def test_style_preset_applies_templates(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await generate(client, style_preset="Watercolor", negative_prompt="fog")
    assert response.status_code == 200
    params = parts.backends["test-model"].batches[-1][0]
    assert params.prompt.startswith("a lighthouse at dusk, watercolour painting")
    assert params.negative_prompt is not None and params.negative_prompt.startswith("fog, ")
    assert response.json()["request"]["data"]["style_preset"] == "Watercolor"


async def test_ignored_field_is_accepted(client: httpx.AsyncClient) -> None:
    response = await generate(
        client,
        disable_prompt_optimization_thinking=True,
        enable_web_search=False,
        enhance_prompt=False,
        lora_strength=50,
    )
    assert response.status_code == 200


async def test_aspect_ratio_model_sizing(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL,
        json={"model": "ratio-model", "prompt": "x", "aspect_ratio": "16:9", "format": "png"},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    data = response.json()
    assert decode(data["images"][0]).size == (1360, 768)
    assert data["request"]["data"]["resolution"] == "1K"


@pytest.mark.parametrize("encoding", ["gzip", "br"])
async def test_json_is_compressed_when_asked(client: httpx.AsyncClient, encoding: str) -> None:
    headers = {**AUTH, "Accept-Encoding": encoding}
    response = await client.post(URL, json=body(), headers=headers)
    assert response.headers["content-encoding"] == encoding
    assert response.json()["images"]  # httpx decodes it
    raw = await _raw_body(client, headers)
    unpack = gzip.decompress if encoding == "gzip" else brotli.decompress
    assert unpack(raw).startswith(b"{")


async def _raw_body(client: httpx.AsyncClient, headers: dict[str, str]) -> bytes:
    async with client.stream("POST", URL, json=body(), headers=headers) as response:
        return b"".join([chunk async for chunk in response.aiter_raw()])


async def test_binary_is_never_compressed(client: httpx.AsyncClient) -> None:
    headers = {**AUTH, "Accept-Encoding": "gzip, br"}
    response = await client.post(URL, json=body(return_binary=True), headers=headers)
    assert "content-encoding" not in response.headers
    assert response.content.startswith(b"RIFF")
