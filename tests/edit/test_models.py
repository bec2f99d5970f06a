"""`GET /models?type=inpaint`: the edit-capable models, with Venice's inpaint constraints,
`capabilities.maxInputImages` and the edit price; edit-only families stay out of
`type=image` and are refused by `/image/generate`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from murano.catalog.entries import Catalog
from tests.conftest import AUTH, FakeEngineParts, entry, fake_engine, make_settings, running


async def _models(client: httpx.AsyncClient, kind: str) -> dict[str, dict[str, Any]]:
    response = await client.get("/api/v1/models", params={"type": kind})
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == kind and body["object"] == "list"
    return {model["id"]: model for model in body["data"]}


async def test_inpaint_lists_edit_models(client: httpx.AsyncClient) -> None:
    models = await _models(client, "inpaint")
    assert set(models) == {"test-model", "ratio-model", "guidance-model"}
    flux2 = models["guidance-model"]
    assert flux2["type"] == "inpaint"
    spec = flux2["model_spec"]
    assert spec["capabilities"] == {"maxInputImages": 3}
    assert spec["constraints"]["combineImages"] is True
    assert spec["constraints"]["maxInputImages"] == 3
    assert spec["constraints"]["aspectRatios"][0] == "auto"
    assert spec["pricing"] == {"inpaint": {"usd": 0.01, "diem": 0.01}}
    sd = models["test-model"]["model_spec"]
    assert sd["capabilities"] == {"maxInputImages": 1}
    assert sd["constraints"]["combineImages"] is False
    ratio = models["ratio-model"]["model_spec"]["constraints"]
    assert ratio["aspectRatios"] == ["auto", "1:1", "16:9", "9:16"]
    assert ratio["resolutions"] == ["1K", "2K"]


async def test_edit_only_models(tmp_path: Path, parts: FakeEngineParts) -> None:
    editor = entry(
        "editor",
        family="qwen-image-edit-plus",
        load="first-use",
        model_spec={"pricing": {"generation": {"usd": 0.05}, "inpaint": {"usd": 0.04}}},
    )
    catalog = Catalog([entry("test-model"), editor], "test-model")
    async with running(make_settings(tmp_path), fake_engine(parts, catalog=catalog)) as client:
        assert "editor" not in await _models(client, "image")
        inpaint = await _models(client, "inpaint")
        assert inpaint["editor"]["model_spec"]["pricing"] == {"inpaint": {"usd": 0.04}}
        refused = await client.post(
            "/api/v1/image/generate", json={"model": "editor", "prompt": "p"}, headers=AUTH
        )
        assert refused.status_code == 400
        assert "/image/edit" in refused.json()["details"]["model"]["_errors"][0]
