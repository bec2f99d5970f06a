"""The real server in a subprocess on the embedded tiny model, driven by the official `openai`
client and by plain HTTP with the request bodies of the seeds (`shared/reference/seeds/`),
the model id swapped for murano's default."""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.live_server import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "e2e-key-abcdef"
MODEL = "murano-tiny"

# Request bodies as the seeds show them (000: the skill's curl; 001/002: the API reference's
# curl examples; 004: the OpenAI-compatible endpoint's example).
SEED_000 = {
    "model": "z-image-turbo",
    "prompt": "A beautiful sunset over a mountain range",
    "width": 1024,
    "height": 1024,
    "cfg_scale": 7.5,
    "steps": 8,
    "seed": 123456789,
    "variants": 1,
    "format": "webp",
    "style_preset": "3D Model",
    "safe_mode": True,
}
SEED_001 = {
    "cfg_scale": 7.5,
    "embed_exif_metadata": False,
    "format": "webp",
    "height": 1024,
    "hide_watermark": False,
    "inpaint": "<any>",
    "lora_strength": 50,
    "model": "hidream",
    "negative_prompt": "Clouds, Rain, Snow",
    "prompt": "A beautiful sunset over a mountain range",
    "return_binary": False,
    "variants": 3,
    "safe_mode": False,
    "seed": 123456789,
    "steps": 20,
    "style_preset": "3D Model",
    "width": 1024,
}
SEED_002 = {
    "model": "grok-imagine-image",
    "prompt": "A beautiful sunset over a mountain range",
    "cfg_scale": 7.5,
    "embed_exif_metadata": False,
    "format": "webp",
    "height": 1024,
    "hide_watermark": False,
    "inpaint": "<unknown>",
    "lora_strength": 50,
    "negative_prompt": "Clouds, Rain, Snow",
    "return_binary": False,
    "variants": 3,
    "safe_mode": False,
    "seed": 123456789,
    "steps": 8,
    "style_preset": "3D Model",
    "aspect_ratio": "1:1",
    "resolution": "1K",
    "quality": "high",
    "enable_web_search": False,
    "width": 1024,
}
SEED_004 = {
    "prompt": "A beautiful sunset over mountain ranges",
    "background": "auto",
    "model": "grok-imagine-image",
    "moderation": "auto",
    "n": 1,
    "output_compression": 100,
    "output_format": "png",
    "quality": "auto",
    "response_format": "b64_json",
    "size": "1024x1024",
    "style": "natural",
    "user": "user123",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"MURANO_API_KEYS": KEY, "MURANO_ACCOUNTS_BACKEND": "static"}
    with live_server(tmp_path_factory.mktemp("e2e"), env=env) as running:
        yield running.url


def _post(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{base}/api/v1{path}",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=120,
    )


def _image(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_openai_client_b64(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY)
    result = client.images.generate(model=MODEL, prompt="a red boat", size="256x256")
    assert result.data is not None and result.data[0].b64_json
    image = _image(result.data[0].b64_json)
    assert image.format == "PNG" and image.size == (256, 256)


def test_openai_client_url_and_unknown_model(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY)
    result = client.images.generate(
        model="dall-e-3", prompt="a red boat", size="512x512", response_format="url"
    )
    assert result.data is not None and result.data[0].url
    assert result.data[0].url.startswith("data:image/png;base64,")


def test_openai_client_wrong_key(server: str) -> None:
    client = openai.OpenAI(base_url=f"{server}/api/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.images.generate(model=MODEL, prompt="x", size="256x256")


def test_seed_000_skill_curl(server: str) -> None:
    response = _post(server, "/image/generate", {**SEED_000, "model": MODEL})
    assert response.status_code == 200, response.text
    data = response.json()
    image = _image(data["images"][0])
    assert image.format == "WEBP" and image.size == (1024, 1024)
    assert data["request"]["data"]["seed"] == 123456789


def test_seed_001_without_the_placeholder_inpaint(server: str) -> None:
    as_documented = _post(server, "/image/generate", {**SEED_001, "model": MODEL})
    assert as_documented.status_code == 400  # `inpaint` is deprecated: Venice refuses it
    assert "inpaint" in as_documented.json()["details"]
    body = {k: v for k, v in SEED_001.items() if k != "inpaint"}
    response = _post(server, "/image/generate", {**body, "model": MODEL})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 3


def test_seed_002_fields_our_model_cannot_honour(server: str) -> None:
    body = {k: v for k, v in SEED_002.items() if k != "inpaint"}
    refused = _post(server, "/image/generate", {**body, "model": MODEL})
    assert refused.status_code == 400
    body = {k: v for k, v in body.items() if k not in {"aspect_ratio", "resolution", "quality"}}
    response = _post(server, "/image/generate", {**body, "model": MODEL})
    assert response.status_code == 200, response.text
    assert len(response.json()["images"]) == 3


def test_seed_004_openai_body(server: str) -> None:
    response = _post(server, "/images/generations", SEED_004)
    assert response.status_code == 200, response.text
    image = _image(response.json()["data"][0]["b64_json"])
    assert image.format == "PNG" and image.size == (1024, 1024)


def test_binary_and_styles_and_models(server: str) -> None:
    response = _post(
        server,
        "/image/generate",
        {"model": MODEL, "prompt": "x", "return_binary": True, "format": "jpeg"},
    )
    assert response.headers["content-type"] == "image/jpeg"
    assert len(httpx.get(f"{server}/api/v1/image/styles").json()["data"]) == 76
    models = httpx.get(f"{server}/api/v1/models", params={"type": "image"}).json()
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert "random weights" in models["data"][0]["model_spec"]["name"]


def test_healthz_answers_while_a_generation_runs(server: str) -> None:
    finished = threading.Event()

    def long_generation() -> None:
        _post(
            server, "/image/generate", {"model": MODEL, "prompt": "x", "variants": 4, "steps": 20}
        )
        finished.set()

    thread = threading.Thread(target=long_generation)
    thread.start()
    time.sleep(0.3)
    health = httpx.get(f"{server}/healthz", timeout=10)
    answered_first = not finished.is_set()
    thread.join(timeout=120)
    assert health.status_code == 200
    assert answered_first
