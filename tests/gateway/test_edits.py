"""The edit endpoints on upstream models: a murano as the Venice upstream (`/image/edit`,
`/image/multi-edit`, JSON with base64 inputs) and a fake OpenAI Images API (`/images/edits`,
multipart), each billed on both sides, with the operator's key, errors mapped as for
generation."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from typing import Any

from PIL import Image

from murano.imaging.encode import sniff_format
from tests.conftest import API_KEY
from tests.gateway.conftest import OPENAI_KEY, UPSTREAM_URL, Pair, png

EDIT = "/api/v1/image/edit"
MULTI = "/api/v1/image/multi-edit"
OPENAI = "/api/v1/images/edits"
INPUT = base64.b64encode(png(320, 240)).decode()


def edit(**fields: Any) -> dict[str, Any]:
    return {"model": "proxied-edit", "prompt": "add a hat", "image": INPUT, **fields}


def mask_png(size: tuple[int, int]) -> bytes:
    """Opaque but a transparent left half (repainted)."""
    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    mask.save(out, "PNG")
    return out.getvalue()


async def test_an_edit_is_forwarded_and_billed_by_both(pair: Pair) -> None:
    response = await pair.gateway.post(
        EDIT, json=edit(aspect_ratio="16:9", output_format="webp"), headers=pair.caller
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/webp"
    assert sniff_format(response.content) == "webp"
    assert response.headers["x-venice-model-id"] == "proxied-edit"
    [sent] = pair.transport.requests
    assert sent.url == f"{UPSTREAM_URL}/image/edit"
    sent_body = json.loads(sent.content)
    assert sent_body["modelId"] == "test-model"
    assert sent_body["aspect_ratio"] == "16:9"
    assert sent_body["output_format"] == "webp"
    assert Image.open(io.BytesIO(base64.b64decode(sent_body["image"]))).size == (320, 240)
    # murano's own edit price (inpaint: 0.07); the upstream charges the operator its own.
    assert await pair.caller_balance() == Decimal("0.93")
    assert await pair.operator_balance() == Decimal("0.99")


async def test_the_operators_key_goes_upstream_never_the_callers(pair: Pair) -> None:
    caller_secret = pair.caller["Authorization"].split()[1]
    for url, body in ((EDIT, edit()), (OPENAI, None)):
        if body is None:
            response = await pair.gateway.post(
                url,
                data={"model": "openai-edit", "prompt": "add a hat"},
                files=[("image", ("in.png", png(320, 240), "image/png"))],
                headers=pair.caller,
            )
        else:
            response = await pair.gateway.post(url, json=body, headers=pair.caller)
        assert response.status_code == 200, response.text
    venice_sent, openai_sent = pair.transport.requests
    assert venice_sent.headers["authorization"] == f"Bearer {pair.operator_key}"
    assert openai_sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    for sent in (venice_sent, openai_sent):
        raw = bytes(sent.content) + str(sent.headers).encode()
        assert caller_secret.encode() not in raw
        assert API_KEY.encode() not in raw


async def test_several_inputs_go_to_multi_edit_and_its_400_comes_back(pair: Pair) -> None:
    # The gateway's entry takes 3 inputs; the upstream's model takes 1 and says so.
    body = {"modelId": "proxied-edit", "prompt": "merge", "images": [INPUT, INPUT]}
    direct = await pair.upstream.post(
        MULTI,
        json={**body, "modelId": "test-model"},
        headers={"Authorization": f"Bearer {pair.operator_key}"},
    )
    assert direct.status_code == 400
    response = await pair.gateway.post(MULTI, json=body, headers=pair.caller)
    assert response.status_code == 400
    assert response.json() == direct.json()
    [sent] = pair.transport.requests
    assert sent.url == f"{UPSTREAM_URL}/image/multi-edit"
    assert len(json.loads(sent.content)["images"]) == 2
    assert await pair.caller_balance() == 1


async def test_a_stopped_upstream_gives_503_and_releases(pair: Pair) -> None:
    pair.transport.stopped.add("upstream.test")
    response = await pair.gateway.post(EDIT, json=edit(), headers=pair.caller)
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert "error" in response.json()
    assert await pair.caller_balance() == 1
    assert await pair.operator_balance() == 1


async def test_openai_upstream_gets_multipart_images_and_mask(pair: Pair) -> None:
    response = await pair.gateway.post(
        OPENAI,
        data={"model": "openai-edit", "prompt": "add a hat", "size": "1024x1024"},
        files=[
            ("image", ("in.png", png(256, 256), "image/png")),
            ("mask", ("mask.png", mask_png((256, 256)), "image/png")),
        ],
        headers=pair.caller,
    )
    assert response.status_code == 200, response.text
    [item] = response.json()["data"]
    assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).format == "PNG"
    [(headers, sent)] = pair.openai.requests
    assert headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert sent["model"] == "gpt-image-1"
    assert sent["files"] == {"image[]": ["image-0.png"], "mask": ["mask.png"]}
    assert sent["mask_alpha"] == "0,255"  # the caller's left half is repainted upstream
    assert await pair.caller_balance() == Decimal("0.95")


async def test_openai_upstreams_400_comes_back_and_nothing_is_charged(pair: Pair) -> None:
    response = await pair.gateway.post(
        OPENAI,
        data={"model": "openai-edit", "prompt": "refuse"},
        files=[("image", ("in.png", png(256, 256), "image/png"))],
        headers=pair.caller,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Your request was rejected"
    assert await pair.caller_balance() == 1


async def test_a_mask_on_a_venice_upstream_is_refused_before_anyone_pays(pair: Pair) -> None:
    response = await pair.gateway.post(
        OPENAI,
        data={"model": "proxied-edit", "prompt": "add a hat"},
        files=[
            ("image", ("in.png", png(256, 256), "image/png")),
            ("mask", ("mask.png", mask_png((256, 256)), "image/png")),
        ],
        headers=pair.caller,
    )
    assert response.status_code == 400
    assert pair.transport.requests == []
    assert await pair.caller_balance() == 1


async def test_only_upstreams_with_edits_are_listed_as_inpaint(pair: Pair) -> None:
    response = await pair.gateway.get("/api/v1/models?type=inpaint")
    ids = {m["id"] for m in response.json()["data"]}
    assert {"proxied-edit", "openai-edit"} <= ids
    assert not ids & {"proxied", "proxied-ratio", "openai-proxied", "openai-exact"}
    [listed] = [m for m in response.json()["data"] if m["id"] == "proxied-edit"]
    assert listed["model_spec"]["constraints"]["maxInputImages"] == 3
    refused = await pair.gateway.post(EDIT, json=edit(model="proxied"), headers=pair.caller)
    assert refused.status_code == 400
    assert pair.transport.requests == []
