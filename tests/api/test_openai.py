"""`POST /api/v1/images/generations`, the OpenAI-compatible endpoint."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import AUTH, FakeEngineParts

URL = "/api/v1/images/generations"


async def post(client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    return await client.post(URL, json={"prompt": "a lighthouse", **fields}, headers=AUTH)


async def test_defaults_give_a_1024_png(client: httpx.AsyncClient) -> None:
    response = await post(client)
    assert response.status_code == 200, response.text
    data = response.json()
    assert set(data) == {"created", "data"} and isinstance(data["created"], int)
    raw = base64.b64decode(data["data"][0]["b64_json"])
    image = Image.open(io.BytesIO(raw))
    assert image.format == "PNG" and image.size == (1024, 1024)


async def test_url_is_a_data_url(client: httpx.AsyncClient) -> None:
    response = await post(client, response_format="url", output_format="webp", size="256x256")
    url = response.json()["data"][0]["url"]
    assert url.startswith("data:image/webp;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert image.size == (256, 256)


@pytest.mark.parametrize(
    ("size", "expected"), [("512x512", (512, 512)), ("1792x1024", (1792, 1024))]
)
async def test_sizes(client: httpx.AsyncClient, size: str, expected: tuple[int, int]) -> None:
    response = await post(client, size=size)
    raw = base64.b64decode(response.json()["data"][0]["b64_json"])
    assert Image.open(io.BytesIO(raw)).size == expected


async def test_unknown_model_falls_back_to_the_default(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await post(client, model="dall-e-3", size="256x256")
    assert response.status_code == 200
    assert response.headers["x-venice-model-id"] == "test-model"


async def test_ignored_fields_are_validated_and_accepted(client: httpx.AsyncClient) -> None:
    response = await post(
        client,
        size="256x256",
        background="auto",
        quality="hd",
        style="vivid",
        output_compression=50,
        user="u1",
        moderation="low",
        n=1,
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"safe_mode": False}, "_errors"),
        ({"n": 2}, "n"),
        ({"size": "100x100"}, "size"),
        ({"quality": "ultra"}, "quality"),
        ({"moderation": "off"}, "moderation"),
        ({"response_format": "file"}, "response_format"),
        ({"output_compression": 101}, "output_compression"),
        ({"prompt": "x" * 1501}, "prompt"),
    ],
)
async def test_bad_fields(client: httpx.AsyncClient, fields: dict[str, Any], field: str) -> None:
    response = await post(client, **fields)
    assert response.status_code == 400
    assert field in response.json()["details"]


async def test_safe_mode_key_is_unrecognized(client: httpx.AsyncClient) -> None:
    response = await post(client, safe_mode=True)
    assert response.json()["details"]["_errors"] == ["Unrecognized key(s) in object: 'safe_mode'"]
