"""`murano generate` through the real async job API (the server answers `Prefer:
respond-async` with 202): the job is in the caller's job list, and the client's event
stream carries the server's real `progress` events, previews included."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image

from murano.cli import main
from murano.cli._client import Client, ServerEvent
from tests.cli.conftest import KEY
from tests.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STEPS = 8


def test_murano_generate_runs_as_an_async_job(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lighthouse.png"
    argv = ["a lighthouse", "-o", str(out), "--steps", str(STEPS), "--size", "64x64"]
    status = main(["generate", *argv, "--seed", "7", "--url", server.url, "--key", KEY])
    stdout, stderr = capsys.readouterr()

    assert status == 0, stderr
    assert str(out) in stdout
    with Image.open(out) as image:
        assert image.format == "PNG"
    jobs = httpx.get(
        f"{server.url}/api/v1/image/jobs",
        params={"limit": 1},
        headers={"Authorization": f"Bearer {KEY}"},
    ).json()["data"]
    assert jobs[0]["status"] == "delivered"
    assert jobs[0]["progress"] == {"step": STEPS, "steps": STEPS}
    assert jobs[0]["result"]["request"]["data"]["seed"] == 7


def test_the_client_is_fed_by_the_real_event_stream(server: LiveServer) -> None:
    events: list[ServerEvent] = []
    body = {"model": "murano-tiny", "prompt": "a lighthouse", "width": 64, "height": 64}
    with Client(server.url, KEY, timeout_s=120) as client:
        result = client.generate({**body, "steps": STEPS, "seed": 3}, events.append)

    names = [event.event for event in events]
    assert names[0] == "queued"  # the 202 answer itself
    assert "started" in names
    progress = [event.data for event in events if event.event == "progress"]
    steps = [p["step"] for p in progress]
    assert steps == sorted(set(steps))
    assert steps[-1] == STEPS
    assert {p["steps"] for p in progress} == {STEPS}
    previews = [p["preview"] for p in progress if "preview" in p]
    assert previews, "no preview in the progress events"
    preview = Image.open(io.BytesIO(base64.b64decode(previews[0])))
    assert preview.format == "WEBP"
    assert max(preview.size) <= 256
    assert len(result["images"]) == 1
