"""`POST /image/upscale` and `POST /image/background-remove` through HTTP, JSON and
multipart: the PNG and its headers, every input rule with its status and Venice's error
shape, scale and creativity, and what reaches the engine."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import AUTH
from tests.edit.images import Route, data_url, encoded, png_claiming, served
from tests.postops.conftest import REMOVER, UPSCALER, Parts, serving

UPSCALE = "/api/v1/image/upscale"
REMOVE = "/api/v1/image/background-remove"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def opened(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


def field_error(response: httpx.Response, field: str, status: int = 400) -> str:
    """The message Venice's DetailedError gives for `field`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["details"][field]["_errors"], body
    message: str = body["details"][field]["_errors"][0]
    assert "BytesIO" not in message and "<" not in message
    return message


# -- upscale ------------------------------------------------------------------------------


async def test_upscale_json_base64_is_a_png_twice_the_size(
    client: httpx.AsyncClient, parts: Parts
) -> None:
    response = await client.post(UPSCALE, json={"image": b64(encoded(256, 320))}, headers=AUTH)
    image = opened(response)
    assert image.size == (512, 640)
    assert response.headers["x-venice-model-id"] == UPSCALER
    assert response.headers["x-venice-model-name"] == UPSCALER
    assert response.headers["x-venice-is-content-violation"] == "false"
    assert response.headers["x-venice-is-blurred"] == "false"
    assert "x-murano-safety-checked" not in response.headers  # safe mode does not apply
    (job,) = parts.fake(UPSCALER).batches[0]
    assert (job.task, job.width, job.height, job.resolution) == ("upscale", 512, 640, "2x")
    assert job.strength == pytest.approx(0.1)  # the default creativity, 0.01
    assert job.init_images[0].size == (256, 320)


async def test_upscale_multipart_file_and_form_numbers(
    client: httpx.AsyncClient, parts: Parts
) -> None:
    files = {"image": ("in.png", encoded(256, 256), "image/png")}
    data = {"scale": "4", "creativity": "0"}
    response = await client.post(UPSCALE, files=files, data=data, headers=AUTH)
    assert opened(response).size == (1024, 1024)
    (job,) = parts.fake(UPSCALER).batches[0]
    assert (job.resolution, job.strength) == ("4x", None)


@pytest.mark.parametrize(
    ("form", "expected"),
    [("data-url", (512, 512)), ("jpeg-base64", (512, 512)), ("webp-multipart", (512, 512))],
)
async def test_upscale_accepts_every_input_form(
    client: httpx.AsyncClient, form: str, expected: tuple[int, int]
) -> None:
    if form == "data-url":
        response = await client.post(
            UPSCALE, json={"image": data_url(encoded(256, 256))}, headers=AUTH
        )
    elif form == "jpeg-base64":
        response = await client.post(
            UPSCALE, json={"image": b64(encoded(256, 256, "JPEG"))}, headers=AUTH
        )
    else:
        files = {"image": ("in.webp", encoded(256, 256, "WEBP"), "image/webp")}
        response = await client.post(UPSCALE, files=files, headers=AUTH)
    assert opened(response).size == expected


async def test_a_base64_text_part_over_1_mb(client: httpx.AsyncClient) -> None:
    noisy = Image.effect_noise((800, 800), 100).convert("RGB")
    buffer = io.BytesIO()
    noisy.save(buffer, "PNG")
    text = b64(buffer.getvalue())
    assert len(text) > 1024 * 1024
    response = await client.post(UPSCALE, files={"image": (None, text)}, headers=AUTH)
    assert opened(response).size == (1600, 1600)


async def test_upscale_keeps_alpha(client: httpx.AsyncClient) -> None:
    response = await client.post(
        UPSCALE, json={"image": b64(encoded(256, 256, mode="RGBA")), "scale": 2}, headers=AUTH
    )
    image = opened(response)
    assert image.mode == "RGBA" and image.size == (512, 512)


@pytest.mark.parametrize(
    ("creativity", "strength"), [(5, 0.2), (-1, None), (0.015, 0.15), (None, 0.1)]
)
async def test_creativity_is_clamped_to_0_to_0_02(
    client: httpx.AsyncClient, parts: Parts, creativity: Any, strength: float | None
) -> None:
    body = {"image": b64(encoded()), "creativity": creativity}
    assert (await client.post(UPSCALE, json=body, headers=AUTH)).status_code == 200
    (job,) = parts.fake(UPSCALER).batches[0]
    assert job.strength == (None if strength is None else pytest.approx(strength))


