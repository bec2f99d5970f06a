"""OpenAI's `POST /images/edits` (multipart) on the fake engine: one image or `image[]`,
an optional alpha mask turned into an inpainting job, the validated-and-ignored fields,
and the `{created, data}` answer."""

from __future__ import annotations

import base64
import io
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.conftest import AUTH, FakeEngineParts
from tests.edit.conftest import last_job
from tests.edit.images import encoded

URL = "/api/v1/images/edits"
PNG = encoded(256, 256)


def alpha_mask(size: tuple[int, int] = (256, 256)) -> bytes:
    """Opaque everywhere but a transparent left half (the part to repaint)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    buffer = io.BytesIO()
    mask.save(buffer, "PNG")
    return buffer.getvalue()


async def post(
    client: httpx.AsyncClient, *, files: list[tuple[str, Any]] | None = None, **data: str
) -> httpx.Response:
    data.setdefault("prompt", "add a hat")
    files = files if files is not None else [("image", ("in.png", PNG, "image/png"))]
    return await client.post(URL, data=data, files=files, headers=AUTH)


async def test_one_image_is_image_to_image(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await post(client, size="512x512")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"created", "data"}
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert (image.format, image.size) == ("PNG", (512, 512))
    assert response.headers["x-venice-model-id"] == "test-model"
    job = last_job(parts)
    assert (job.task, job.mask) == ("img2img", None)


async def test_a_mask_makes_an_inpainting_job(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    files = [
        ("image", ("in.png", PNG, "image/png")),
        ("mask", ("mask.png", alpha_mask(), "image/png")),
    ]
    response = await post(client, files=files, size="256x256")
    assert response.status_code == 200, response.text
    job = last_job(parts)
    assert job.task == "inpaint" and job.mask is not None
    # Transparent in OpenAI's mask = white (repaint) in diffusers'.
    assert job.mask.getpixel((10, 128)) == 255 and job.mask.getpixel((250, 128)) == 0


async def test_several_images_go_to_a_model_that_combines_them(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    files = [("image[]", (f"{i}.png", encoded(256 + 32 * i, 256), "image/png")) for i in range(3)]
    response = await post(client, files=files, model="guidance-model")
    assert response.status_code == 200, response.text
    job = last_job(parts, "guidance-model")
    assert job.task == "edit"
    assert [image.size for image in job.init_images] == [(256, 256), (288, 256), (320, 256)]
    refused = await post(client, files=files)  # the default model takes one image
    assert refused.status_code == 400
    assert "at most 1" in refused.json()["details"]["images"]["_errors"][0]


async def test_url_response_format_and_unknown_models(client: httpx.AsyncClient) -> None:
    response = await post(client, model="gpt-image-1", response_format="url", output_format="webp")
    assert response.status_code == 200, response.text
    assert response.json()["data"][0]["url"].startswith("data:image/webp;base64,")
    assert response.headers["x-venice-model-id"] == "test-model"


async def test_ignored_fields_are_validated(client: httpx.AsyncClient) -> None:
    ok = await post(
        client,
        background="opaque",
        quality="high",
        input_fidelity="low",
        output_compression="80",
        user="u-1",
        n="1",
    )
    assert ok.status_code == 200, ok.text
    for field, value in [
        ("n", "2"),
        ("quality", "ultra"),
        ("input_fidelity", "max"),
        ("output_compression", "101"),
        ("size", "100x100"),
        ("background", "none"),
    ]:
        bad = await post(client, **{field: value})
        assert bad.status_code == 400, (field, bad.text)
        assert field in bad.json()["details"], field


@pytest.mark.parametrize(
    ("mask", "text"),
    [
        (alpha_mask((300, 300)), "same dimensions"),
        (encoded(256, 256), "alpha channel"),
        (b"not an image", "could not be decoded"),
    ],
)
async def test_bad_masks(client: httpx.AsyncClient, mask: bytes, text: str) -> None:
    files = [("image", ("in.png", PNG, "image/png")), ("mask", ("m.png", mask, "image/png"))]
    response = await post(client, files=files)
    assert response.status_code == 400
    assert text in response.json()["details"]["mask"]["_errors"][0]


async def test_json_and_missing_images_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={"prompt": "x"}, headers=AUTH)
    assert response.status_code == 400
    response = await post(client, files=[("other", ("x.png", PNG, "image/png"))])
    assert response.status_code == 400
    details = response.json()["details"]
    assert details["image"]["_errors"] == ["Required"]
    assert "Unrecognized key(s) in object: 'other'" in details["_errors"]
    many = [("image[]", (f"{i}.png", PNG, "image/png")) for i in range(17)]
    response = await post(client, files=many)
    assert response.status_code == 400


async def test_size_on_a_ratio_model_picks_the_closest_ratio(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    response = await post(client, model="ratio-model", size="1536x1024")
    assert response.status_code == 200, response.text
    job = last_job(parts, "ratio-model")
    assert (job.width, job.height) == (1360, 768)  # 16:9 is the closest listed to 3:2
