"""`POST /image/multi-edit`: 1 to the model's `maxInputImages` images, JSON (base64, data
URLs, URLs) or multipart (repeated `images` parts), the first one the base, order kept."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.conftest import AUTH, FakeEngineParts
from tests.edit.conftest import last_job
from tests.edit.images import Route, data_url, encoded, served

URL = "/api/v1/image/multi-edit"
SIZES = [(256, 256), (320, 256), (384, 256)]
IMAGES = [encoded(*size) for size in SIZES]


def body(**fields: Any) -> dict[str, Any]:
    images = [base64.b64encode(IMAGES[0]).decode(), data_url(IMAGES[1]), data_url(IMAGES[2])]
    return {"modelId": "guidance-model", "prompt": "put them together", "images": images, **fields}


async def test_json_images_in_order(client: httpx.AsyncClient, parts: FakeEngineParts) -> None:
    response = await client.post(URL, json=body(output_format="webp"), headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert response.headers["x-venice-model-id"] == "guidance-model"
    job = last_job(parts, "guidance-model")
    assert job.task == "edit"
    assert [image.size for image in job.init_images] == SIZES


async def test_multipart_parts_in_order(client: httpx.AsyncClient, parts: FakeEngineParts) -> None:
    files = [("images", (f"{i}.png", data, "image/png")) for i, data in enumerate(IMAGES)]
    files.reverse()
    response = await client.post(
        URL,
        data={"modelId": "guidance-model", "prompt": "p", "aspect_ratio": "16:9"},
        files=files,
        headers=AUTH,
    )
    assert response.status_code == 200, response.text
    job = last_job(parts, "guidance-model")
    assert [image.size for image in job.init_images] == SIZES[::-1]
    assert (job.width, job.height) == (1368, 768)  # divisor 8


async def test_one_image_on_the_default_model(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await client.post(
        URL, json={"prompt": "p", "images": [data_url(IMAGES[0])]}, headers=AUTH
    )
    assert response.status_code == 200, response.text
    assert last_job(parts).task == "img2img"


async def test_url_images(fetching: httpx.AsyncClient, parts: FakeEngineParts) -> None:
    routes = {f"/{i}.png": Route(data) for i, data in enumerate(IMAGES)}
    with served(routes) as base:
        images = [f"{base}/{i}.png" for i in range(3)]
        response = await fetching.post(URL, json=body(images=images), headers=AUTH)
    assert response.status_code == 200, response.text
    assert [image.size for image in last_job(parts, "guidance-model").init_images] == SIZES


async def test_image_count_limits(client: httpx.AsyncClient) -> None:
    empty = await client.post(URL, json=body(images=[]), headers=AUTH)
    assert empty.status_code == 400
    assert "images" in empty.json()["details"]
    four = await client.post(URL, json=body(images=[data_url(IMAGES[0])] * 4), headers=AUTH)
    assert four.status_code == 400
    assert "at most 3" in four.json()["details"]["images"]["_errors"][0]
    two_on_default = await client.post(
        URL, json={"prompt": "p", "images": [data_url(IMAGES[0])] * 2}, headers=AUTH
    )
    assert two_on_default.status_code == 400


async def test_a_bad_image_is_named_by_position(client: httpx.AsyncClient) -> None:
    images = [data_url(IMAGES[0]), base64.b64encode(encoded(100, 100)).decode()]
    response = await client.post(URL, json=body(images=images), headers=AUTH)
    assert response.status_code == 400
    assert "65,536" in response.json()["details"]["images.1"]["_errors"][0]
    response = await client.post(URL, json=body(model="x"), headers=AUTH)
    assert response.json()["details"]["_errors"] == ["Unrecognized key(s) in object: 'model'"]