async def test_scale_is_reduced_to_stay_within_the_pixel_cap(tmp_path: Path, parts: Parts) -> None:
    async with serving(tmp_path, parts, watermark=False) as client:
        files = {"image": ("big.png", encoded(1100, 1000), "image/png")}
        response = await client.post(UPSCALE, files=files, data={"scale": "4"}, headers=AUTH)
        width, height = opened(response).size
    assert width * height <= 16_777_216
    assert (width, height) == (4295, 3905)  # 3.9x, not 4x
    (job,) = parts.fake(UPSCALER).batches[0]
    assert job.resolution == "4x"


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "image", "Required"),
        ({"image": b64(encoded()), "scale": 3}, "scale", "either 2 or 4"),
        ({"image": b64(encoded()), "scale": 8}, "scale", "less than or equal to 4"),
        ({"image": b64(encoded()), "scale": 1}, "scale", "greater than or equal to 2"),
        ({"image": b64(encoded()), "scale": "2"}, "scale", "Expected number"),
        ({"image": b64(encoded()), "creativity": "high"}, "creativity", "Expected number"),
        ({"image": 12}, "image", ""),
        ({"image": "*** not base64 ***"}, "image", "base64"),
        ({"image": b64(b"GIF89a but not really")}, "image", "could not be decoded"),
        ({"image": b64(encoded(200, 200))}, "image", "65,536"),
        ({"image": b64(png_claiming(6000, 6000))}, "image", "33,177,600"),
        ({"image": "https://example.com/a.png"}, "image", "MURANO_FETCH_ALLOW"),
    ],
)
async def test_upscale_input_rules(
    client: httpx.AsyncClient, parts: Parts, body: dict[str, Any], field: str, fragment: str
) -> None:
    response = await client.post(UPSCALE, json=body, headers=AUTH)
    assert fragment in field_error(response, field)
    assert parts.fake(UPSCALER).batches == []


async def test_upscale_input_over_the_cap_is_refused(client: httpx.AsyncClient) -> None:
    # 4100 × 4100 decodes (a flat image compresses well) but cannot be upscaled at all.
    flat = Image.new("RGB", (4100, 4100), (10, 20, 30))
    buffer = io.BytesIO()
    flat.save(buffer, "PNG")
    files = {"image": ("flat.png", buffer.getvalue(), "image/png")}
    response = await client.post(UPSCALE, files=files, headers=AUTH)
    assert "16,777,216" in field_error(response, "image")


async def test_upscale_25_mb_is_a_413(client: httpx.AsyncClient) -> None:
    files = {"image": ("big.png", b"\x89PNG" + bytes(25 * 1024 * 1024), "image/png")}
    response = await client.post(UPSCALE, files=files, headers=AUTH)
    assert response.status_code == 413
    assert "25 MB" in response.json()["error"]


async def test_upscale_ignores_unknown_keys_as_the_spec_leaves_them_open(
    client: httpx.AsyncClient,
) -> None:
    body = {"image": b64(encoded()), "model": "anything"}
    assert (await client.post(UPSCALE, json=body, headers=AUTH)).status_code == 200


async def test_malformed_bodies(client: httpx.AsyncClient) -> None:
    for url in (UPSCALE, REMOVE):
        bad = await client.post(
            url, content=b"{nope", headers={**AUTH, "content-type": "application/json"}
        )
        assert bad.status_code == 400
        assert bad.json()["error"] == "Malformed JSON in the request body"
        listed = await client.post(url, json=["image"], headers=AUTH)
        assert listed.status_code == 400
        text = await client.post(url, content=b"x", headers={**AUTH, "content-type": "text/plain"})
        assert text.status_code == 415
        assert text.json() == {"error": "Invalid request content-type"}


async def test_upscale_url_input_from_an_allowed_host(tmp_path: Path, parts: Parts) -> None:
    with served({"/a.png": Route(encoded(256, 256))}) as base:
        async with serving(tmp_path, parts, fetch_allow=["127.0.0.1"]) as client:
            ok = await client.post(UPSCALE, json={"image": f"{base}/a.png"}, headers=AUTH)
            assert opened(ok).size == (512, 512)
    with served({"/a.png": Route(encoded(256, 256))}) as base:
        async with serving(tmp_path, Parts(), fetch_allow=["images.example.com"]) as client:
            refused = await client.post(UPSCALE, json={"image": f"{base}/a.png"}, headers=AUTH)
            assert "not allowed" in field_error(refused, "image")


async def test_no_upscaler_configured_is_404(tmp_path: Path, parts: Parts) -> None:
    from murano.catalog.entries import Catalog
    from tests.postops.conftest import image_entry

    async with serving(tmp_path, parts, catalog=Catalog([image_entry()])) as client:
        response = await client.post(UPSCALE, json={"image": b64(encoded())}, headers=AUTH)
        assert response.status_code == 404
        assert response.json() == {"error": "Specified model not found"}
        removal = await client.post(REMOVE, json={"image": b64(encoded())}, headers=AUTH)
        assert removal.status_code == 404


