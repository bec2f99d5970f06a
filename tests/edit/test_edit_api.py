"""`POST /image/edit` through HTTP, JSON and multipart, on the fake engine: the image
reaches the model's image-to-image task at the right size, the answer is the raw image with
Venice's headers, and every bad input is a Venice-shaped error that charges nothing."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from murano.imaging.inputs import MAX_INPUT_BYTES
from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings, running
from tests.edit.conftest import Billing, last_job
from tests.edit.images import Route, data_url, encoded, served

URL = "/api/v1/image/edit"
PNG = encoded(256, 256)


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "make it blue", "image": base64.b64encode(PNG).decode(), **fields}


def opened(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


async def test_json_edit_returns_the_raw_image(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await client.post(URL, json=body(model="test-model"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"  # 1K and no output_format: PNG
    assert response.headers["x-venice-model-id"] == "test-model"
    assert response.headers["x-venice-model-name"] == "Test test-model"
    assert response.headers["x-venice-is-content-violation"] == "false"
    assert opened(response).size == (1024, 1024)
    job = last_job(parts)
    assert (job.task, job.strength, job.prompt) == ("img2img", 0.8, "make it blue")
    assert [image.size for image in job.init_images] == [(1024, 1024)]


async def test_multipart_upload_and_the_deprecated_model_id(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await client.post(
        URL,
        data={"prompt": "make it blue", "modelId": "test-model", "safe_mode": "false"},
        files={"image": ("in.png", PNG, "image/png")},
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-venice-model-id"] == "test-model"
    job = last_job(parts)
    assert job.task == "img2img"
    # The fitted input is the uploaded image, scaled up four times.
    upload = Image.open(io.BytesIO(PNG)).convert("RGB").resize((1024, 1024))
    assert job.init_images[0].getpixel((512, 512)) == pytest.approx(
        upload.getpixel((512, 512)), abs=40
    )


async def test_without_a_model_the_default_edits(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=body(), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["x-venice-model-id"] == "test-model"


@pytest.mark.parametrize(
    ("size", "fields", "expected"),
    [
        ((512, 256), {}, (1448, 728)),  # auto: the input's own 2:1, 1K area, divisor 8
        ((256, 256), {"aspect_ratio": "16:9"}, (1368, 768)),
        ((256, 256), {"aspect_ratio": "auto"}, (1024, 1024)),
        ((256, 512), {"aspect_ratio": "9:16"}, (768, 1368)),
    ],
)
async def test_output_size(
    client: httpx.AsyncClient,
    size: tuple[int, int],
    fields: dict[str, Any],
    expected: tuple[int, int],
) -> None:
    image = base64.b64encode(encoded(*size)).decode()
    response = await client.post(URL, json=body(image=image, **fields), headers=AUTH)
    assert response.status_code == 200, response.text
    assert opened(response).size == expected


async def test_ratio_models_pick_the_closest_listed_ratio(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    image = base64.b64encode(encoded(360, 240)).decode()  # 3:2, closest listed: 16:9
    response = await client.post(
        URL, json=body(model="ratio-model", image=image, resolution="2K"), headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"  # 2K and no output_format: JPEG
    assert opened(response).size == (2736, 1536)
    refused = await client.post(
        URL, json=body(model="ratio-model", aspect_ratio="4:5"), headers=AUTH
    )
    assert refused.status_code == 400
    assert "1:1, 16:9, 9:16" in refused.json()["details"]["aspect_ratio"]["_errors"][0]


@pytest.mark.parametrize(
    ("asked", "content_type"),
    [("jpg", "image/jpeg"), ("jpeg", "image/jpeg"), ("webp", "image/webp"), ("png", "image/png")],
)
async def test_output_format(client: httpx.AsyncClient, asked: str, content_type: str) -> None:
    response = await client.post(URL, json=body(output_format=asked), headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type


async def test_url_inputs_from_an_allowed_host(
    fetching: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    with served({"/in.png": Route(encoded(400, 400))}) as base:
        response = await fetching.post(URL, json=body(image=f"{base}/in.png"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert last_job(parts).task == "img2img"


async def test_url_inputs_are_refused_unless_allowed(client: httpx.AsyncClient) -> None:
    with served({"/in.png": Route(encoded(400, 400))}) as base:
        response = await client.post(URL, json=body(image=f"{base}/in.png"), headers=AUTH)
    assert response.status_code == 400
    assert "MURANO_FETCH_ALLOW" in response.json()["details"]["image"]["_errors"][0]


def _error_field(response: httpx.Response, field: str) -> str:
    errors: list[str] = response.json()["details"][field]["_errors"]
    return errors[0]


@pytest.mark.parametrize(
    ("fields", "field", "text"),
    [
        ({"image": base64.b64encode(encoded(100, 100)).decode()}, "image", "65,536"),
        ({"image": base64.b64encode(b"plain text").decode()}, "image", "could not be decoded"),
        ({"image": "not base64 at all!"}, "image", "base64"),
        ({"prompt": ""}, "prompt", "at least 1"),
        ({"aspect_ratio": "5:4"}, "aspect_ratio", "Invalid enum value"),
        ({"resolution": "2K"}, "resolution", "1K"),
        ({"safe_mode": "yes"}, "safe_mode", "boolean"),
        ({"enhance_prompt": True}, "enhance_prompt", "rewrite"),
    ],
)
async def test_bad_fields_are_400s_naming_the_field(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str, text: str
) -> None:
    response = await client.post(URL, json=body(**fields), headers=AUTH)
    assert response.status_code == 400, response.text
    assert text in _error_field(response, field)
    assert "BytesIO" not in response.text


async def test_missing_and_unknown_keys(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"prompt": "x", "width": 5}, headers=AUTH)
    assert response.status_code == 400
    details = response.json()["details"]
    assert details["image"]["_errors"] == ["Required"]
    assert details["_errors"] == ["Unrecognized key(s) in object: 'width'"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=body(model="nope"), headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "Specified model not found"}


async def test_media_type_and_size_errors(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL, json=body(image=data_url(b"hello", "text/plain")), headers=AUTH
    )
    assert response.status_code == 415
    assert "text/plain" in response.json()["error"]
    response = await client.post(
        URL,
        data={"prompt": "p"},
        files={"image": ("big.png", b"\0" * MAX_INPUT_BYTES, "image/png")},
        headers=AUTH,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert "image" in response.json()["error"]
    response = await client.post(
        URL, content=b"prompt=x", headers={**AUTH, "content-type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json() == {"error": "Invalid request content-type"}


def _edit_request(path: str, prompt: str = "p") -> dict[str, Any]:
    """A valid request to each edit endpoint, as httpx keyword arguments."""
    if path == "/api/v1/images/edits":
        return {"data": {"prompt": prompt}, "files": {"image": ("in.png", PNG, "image/png")}}
    if path == "/api/v1/image/multi-edit":
        return {"json": {"prompt": prompt, "images": [data_url(PNG)]}}
    return {"json": body(prompt=prompt)}


@pytest.mark.parametrize("path", [URL, "/api/v1/image/multi-edit", "/api/v1/images/edits"])
async def test_a_blocked_edit_prompt_is_a_422_and_costs_nothing(
    billing: Billing, path: str
) -> None:
    key = await billing.key("1")
    refused = await billing.client.post(path, headers=key, **_edit_request(path, "a forbidden cat"))
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "Your prompt violates the content policy of Venice.ai or the model provider"
    }
    assert await billing.balance(key) == Decimal("1")
    assert billing.parts.backends["test-model"].batches == []


@pytest.mark.parametrize("path", [URL, "/api/v1/image/multi-edit", "/api/v1/images/edits"])
async def test_every_edit_endpoint_charges_on_delivery_only(billing: Billing, path: str) -> None:
    key = await billing.key("1")
    billing.parts.backends["test-model"].fail_when = lambda batch: True
    failed = await billing.client.post(path, headers=key, **_edit_request(path))
    assert failed.status_code == 500
    assert failed.json() == {"error": "Inference processing failed"}
    assert await billing.balance(key) == Decimal("1")
    billing.parts.backends["test-model"].fail_when = lambda batch: False
    delivered = await billing.client.post(path, headers=key, **_edit_request(path))
    assert delivered.status_code == 200
    assert delivered.headers["x-venice-balance-usd"] == "1"
    assert await billing.balance(key) == Decimal("0.99")


async def test_edits_are_watermarked_like_generations(client: httpx.AsyncClient) -> None:
    from murano.imaging.watermark import has_watermark

    response = await client.post(URL, json=body(output_format="png"), headers=AUTH)
    assert has_watermark(opened(response).convert("RGB"))


async def test_nothing_charged_for_refusals_and_failures(billing: Billing) -> None:
    key = await billing.key("1")
    refused = await billing.client.post(
        URL, json=body(image=base64.b64encode(b"junk").decode()), headers=key
    )
    assert refused.status_code == 400
    billing.parts.backends["test-model"].fail_when = lambda batch: True
    failed = await billing.client.post(URL, json=body(), headers=key)
    assert failed.status_code == 500
    assert await billing.balance(key) == Decimal("1")
    billing.parts.backends["test-model"].fail_when = lambda batch: False
    delivered = await billing.client.post(URL, json=body(), headers=key)
    assert delivered.status_code == 200
    assert await billing.balance(key) == Decimal("0.99")


async def test_a_blocked_prompt_is_venices_content_violation(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    # Venice answers the edit endpoints with a 422 ContentViolationError (generation's 200
    # with the violation header is for /image/generate only).
    settings = make_settings(tmp_path, blocked_terms=["forbidden"])
    async with running(settings, fake_engine(parts)) as client:
        response = await client.post(URL, json=body(prompt="a forbidden thing"), headers=AUTH)
    assert response.status_code == 422
    assert response.json() == {
        "error": "Your prompt violates the content policy of Venice.ai or the model provider"
    }
    assert parts.backends["test-model"].batches == []
