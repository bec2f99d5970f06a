"""`/models`, `/models/traits`, `/image/styles`, health, readiness and metrics."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings, running


async def test_styles_are_venices_76(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/image/styles")  # open: no key needed
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list" and len(data["data"]) == 76
    assert data["data"][:3] == ["3D Model", "Analog Film", "Anime"]


async def test_models_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/models", params={"type": "image"})
    assert response.status_code == 200
    data = response.json()
    assert data["object"] == "list" and data["type"] == "image"
    by_id = {m["id"]: m for m in data["data"]}
    assert set(by_id) == {"test-model", "ratio-model", "guidance-model"}
    model = by_id["test-model"]
    assert model["object"] == "model" and model["owned_by"] == "venice.ai"
    assert model["type"] == "image"
    spec = model["model_spec"]
    assert spec["constraints"] == {
        "promptCharacterLimit": 200,
        "steps": {"default": 4, "max": 20},
        "widthHeightDivisor": 8,
    }
    # Numbers, as Venice's schema says (not strings).
    assert spec["pricing"]["generation"] == {"usd": 0.01, "diem": 0.01}
    assert spec["offline"] is False and spec["privacy"] == "private"
    assert spec["resident"] is True and by_id["ratio-model"]["model_spec"]["resident"] is False
    assert by_id["ratio-model"]["model_spec"]["constraints"]["aspectRatios"] == [
        "1:1",
        "16:9",
        "9:16",
    ]


@pytest.mark.parametrize("kind", ["text", "video"])
async def test_other_types_are_empty(client: httpx.AsyncClient, kind: str) -> None:
    data = (await client.get("/api/v1/models", params={"type": kind})).json()
    assert data == {"data": [], "object": "list", "type": kind}


async def test_invalid_type_is_400(client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/models", "/api/v1/models/traits"):
        response = await client.get(path, params={"type": "bogus"})
        assert response.status_code == 400
        assert "type" in response.json()["details"]


async def test_traits(client: httpx.AsyncClient) -> None:
    data = (await client.get("/api/v1/models/traits", params={"type": "image"})).json()
    assert data == {
        "data": {"default": "test-model", "fastest": "test-model"},
        "object": "list",
        "type": "image",
    }


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    await client.post(
        "/api/v1/image/generate",
        json={"model": "test-model", "prompt": "x", "width": 64, "height": 64},
        headers=AUTH,
    )
    text = (await client.get("/metrics")).text
    for name in (
        "murano_queue_depth",
        "murano_batch_images_bucket",
        "murano_images_generated_total",
        "murano_queue_seconds_bucket",
        "murano_inference_seconds_bucket",
        "murano_postprocess_seconds_bucket",
        "murano_responses_total",
        "murano_model_loaded",
    ):
        assert name in text, name
    assert 'murano_images_generated_total{model="test-model"} 1.0' in text


async def test_a_model_that_fails_to_load(tmp_path: Path, parts: FakeEngineParts) -> None:
    parts.fail_load.add("ratio-model")
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        response = await client.post(
            "/api/v1/image/generate", json={"model": "ratio-model", "prompt": "x"}, headers=AUTH
        )
        assert response.status_code == 503
        assert response.json()["error"].startswith("The model is temporarily offline")
        models = (await client.get("/api/v1/models", params={"type": "image"})).json()
        spec = {m["id"]: m["model_spec"] for m in models["data"]}["ratio-model"]
        assert spec["offline"] is True
        # The rest of the server is unaffected.
        ok = await client.post(
            "/api/v1/image/generate",
            json={"model": "test-model", "prompt": "x", "width": 64, "height": 64},
            headers=AUTH,
        )
        assert ok.status_code == 200


async def test_not_ready_until_the_default_model_loads(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    from murano.app import create_app

    engine = fake_engine(parts)
    app = create_app(make_settings(tmp_path), engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        # Lifespan not run: nothing is loaded yet.
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
