"""The real server in a subprocess on the embedded tiny model (no models file): the official
`openai` SDK's `images.edit` with and without a mask, and Venice's `/image/edit` and
`/image/multi-edit` over plain HTTP, each answering through the model's own image-to-image
and inpainting pipelines."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from tests.edit.images import encoded
from tests.edit.test_openai_edits import alpha_mask
from tests.live_server import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "e2e-edit-key-abcdef"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"MURANO_API_KEYS": KEY, "MURANO_ACCOUNTS_BACKEND": "static"}
    with live_server(tmp_path_factory.mktemp("e2e-edit"), env=env) as live:
        yield live.url


@pytest.fixture
def client(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY, max_retries=0)


def _decoded(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_sdk_images_edit(client: openai.OpenAI) -> None:
    result = client.images.edit(
        model="murano-tiny",
        image=("in.png", encoded(256, 256), "image/png"),
        prompt="add a red hat",
        size="256x256",
    )
    assert result.data is not None
    image = _decoded(result.data[0].b64_json)
    assert (image.format, image.size) == ("PNG", (256, 256))


def test_sdk_images_edit_with_a_mask(client: openai.OpenAI) -> None:
    result = client.images.edit(
        image=("in.png", encoded(256, 256), "image/png"),
        mask=("mask.png", alpha_mask(), "image/png"),
        prompt="a window on the left",
        size="512x512",
        response_format="b64_json",
    )
    assert result.data is not None
    assert _decoded(result.data[0].b64_json).size == (512, 512)


def test_sdk_refusals_are_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(
            image=[("a.png", encoded(256, 256), "image/png")] * 2, prompt="two on the default"
        )
    assert caught.value.status_code == 400
    assert "at most 1" in caught.value.response.json()["details"]["images"]["_errors"][0]


def test_venice_edit_and_multi_edit(server: str) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    png = encoded(256, 256)
    edit = httpx.post(
        f"{server}/api/v1/image/edit",
        data={"prompt": "make it blue", "aspect_ratio": "1:1"},
        files={"image": ("in.png", png, "image/png")},
        headers=auth,
        timeout=120,
    )
    assert edit.status_code == 200, edit.text
    assert edit.headers["content-type"] == "image/png"
    assert edit.headers["x-venice-model-id"] == "murano-tiny"
    assert Image.open(io.BytesIO(edit.content)).size == (1024, 1024)
    multi = httpx.post(
        f"{server}/api/v1/image/multi-edit",
        json={"prompt": "p", "images": [base64.b64encode(png).decode()], "output_format": "jpg"},
        headers=auth,
        timeout=120,
    )
    assert multi.status_code == 200, multi.text
    assert multi.headers["content-type"] == "image/jpeg"
