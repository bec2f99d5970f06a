"""CORS for browser apps on other origins (`MURANO_CORS_ORIGINS`), and the health, readiness
and metrics routes at the root and under /api/v1, as the README says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings, running

ORIGIN = "https://app.example.com"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization,content-type",
}


async def test_preflight_from_an_allowed_origin(
    tmp_path: Path, parts: FakeEngineParts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MURANO_CORS_ORIGINS", f"{ORIGIN}, https://other.example.com")
    settings = make_settings(tmp_path)
    assert settings.cors_origins == [ORIGIN, "https://other.example.com"]
    async with running(settings, fake_engine(parts)) as client:
        preflight = await client.options("/api/v1/image/generate", headers=PREFLIGHT)
        body = {"model": "test-model", "prompt": "a boat", "width": 64, "height": 64}
        headers = {**AUTH, "Origin": ORIGIN}
        generated = await client.post("/api/v1/image/generate", json=body, headers=headers)
        refused = await client.post("/api/v1/image/generate", json={}, headers=headers)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    allowed = preflight.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert generated.status_code == 200
    assert generated.headers["access-control-allow-origin"] == ORIGIN
    exposed = generated.headers["access-control-expose-headers"].lower()
    assert "x-venice-balance-usd" in exposed and "x-ratelimit-remaining-requests" in exposed
    # Errors carry the headers too, or a browser app could not read the message.
    assert refused.status_code == 400
    assert refused.headers["access-control-allow-origin"] == ORIGIN


async def test_preflight_from_another_origin_is_refused(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    settings = make_settings(tmp_path, cors_origins=[ORIGIN])
    async with running(settings, fake_engine(parts)) as client:
        other = {**PREFLIGHT, "Origin": "https://evil.example.com"}
        preflight = await client.options("/api/v1/image/generate", headers=other)
    assert preflight.status_code == 400
    assert "access-control-allow-origin" not in preflight.headers


async def test_any_origin(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path, cors_origins=["*"]), fake_engine(parts)) as client:
        preflight = await client.options("/api/v1/models", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"


async def test_no_cors_by_default(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        preflight = await client.options("/api/v1/image/generate", headers=PREFLIGHT)
        plain = await client.get("/api/v1/models", headers={"Origin": ORIGIN})
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in plain.headers


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_health_readiness_and_metrics(
    tmp_path: Path, parts: FakeEngineParts, prefix: str
) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        health = await client.get(f"{prefix}/healthz")
        ready = await client.get(f"{prefix}/readyz")
        metrics = await client.get(f"{prefix}/metrics")
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "murano_queue_depth" in metrics.text


async def test_openapi_docs_are_served(tmp_path: Path, parts: FakeEngineParts) -> None:
    async with running(make_settings(tmp_path), fake_engine(parts)) as client:
        docs = await client.get("/docs")
        redoc = await client.get("/redoc")
        schema = await client.get("/openapi.json")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert redoc.status_code == 200 and "redoc" in redoc.text.lower()
    assert "/api/v1/image/generate" in schema.json()["paths"]
