"""murano on Ray Serve, end to end: two CPU replicas of the tiny model behind the ingress
(the conftest's session cluster), PostgreSQL for the money and jobs, Redis for limits.
The last test stops the server: keep it last."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import re
import signal
import subprocess
import time
from decimal import Decimal

import httpx
import pytest
from openai import OpenAI
from PIL import Image

from tests.ray.conftest import MODEL, PRICE, RayServer

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.postgres]

MICROS = int(PRICE * Decimal(1_000_000))
# Big enough that a job is still on the device when the test acts on it (a few seconds).
SLOW = {"model": MODEL, "prompt": "slow", "width": 512, "height": 512, "steps": 50}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


async def _settled(server: RayServer, key_id: str) -> dict[str, object]:
    """The key's ledger once nothing is reserved any more (settlement follows the response)."""
    for _ in range(200):
        ledger = await server.ledger(key_id)
        if ledger["reserved"] == 0 and ledger["open_reservations"] == 0:
            return ledger
        await asyncio.sleep(0.05)
    return await server.ledger(key_id)


def test_ray_stays_on_loopback(ray_server: RayServer) -> None:
    links = subprocess.run(
        ["ip", "netns", "exec", ray_server.namespace, "ip", "-o", "link"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def test_both_generate_endpoints_through_the_serve_proxy(ray_server: RayServer) -> None:
    key, _ = ray_server.create_key()
    with ray_server.client(timeout=120) as client:
        response = client.post(
            "/api/v1/image/generate",
            json={"model": MODEL, "prompt": "a lighthouse", "width": 64, "height": 64},
            headers=_auth(key),
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["id"].startswith("generate-image-")
        image = Image.open(io.BytesIO(base64.b64decode(body["images"][0])))
        assert image.size == (64, 64)
        assert response.headers["x-venice-model-id"] == MODEL
        models = client.get("/api/v1/models", headers=_auth(key)).json()
        assert [m["id"] for m in models["data"]] == [MODEL]

    with ray_server.client(timeout=120) as http:
        openai = OpenAI(base_url="http://murano/api/v1", api_key=key, http_client=http)
        result = openai.images.generate(model=MODEL, prompt="a lighthouse", size="256x256")
    assert result.data is not None and result.data[0].b64_json is not None
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.format == "PNG" and image.size == (256, 256)


def test_streaming_and_async_jobs_through_the_ingress(ray_server: RayServer) -> None:
    key, _ = ray_server.create_key()
    with ray_server.client(timeout=120) as http:
        openai = OpenAI(base_url="http://murano/api/v1", api_key=key, http_client=http)
        events = list(
            openai.images.generate(
                model=MODEL, prompt="stream", size="256x256", stream=True, partial_images=2
            )
        )
    kinds = [event.type for event in events]
    assert kinds[-1] == "image_generation.completed"
    assert "image_generation.partial_image" in kinds  # previews came back from the replica

    with ray_server.client(timeout=120) as client:
        created = client.post(
            "/api/v1/image/jobs",
            json={"model": MODEL, "prompt": "async", "width": 64, "height": 64},
            headers=_auth(key),
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]
        for _ in range(600):
            view = client.get(f"/api/v1/image/jobs/{job_id}", headers=_auth(key)).json()
            time.sleep(0.1)
            if view["status"] in ("delivered", "cancelled", "failed", "expired"):
                break  # an end state (postprocessing and sending come before delivered)
        assert view["status"] == "delivered", view
        assert view["result"]["images"]


async def test_exact_billing_under_concurrent_load_and_cancelled_requests(
    ray_server: RayServer,
) -> None:
    key, key_id = ray_server.create_key("1")
    before = await ray_server.ledger(key_id)
    body = {"model": MODEL, "prompt": "load", "width": 64, "height": 64, "steps": 4}
    async with ray_server.async_client(timeout=120, headers=_auth(key)) as client:
        responses = await asyncio.gather(
            *(client.post("/api/v1/image/generate", json={**body, "seed": i}) for i in range(16))
        )
        assert [r.status_code for r in responses] == [200] * 16
        # Clients that give up while their job runs: cancelled, nothing charged.
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                await client.post("/api/v1/image/generate", json=SLOW, timeout=1.0)
    after = await _settled(ray_server, key_id)
    assert after["open_reservations"] == 0 and after["reserved"] == 0
    assert after["charged"] == before["charged"] + 16 * MICROS
    assert after["balance"] == before["balance"] - 16 * MICROS


async def test_a_killed_replica_fails_its_jobs_cleanly_and_the_survivor_serves(
    ray_server: RayServer,
) -> None:
    key, key_id = ray_server.create_key("1")
    before = await ray_server.ledger(key_id)
    replicas = ray_server.replica_pids()
    assert len(replicas) == 2
    async with ray_server.async_client(timeout=180, headers=_auth(key)) as client:
        baseline = _metric((await client.get("/metrics")).text, "murano_job_seconds_count",
                           model=MODEL, state="queued")  # fmt: skip
        load = [
            asyncio.ensure_future(client.post("/api/v1/image/generate", json={**SLOW, "seed": i}))
            for i in range(8)
        ]
        # Serve spreads the 8 between the replicas; once two jobs have reached a device,
        # each replica has work in flight.
        for _ in range(1200):
            metrics = (await client.get("/metrics")).text
            started = _metric(metrics, "murano_job_seconds_count", model=MODEL, state="queued")
            if started - baseline >= 2:
                break
            await asyncio.sleep(0.05)
        os.kill(replicas[0], signal.SIGKILL)
        responses = await asyncio.gather(*load)
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 500}, [r.text for r in responses]
        failed = [r for r in responses if r.status_code == 500]
        assert failed, "the killed replica had no job in flight"
        assert all(r.json()["error"] == "Inference processing failed" for r in failed)
        succeeded = len(responses) - len(failed)
        # Meanwhile Serve replaces the replica; new requests succeed on the survivor.
        small = {"model": MODEL, "prompt": "after", "width": 64, "height": 64}
        later = [await client.post("/api/v1/image/generate", json=small) for _ in range(4)]
        assert [r.status_code for r in later] == [200] * 4
    # ... and Serve has started a replacement for the dead replica.
    for _ in range(600):
        if set(ray_server.replica_pids()) - set(replicas):
            break
        await asyncio.sleep(0.1)
    assert set(ray_server.replica_pids()) - set(replicas)
    after = await _settled(ray_server, key_id)
    assert after["open_reservations"] == 0 and after["reserved"] == 0
    charged = (succeeded + len(later)) * MICROS
    assert after["charged"] == before["charged"] + charged
    assert after["balance"] == before["balance"] - charged


def test_shutdown_leaves_no_ray_process_behind(ray_server: RayServer) -> None:
    """Last: SIGTERM drains and deletes the application, then stops Ray."""
    assert ray_server.stop() == 0
    assert ray_server.namespace_processes() == []
