"""An OpenAI Images API (a small fake FastAPI app) as the upstream: Venice-native requests
translated to OpenAI's and back, sizes, formats, errors."""

from __future__ import annotations

import base64
import io
from decimal import Decimal
from typing import Any

from PIL import Image

from tests.gateway.conftest import OPENAI_KEY, OPENAI_URL, Pair, images_of

URL = "/api/v1/image/generate"


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "openai-proxied", "prompt": "a lighthouse", **fields}


async def test_a_native_request_becomes_an_openai_one(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(width=1280, height=720, variants=3, format="webp"), headers=pair.caller
    )
    assert response.status_code == 200, response.text
    images = images_of(response)
    # The upstream's closest size to 16:9, its images converted to the format asked for.
    assert [(i.format, i.size) for i in images] == [("WEBP", (96, 64))] * 3
    [(headers, sent)] = pair.openai.requests
    assert sent == {"model": "gpt-image-1", "prompt": "a lighthouse", "n": 3, "size": "1536x1024"}
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert await pair.caller_balance() == Decimal("0.85")


async def test_without_sizes_the_request_size_is_sent_and_the_id_is_the_entrys(
    pair: Pair,
) -> None:
    response = await pair.gateway.post(
        URL,
        json=body(model="openai-exact", width=512, height=256, format="png"),
        headers=pair.caller,
    )
    assert response.status_code == 200
    assert pair.openai.requests[0][1]["size"] == "512x256"
    assert pair.openai.requests[0][1]["model"] == "openai-exact"
    assert str(pair.transport.requests[0].url) == f"{OPENAI_URL}/images/generations"


async def test_data_urls_are_read_too(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(prompt="as url", format="png"), headers=pair.caller
    )
    assert response.status_code == 200
    assert images_of(response)[0].size == (64, 64)


async def test_an_openai_400_keeps_its_status_and_message(pair: Pair) -> None:
    response = await pair.gateway.post(URL, json=body(prompt="refuse"), headers=pair.caller)
    assert response.status_code == 400
    assert response.json() == {"error": "Your request was rejected"}
    assert await pair.caller_balance() == Decimal("1")


async def test_a_negative_prompt_is_refused_before_anyone_pays(pair: Pair) -> None:
    response = await pair.gateway.post(
        URL, json=body(negative_prompt="clouds"), headers=pair.caller
    )
    assert response.status_code == 400
    assert response.json()["details"]["negative_prompt"]["_errors"]
    assert pair.openai.requests == []
    assert await pair.caller_balance() == Decimal("1")


async def test_the_official_openai_shape_end_to_end(pair: Pair) -> None:
    response = await pair.gateway.post(
        "/api/v1/images/generations",
        json={
            "model": "openai-proxied",
            "prompt": "p",
            "size": "1024x1024",
            "output_format": "jpeg",
        },
        headers=pair.caller,
    )
    assert response.status_code == 200, response.text
    data = base64.b64decode(response.json()["data"][0]["b64_json"])
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert pair.openai.requests[0][1]["size"] == "1024x1024"
