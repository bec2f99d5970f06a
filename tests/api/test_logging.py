"""One structured log line per request, with no prompt and no key in it."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from tests.conftest import API_KEY, AUTH


async def test_one_json_line_per_request(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="murano.access")
    await client.post(
        "/api/v1/image/generate",
        json={
            "model": "test-model",
            "prompt": "secret lighthouse",
            "width": 64,
            "height": 64,
            "variants": 2,
        },
        headers=AUTH,
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "murano.access"]
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["status"] == 200 and entry["model"] == "test-model" and entry["images"] == 2
    assert entry["route"] == "/api/v1/image/generate" and entry["request_id"]
    assert set(entry["timing"]) >= {"inferenceDuration", "total"}
    assert entry["job_state"] == "delivered"
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert "secret lighthouse" not in everything and API_KEY not in everything
