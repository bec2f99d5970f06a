"""The real server in subprocesses: the official `openai` SDK streaming partial images and
the final image (generation and edits); an async job created on one server and served,
with its result, by a second server process on the same PostgreSQL database."""

from __future__ import annotations

import base64
import io
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import openai
import pytest
from openai.types import (
    ImageEditCompletedEvent,
    ImageEditPartialImageEvent,
    ImageGenCompletedEvent,
    ImageGenPartialImageEvent,
)
from PIL import Image

from tests.accounts.conftest import POSTGRES_URL
from tests.live_server import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "e2e-progress-key-0123"
MODEL = "murano-tiny"


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {"MURANO_API_KEYS": KEY, **extra}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = _env({"MURANO_ACCOUNTS_BACKEND": "static"})
    with live_server(tmp_path_factory.mktemp("stream"), env=env) as running:
        yield running.url


def test_openai_sdk_streams_partial_images_then_the_image(server: str) -> None:
    with openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY) as client:
        stream = client.images.generate(
            model=MODEL, prompt="a red boat", size="256x256", stream=True, partial_images=2
        )
        with stream:
            events = list(stream)
    partials = [e for e in events if isinstance(e, ImageGenPartialImageEvent)]
    assert [e.partial_image_index for e in partials] == [0, 1]
    assert isinstance(events[-1], ImageGenCompletedEvent)
    final = events[-1]
    assert (final.size, final.output_format, final.usage.total_tokens) == ("256x256", "png", 0)
    image = Image.open(io.BytesIO(base64.b64decode(final.b64_json)))
    assert image.format == "PNG" and image.size == (256, 256)
    for partial in partials:
        assert Image.open(io.BytesIO(base64.b64decode(partial.b64_json))).format == "PNG"


def test_openai_sdk_streams_an_edit(server: str) -> None:
    source = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 40, 40)).save(source, "PNG")
    with openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY) as client:
        stream = client.images.edit(
            model=MODEL,
            image=("in.png", source.getvalue(), "image/png"),
            prompt="a blue hat",
            size="256x256",
            stream=True,
            partial_images=1,
        )
        with stream:
            events = list(stream)
    partials = [e for e in events if isinstance(e, ImageEditPartialImageEvent)]
    assert [e.partial_image_index for e in partials] == [0]
    final = events[-1]
    assert isinstance(final, ImageEditCompletedEvent)
    assert (final.type, final.size, final.output_format) == (
        "image_edit.completed",
        "256x256",
        "png",
    )
    image = Image.open(io.BytesIO(base64.b64decode(final.b64_json)))
    assert image.format == "PNG" and image.size == (256, 256)


def test_a_streamed_request_that_is_refused_is_a_plain_error(server: str) -> None:
    with (
        openai.OpenAI(base_url=f"{server}/api/v1", api_key=KEY) as client,
        pytest.raises(openai.BadRequestError),
    ):
        client.images.generate(
            model=MODEL, prompt="x" * 1501, size="256x256", stream=True, partial_images=1
        )


@pytest.fixture
def shared_database() -> Iterator[str]:
    import asyncio

    name = f"t_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        admin = await asyncpg.connect(POSTGRES_URL)
        try:
            await admin.execute(sql)
        finally:
            await admin.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.postgres
def test_a_job_id_works_on_a_second_server_sharing_the_database(
    tmp_path: Path, shared_database: str
) -> None:
    env = _env({"MURANO_DATABASE_URL": shared_database})
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    # The first server migrates the database before the second starts.
    with (
        live_server(tmp_path / "a", env=env) as first,
        live_server(tmp_path / "b", env=env) as second,
    ):
        headers = {"Authorization": f"Bearer {KEY}", "Prefer": "respond-async"}
        request = {"model": MODEL, "prompt": "a lighthouse", "width": 256, "height": 256}
        accepted = httpx.post(
            f"{first.url}/api/v1/image/generate", json=request, headers=headers, timeout=60
        )
        assert accepted.status_code == 202, accepted.text
        url = f"/api/v1/image/jobs/{accepted.json()['id']}"
        view = {}
        for _ in range(600):
            view = httpx.get(f"{second.url}{url}", headers=headers, timeout=10).json()
            if view["status"] == "delivered":
                break
            time.sleep(0.1)
        assert view["status"] == "delivered", view
        assert len(view["result"]["images"]) == 1
        events = httpx.get(f"{second.url}{url}/events", headers=headers, timeout=10)
        assert events.text.startswith("event: completed\n")
        other = {"Authorization": "Bearer nobody"}
        assert httpx.get(f"{second.url}{url}", headers=other).status_code == 401
