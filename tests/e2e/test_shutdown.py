"""SIGTERM against the real server in a subprocess (embedded tiny model, SQLite accounts):
the requests in flight complete and are charged, a request that arrives while the server
drains gets Venice's 503 with Retry-After, `/readyz` says so, and the process exits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_server import MODEL
from tests.live_server import free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

IN_FLIGHT = 2


def _murano(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "murano", *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def _in_flight(base: str) -> int:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    match = re.search(r"^murano_jobs_in_flight (\S+)$", text, re.MULTILINE)
    return int(float(match.group(1))) if match else 0


def test_sigterm_finishes_what_is_in_flight_and_refuses_the_rest(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "MURANO_DATA_DIR": str(tmp_path),
        # One image per pipeline call, so the jobs in flight take a while in turn.
        "MURANO_MAX_BATCH_IMAGES": "1",
        "MURANO_DRAIN_TIMEOUT_S": "300",
    }
    created = json.loads(
        _murano("keys", "create", "--name", "drain", "--balance-usd", "1", "--json", env=env)
    )
    headers = {"Authorization": f"Bearer {created['key']}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "murano", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(base, process, log_path)
        body = {
            "model": MODEL,
            "prompt": "a lighthouse",
            "width": 512,
            "height": 512,
            "steps": 8,
            "safe_mode": False,
            "format": "png",
        }
        results: list[Any] = [None] * IN_FLIGHT

        def post(i: int) -> None:
            results[i] = httpx.post(
                f"{base}/api/v1/image/generate",
                json={**body, "seed": i + 1},
                headers=headers,
                timeout=300,
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        while _in_flight(base) < IN_FLIGHT:
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        while httpx.get(f"{base}/readyz", timeout=10).status_code == 200:
            time.sleep(0.05)
        ready = httpx.get(f"{base}/readyz", timeout=10)
        assert ready.status_code == 503 and ready.json()["status"] == "draining"
        late = httpx.post(f"{base}/api/v1/image/generate", json=body, headers=headers, timeout=60)
        assert late.status_code == 503
        assert late.json() == {"error": "The server is shutting down. Please try again shortly."}
        assert int(late.headers["retry-after"]) > 0
        for thread in threads:
            thread.join(timeout=300)
        assert [r.status_code for r in results] == [200] * IN_FLIGHT
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    usage = json.loads(_murano("usage", "--json", env=env))
    assert sorted(row["outcome"] for row in usage) == ["delivered"] * IN_FLIGHT
    assert all(float(row["charged_usd"]) > 0 for row in usage)
