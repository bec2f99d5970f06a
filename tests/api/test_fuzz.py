"""Property-based fuzz of the image endpoints: whatever the body, never a 5xx, always a
JSON error body on failure, and the server keeps answering."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from murano.app import create_app
from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings

FIELDS = [
    "model",
    "prompt",
    "negative_prompt",
    "width",
    "height",
    "aspect_ratio",
    "resolution",
    "quality",
    "cfg_scale",
    "steps",
    "seed",
    "variants",
    "lora_strength",
    "style_preset",
    "style_references",
    "format",
    "return_binary",
    "embed_exif_metadata",
    "hide_watermark",
    "safe_mode",
    "enable_web_search",
    "enhance_prompt",
    "disable_prompt_optimization_thinking",
    "inpaint",
    "n",
    "size",
    "output_format",
    "response_format",
    "moderation",
    "user",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.sampled_from([0, 1, 8, 16, 64, 1024, 1280, 1281, -1, 999_999_999]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=20),
    st.sampled_from(
        [
            "test-model",
            "ratio-model",
            "webp",
            "png",
            "1:1",
            "16:9",
            "1K",
            "2K",
            "Anime",
            "auto",
            "low",
            "b64_json",
            "url",
            "256x256",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(FIELDS), values, max_size=8),
    st.fixed_dictionaries(
        {
            "model": st.sampled_from(["test-model", "ratio-model", "nope"]),
            "prompt": st.text(min_size=1, max_size=30),
        },
        optional={name: values for name in FIELDS[2:12]},
    ),
    values,
)


@pytest.fixture(scope="module")
def sync_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    app = create_app(make_settings(tmp), engine=fake_engine(FakeEngineParts()))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, path=st.sampled_from(["/api/v1/image/generate", "/api/v1/images/generations"]))
def test_no_body_produces_a_5xx(sync_client: TestClient, body: Any, path: str) -> None:
    if isinstance(body, dict):
        # Keep the images small: valid sizes would otherwise make 1024² images.
        for side in ("width", "height"):
            body.setdefault(side, 64)
        if body.get("size") != "256x256":
            body.pop("size", None)
    response = sync_client.post(path, json=body, headers=AUTH)
    assert response.status_code < 500, (body, response.text)
    if response.status_code >= 400:
        payload = response.json()
        assert isinstance(payload["error"], str)
    assert sync_client.get("/healthz").status_code == 200
