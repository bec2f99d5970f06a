"""OpenAI's `POST /images/edits` with `stream: true`: Server-Sent Events the official SDK
parses as `ImageEditPartialImageEvent`s then an `ImageEditCompletedEvent`, charged once the
completed event is sent; a bad `partial_images` is a plain Venice 400, nothing charged."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from typing import Any

import httpx
import pytest
from openai._streaming import SSEDecoder
from openai.types import ImageEditCompletedEvent, ImageEditPartialImageEvent
from PIL import Image
from pydantic import TypeAdapter

from tests.conftest import AUTH
from tests.edit.conftest import Billing
from tests.edit.images import encoded

URL = "/api/v1/images/edits"
PNG = encoded(256, 256)


async def post(
    client: httpx.AsyncClient, headers: dict[str, str] = AUTH, **data: str
) -> httpx.Response:
    data.setdefault("prompt", "add a hat")
    files = [("image", ("in.png", PNG, "image/png"))]
    return await client.post(URL, data=data, files=files, headers=headers)


def events(response: httpx.Response) -> list[tuple[str | None, dict[str, Any]]]:
    decoded = SSEDecoder().iter_bytes(iter([response.content]))
    return [(event.event, event.json()) for event in decoded]


def decode(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


async def test_partial_images_then_the_completed_image(client: httpx.AsyncClient) -> None:
    response = await post(client, stream="true", partial_images="2", size="256x256")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-venice-model-id"] == "test-model"
    received = events(response)
    assert [name for name, _ in received] == [
        "image_edit.partial_image",
        "image_edit.partial_image",
        "image_edit.completed",
    ]
    partials = [
        TypeAdapter(ImageEditPartialImageEvent).validate_python(data) for _, data in received[:-1]
    ]
    assert [p.partial_image_index for p in partials] == [0, 1]
    assert all(decode(p.b64_json).format == "PNG" for p in partials)
    done = TypeAdapter(ImageEditCompletedEvent).validate_python(received[-1][1])
    assert (done.size, done.output_format, done.usage.total_tokens) == ("256x256", "png", 0)
    image = decode(done.b64_json)
    assert (image.format, image.size) == ("PNG", (256, 256))


async def test_no_partial_images_is_one_completed_event(client: httpx.AsyncClient) -> None:
    response = await post(client, stream="true", partial_images="0", output_format="webp")
    assert response.status_code == 200, response.text
    ((name, data),) = events(response)
    assert name == "image_edit.completed"
    assert decode(data["b64_json"]).format == "WEBP"


async def test_stream_false_is_the_json_answer(client: httpx.AsyncClient) -> None:
    response = await post(client, stream="false", partial_images="1")
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"created", "data"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("partial_images", "4"), ("partial_images", "-1"), ("partial_images", "x"), ("stream", "yes")],
)
async def test_bad_stream_fields_are_refused_uncharged(
    billing: Billing, field: str, value: str
) -> None:
    key = await billing.key("1")
    data = {"stream": "true", "partial_images": "1", field: value}
    response = await post(billing.client, key, **data)
    assert response.status_code == 400, response.text
    assert field in response.json()["details"]
    assert await billing.balance(key) == Decimal("1")
    assert not billing.parts.backends["test-model"].batches


async def test_a_streamed_edit_is_charged_when_delivered_only(billing: Billing) -> None:
    key = await billing.key("1")
    backend = billing.parts.backends["test-model"]
    backend.fail_when = lambda batch: True
    failed = await post(billing.client, key, stream="true", partial_images="1")
    assert failed.status_code == 200
    assert [name for name, _ in events(failed)][-1] == "error"
    assert await billing.balance(key) == Decimal("1")
    backend.fail_when = lambda batch: False
    delivered = await post(billing.client, key, stream="true", partial_images="1")
    assert [name for name, _ in events(delivered)][-1] == "image_edit.completed"
    assert await billing.balance(key) == Decimal("0.99")
