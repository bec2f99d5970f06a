"""safe_mode, the prompt policy, watermarks and metadata, through HTTP."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from murano.accounts import MemoryAccounts
from murano.imaging.blur import detail_retained
from murano.imaging.metadata import read_metadata
from murano.imaging.watermark import has_watermark
from murano.safety import TransformersClassifier, build_tiny_classifier
from tests.conftest import AUTH, FakeEngineParts, fake_engine, make_settings, running

URL = "/api/v1/image/generate"


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "test-model",
        "prompt": "a lighthouse",
        "width": 256,
        "height": 256,
        "seed": 5,
        "format": "png",
        **fields,
    }


def flag_all(images: Sequence[Image.Image]) -> list[bool]:
    return [True] * len(images)


def image_of(response: httpx.Response, index: int = 0) -> bytes:
    return base64.b64decode(response.json()["images"][index])


@pytest.fixture
async def flagging(tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[httpx.AsyncClient]:
    engine = fake_engine(parts)
    async with running(make_settings(tmp_path), engine, inspector=flag_all) as client:
        yield client


async def test_flagged_images_are_blurred(
    flagging: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    plain = await client.post(URL, json=body(safe_mode=False), headers=AUTH)
    blurred = await flagging.post(URL, json=body(), headers=AUTH)
    assert blurred.headers["x-venice-is-blurred"] == "true"
    assert "x-murano-safety-checked" not in blurred.headers
    original = Image.open(io.BytesIO(image_of(plain)))
    result = Image.open(io.BytesIO(image_of(blurred)))
    # Under 5% of the original's fine detail survives (see murano.imaging.blur).
    assert detail_retained(original, result) < 0.05


async def test_safe_mode_off_skips_the_check(flagging: httpx.AsyncClient) -> None:
    response = await flagging.post(URL, json=body(safe_mode=False), headers=AUTH)
    assert response.headers["x-venice-is-blurred"] == "false"
    openai = await flagging.post(
        "/api/v1/images/generations",
        json={"prompt": "x", "size": "256x256", "moderation": "low"},
        headers=AUTH,
    )
    assert openai.headers["x-venice-is-blurred"] == "false"
    moderated = await flagging.post(
        "/api/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=AUTH
    )
    assert moderated.headers["x-venice-is-blurred"] == "true"


@pytest.mark.parametrize(("threshold", "blurred"), [(0.0, "true"), (1.01, "false")])
async def test_real_classifier_code_path(
    tmp_path: Path, parts: FakeEngineParts, threshold: float, blurred: str
) -> None:
    model_dir = build_tiny_classifier(tmp_path / "classifier")
    classifier = TransformersClassifier(str(model_dir), threshold=threshold)
    engine = fake_engine(parts)
    async with running(make_settings(tmp_path), engine, inspector=classifier.flag) as client:
        response = await client.post(URL, json=body(variants=2), headers=AUTH)
    assert response.headers["x-venice-is-blurred"] == blurred


async def test_an_app_given_its_engine_still_classifies(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    """`create_app(engine=..., inspector=...)`: the inspector is the one every job's
    safety decision names, whoever built the engine; it sees each safe-mode image once."""
    seen: list[int] = []

    def flag_first(images: Sequence[Image.Image]) -> list[bool]:
        seen.append(len(images))
        return [i == 0 for i in range(len(images))]

    async with running(make_settings(tmp_path), fake_engine(parts), inspector=flag_first) as c:
        checked = await c.post(URL, json=body(variants=2), headers=AUTH)
        assert seen == [2]
        unchecked = await c.post(URL, json=body(variants=2, safe_mode=False), headers=AUTH)
    assert seen == [2]
    assert checked.headers["x-venice-is-blurred"] == "true"
    assert "x-murano-safety-checked" not in checked.headers
    assert unchecked.headers["x-venice-is-blurred"] == "false"
    assert "x-murano-safety-checked" not in unchecked.headers


async def test_unchecked_when_no_classifier(client: httpx.AsyncClient) -> None:
    response = await client.post(URL, json=body(), headers=AUTH)
    assert response.headers["x-murano-safety-checked"] == "false"
    off = await client.post(URL, json=body(safe_mode=False), headers=AUTH)
    assert "x-murano-safety-checked" not in off.headers


async def test_blocked_prompt_is_a_blacked_out_200_and_free(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    accounts = MemoryAccounts()
    settings = make_settings(tmp_path, blocked_terms=["forbidden thing"])
    async with running(settings, fake_engine(parts), accounts) as client:
        created = await accounts.create_key(name="t", balance_usd=Decimal("1.00"))
        headers = {"Authorization": f"Bearer {created.secret}"}
        response = await client.post(
            URL, json=body(prompt="A Forbidden Thing at night", variants=2), headers=headers
        )
        assert response.status_code == 200
        assert response.headers["x-venice-is-content-violation"] == "true"
        images = [Image.open(io.BytesIO(image_of(response, i))) for i in range(2)]
        assert all(im.size == (256, 256) and im.getextrema() == ((0, 0),) * 3 for im in images)
        binary = await client.post(
            URL, json=body(prompt="forbidden thing", return_binary=True), headers=headers
        )
        assert binary.headers["content-type"] == "image/png"
        assert binary.headers["x-venice-is-content-violation"] == "true"
        assert parts.backends["test-model"].batches == []
        # Nothing was charged: the next request still sees the whole balance.
        balance = await client.post(URL, json=body(), headers=headers)
        assert Decimal(balance.headers["x-venice-balance-usd"]) == Decimal("1")


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
async def test_watermark_by_default_and_hidden_on_request(
    client: httpx.AsyncClient, fmt: str
) -> None:
    marked = await client.post(URL, json=body(format=fmt, width=512, height=512), headers=AUTH)
    assert has_watermark(image_of(marked))
    hidden = await client.post(
        URL, json=body(format=fmt, width=512, height=512, hide_watermark=True), headers=AUTH
    )
    assert not has_watermark(image_of(hidden))


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
async def test_metadata_round_trip(client: httpx.AsyncClient, fmt: str) -> None:
    response = await client.post(
        URL,
        json=body(
            format=fmt,
            embed_exif_metadata=True,
            negative_prompt="fog",
            variants=2,
            style_preset="Anime",
            cfg_scale=6.0,
            steps=7,
        ),
        headers=AUTH,
    )
    first, second = (read_metadata(image_of(response, i)) for i in range(2))
    assert first is not None and second is not None
    assert first.prompt.startswith("a lighthouse, anime illustration")
    assert first.negative_prompt is not None and first.negative_prompt.startswith("fog")
    assert (first.model, first.seed, second.seed, first.steps) == ("test-model", 5, 6, 7)
    assert (first.cfg_scale, first.width, first.height) == (6.0, 256, 256)
    assert first.style_preset == "Anime"


@pytest.mark.parametrize("fmt", ["webp", "png", "jpeg"])
async def test_no_metadata_when_off(client: httpx.AsyncClient, fmt: str) -> None:
    response = await client.post(URL, json=body(format=fmt), headers=AUTH)
    raw = image_of(response)
    assert read_metadata(raw) is None
    image = Image.open(io.BytesIO(raw))
    assert not image.getexif() and "parameters" not in image.info
    assert b"lighthouse" not in raw
