"""Every bad input: the exact status, Venice's error shape, and proof nothing was generated."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.engine.scheduler import SchedulerConfig
from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings, running

URL = "/api/v1/image/generate"
BASE: dict[str, Any] = {"model": "test-model", "prompt": "a lighthouse", "width": 64, "height": 64}

# (case id, fields to set (None deletes), the `details` key that must name the field)
BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown key", {"colour": "red"}, "_errors"),
    ("inpaint", {"inpaint": {"mask": "x"}}, "inpaint"),
    ("variants with binary", {"variants": 2, "return_binary": True}, "variants"),
    ("width over 1280", {"width": 1288}, "width"),
    ("width zero", {"width": 0}, "width"),
    ("width not divisible", {"width": 100}, "width"),
    ("height not divisible", {"height": 65}, "height"),
    ("width as string", {"width": "64"}, "width"),
    ("width as float", {"width": 64.5}, "width"),
    ("steps over max", {"steps": 21}, "steps"),
    ("steps zero", {"steps": 0}, "steps"),
    ("prompt over model limit", {"prompt": "x" * 201}, "prompt"),
    ("prompt over schema limit", {"prompt": "x" * 7501}, "prompt"),
    ("empty prompt", {"prompt": ""}, "prompt"),
    ("missing prompt", {"prompt": None}, "prompt"),
    ("missing model", {"model": None}, "model"),
    ("negative over limit", {"negative_prompt": "x" * 201}, "negative_prompt"),
    ("cfg zero", {"cfg_scale": 0}, "cfg_scale"),
    ("cfg over 20", {"cfg_scale": 20.5}, "cfg_scale"),
    ("seed too big", {"seed": 1_000_000_000}, "seed"),
    ("variants 5", {"variants": 5}, "variants"),
    ("lora over 100", {"lora_strength": 101}, "lora_strength"),
    ("format gif", {"format": "gif"}, "format"),
    ("safe_mode string", {"safe_mode": "yes"}, "safe_mode"),
    ("unknown style", {"style_preset": "watercolor"}, "style_preset"),
    ("quality", {"quality": "high"}, "quality"),
    ("web search", {"enable_web_search": True}, "enable_web_search"),
    ("enhance prompt", {"enhance_prompt": True}, "enhance_prompt"),
    ("style references", {"style_references": [{"image": "https://x/y.png"}]}, "style_references"),
    ("aspect ratio on a width model", {"aspect_ratio": "1:1"}, "aspect_ratio"),
    ("resolution on a width model", {"resolution": "1K"}, "resolution"),
]


def _payload(fields: dict[str, Any]) -> dict[str, Any]:
    payload = {**BASE, **fields}
    return {k: v for k, v in payload.items() if v is not None}


@pytest.mark.parametrize(
    ("fields", "field"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
async def test_bad_field_is_a_detailed_400(
    client: httpx.AsyncClient, parts: FakeEngineParts, fields: dict[str, Any], field: str
) -> None:
    response = await client.post(URL, json=_payload(fields), headers=AUTH)
    assert response.status_code == 400, response.text
    data = response.json()
    assert isinstance(data["error"], str) and data["error"]
    assert isinstance(data["details"], dict)
    assert field in data["details"], data
    if field == "_errors":
        assert "colour" in data["details"]["_errors"][0]
    else:
        assert data["details"][field]["_errors"]
    assert parts.backends["test-model"].batches == []


async def test_unknown_key_message_is_zods(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={**BASE, "colour": "red"}, headers=AUTH)
    assert response.json()["details"]["_errors"] == ["Unrecognized key(s) in object: 'colour'"]


async def test_divisor_message_says_what_is_allowed(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={**BASE, "width": 100}, headers=AUTH)
    assert "divisible by 8" in response.json()["details"]["width"]["_errors"][0]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"width": 1024}, "width"),
        ({"aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"resolution": "4K"}, "resolution"),
    ],
)
async def test_aspect_ratio_model_errors(
    client: httpx.AsyncClient, fields: dict[str, Any], field: str
) -> None:
    payload = {"model": "ratio-model", "prompt": "x", **fields}
    response = await client.post(URL, json=payload, headers=AUTH)
    assert response.status_code == 400
    assert field in response.json()["details"]


async def test_negative_prompt_on_a_family_without_one(client: httpx.AsyncClient) -> None:
    payload = {
        "model": "guidance-model",
        "prompt": "x",
        "negative_prompt": "fog",
        "width": 64,
        "height": 64,
    }
    response = await client.post(URL, json=payload, headers=AUTH)
    assert response.status_code == 400
    message = response.json()["details"]["negative_prompt"]["_errors"][0]
    assert "guidance-model" in message


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={**BASE, "model": "nope"}, headers=AUTH)
    assert response.status_code == 404
    assert response.json() == {"error": "Specified model not found"}


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        URL,
        content=b'{"model": "test-model", "prompt": ',
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "Malformed JSON" in response.json()["error"]


@pytest.mark.parametrize("content", [b"[1, 2]", b'"text"', b"null"])
async def test_non_object_json_is_400(client: httpx.AsyncClient, content: bytes) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post(URL, content=content, headers=headers)
    assert response.status_code == 400
    assert "details" in response.json()


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        URL,
        content=b'{"model":"test-model","prompt":"x"}',
        headers={**AUTH, "Content-Type": content_type},
    )
    assert response.status_code == 415
    assert response.json() == {"error": "Invalid request content-type"}


@pytest.mark.parametrize("path", ["/api/v1/image/styles", "/api/v1/models"])
async def test_a_post_to_a_get_only_path_is_405_whatever_its_body(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.post(path, content=b"x", headers={**AUTH, "Content-Type": "text/plain"})
    assert response.status_code == 405
    assert response.json() == {"error": "Method Not Allowed"}
    assert response.headers["allow"] == "GET"


async def test_a_post_to_an_unknown_api_path_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/nope", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 404
    assert response.json() == {"error": "Not Found"}


async def test_body_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json={**BASE, "prompt": "x" * 2_000_000}, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
    ids=["none", "wrong key", "wrong scheme"],
)
async def test_authentication_failed(
    client: httpx.AsyncClient, parts: FakeEngineParts, headers: dict[str, str]
) -> None:
    response = await client.post(URL, json=BASE, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication failed"}
    assert parts.backends["test-model"].batches == []


async def test_inference_failure_is_500_and_the_server_goes_on(
    client: httpx.AsyncClient, parts: FakeEngineParts
) -> None:
    backend = parts.backends["test-model"]
    backend.fail_when = lambda batch: batch[0].prompt == "boom"
    response = await client.post(URL, json={**BASE, "prompt": "boom"}, headers=AUTH)
    assert response.status_code == 500
    assert response.json() == {"error": "Inference processing failed"}
    assert (await client.post(URL, json=BASE, headers=AUTH)).status_code == 200


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/nope")).status_code == 404
    response = await client.get(URL, headers=AUTH)
    assert response.status_code == 405
    assert "error" in response.json()


async def test_full_queue_is_503_with_retry_after_then_recovers(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    engine = fake_engine(parts, config=SchedulerConfig(max_queue=1))
    async with running(make_settings(tmp_path), engine) as client:
        backend = parts.backends["test-model"]
        backend.gate = threading.Event()
        first = asyncio.create_task(client.post(URL, json=BASE, headers=AUTH))
        await asyncio.to_thread(backend.started.wait, 10)
        queued = asyncio.create_task(client.post(URL, json=BASE, headers=AUTH))
        while engine.queue_depth("test-model") == 0:
            await asyncio.sleep(0.01)
        refused = await client.post(URL, json=BASE, headers=AUTH)
        assert refused.status_code == 503
        assert refused.json() == {"error": "The model is at capacity. Please try again later."}
        assert int(refused.headers["retry-after"]) > 0
        backend.gate.set()
        assert (await first).status_code == 200 and (await queued).status_code == 200
        assert (await client.post(URL, json=BASE, headers=AUTH)).status_code == 200