async def test_without_a_key_is_401(client: httpx.AsyncClient) -> None:
    for url in (UPSCALE, REMOVE):
        response = await client.post(url, json={"image": b64(encoded())})
        assert response.status_code == 401
        assert response.json() == {"error": "Authentication failed"}


async def test_generation_refuses_post_op_models(client: httpx.AsyncClient) -> None:
    body = {"model": UPSCALER, "prompt": "a boat", "width": 64, "height": 64}
    response = await client.post("/api/v1/image/generate", json=body, headers=AUTH)
    assert "serves /image/upscale" in field_error(response, "model")


# -- background removal -------------------------------------------------------------------


async def test_background_remove_json_is_an_rgba_png(
    client: httpx.AsyncClient, parts: Parts
) -> None:
    source = Image.open(io.BytesIO(encoded(256, 300)))
    response = await client.post(REMOVE, json={"image": b64(encoded(256, 300))}, headers=AUTH)
    image = opened(response)
    assert image.mode == "RGBA" and image.size == (256, 300)
    assert response.headers["x-venice-model-id"] == REMOVER
    # The fake's alpha is the red channel; the RGB under it is the input's (watermarked).
    assert np.array_equal(np.asarray(image.getchannel("A")), np.asarray(source.getchannel("R")))
    (job,) = parts.fake(REMOVER).batches[0]
    assert job.task == "background-remove"


async def test_background_remove_multipart_file(client: httpx.AsyncClient) -> None:
    files = {"image": ("in.jpg", encoded(256, 256, "JPEG"), "image/jpeg")}
    response = await client.post(REMOVE, files=files, headers=AUTH)
    assert opened(response).mode == "RGBA"


async def test_background_remove_image_url(tmp_path: Path, parts: Parts) -> None:
    with served({"/cat.png": Route(encoded(256, 256))}) as base:
        async with serving(tmp_path, parts, fetch_allow=["127.0.0.1"]) as client:
            body = {"image_url": f"{base}/cat.png"}
            assert opened(await client.post(REMOVE, json=body, headers=AUTH)).size == (256, 256)
            form = await client.post(
                REMOVE, files={"image_url": (None, body["image_url"])}, headers=AUTH
            )
            assert opened(form).mode == "RGBA"
            missing = await client.post(REMOVE, json={"image_url": f"{base}/x"}, headers=AUTH)
            assert "404" in field_error(missing, "image_url")


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "image", "exactly one"),
        ({"image": b64(encoded()), "image_url": "https://example.com/a.png"}, "image", "one"),
        ({"image_url": "not a url"}, "image_url", "http(s) URL"),
        ({"image_url": "https://example.com/a.png"}, "image_url", "MURANO_FETCH_ALLOW"),
        ({"image": b64(encoded(100, 100))}, "image", "65,536"),
        ({"image": "data:text/plain;base64,aGVsbG8="}, "image", "not an image type"),
        ({"image": b64(b"\x89PNG\r\n\x1a\n broken")}, "image", "could not be decoded"),
        ({"image": b64(encoded()), "scale": 2}, "_errors", "Unrecognized key(s)"),
    ],
)
async def test_background_remove_input_rules(
    client: httpx.AsyncClient, parts: Parts, body: dict[str, Any], field: str, fragment: str
) -> None:
    response = await client.post(REMOVE, json=body, headers=AUTH)
    status = 415 if "text/plain" in str(body.get("image")) else 400
    assert response.status_code == status, response.text
    if field == "_errors":
        assert fragment in response.json()["details"]["_errors"][0]
    elif status == 415:
        assert fragment in response.json()["error"]
    else:
        assert fragment in field_error(response, field)
    assert parts.fake(REMOVER).batches == []


async def test_background_remove_multipart_needs_exactly_one(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REMOVE, files={"other": ("x.png", encoded(), "image/png")}, headers=AUTH
    )
    assert response.status_code == 400  # an unknown part, and no image


# -- /models ------------------------------------------------------------------------------


async def test_models_type_upscale_lists_the_upscalers_with_venice_prices(
    client: httpx.AsyncClient,
) -> None:
    listing = (await client.get("/api/v1/models?type=upscale")).json()
    assert listing["type"] == "upscale" and listing["object"] == "list"
    (model,) = listing["data"]
    assert model["id"] == UPSCALER and model["type"] == "upscale"
    prices = model["model_spec"]["pricing"]["upscale"]
    assert {tier: price["usd"] for tier, price in prices.items()} == {"2x": 0.02, "4x": 0.08}
    assert "constraints" not in model["model_spec"]
    images = (await client.get("/api/v1/models?type=image")).json()["data"]
    assert [m["id"] for m in images] == ["test-model"]
    everything = (await client.get("/api/v1/models?type=all")).json()["data"]
    assert {m["id"] for m in everything} == {"test-model", UPSCALER, REMOVER}
