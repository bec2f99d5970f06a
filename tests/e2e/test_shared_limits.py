"""Two real server processes sharing the local Redis never let a key past its limit."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.redis]

REDIS_URL = os.environ.get("MURANO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LIMIT = 5


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    key = f"shared-{secrets.token_hex(8)}"  # a key no other run has counted against
    env = {
        **os.environ,
        "MURANO_API_KEYS": key,
        "MURANO_ACCOUNTS_BACKEND": "static",
        "MURANO_REDIS_URL": REDIS_URL,
        "MURANO_DEFAULT_RPM": str(LIMIT),
        "HF_HUB_OFFLINE": "1",
    }
    processes: list[subprocess.Popen[bytes]] = []
    logs = []
    bases: list[str] = []
    try:
        for i in range(2):  # one after the other: the first builds the shared tiny model
            port = free_port()
            log = tmp_path / f"server{i}.log"
            logs.append(log.open("w"))
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "murano",
                    "serve",
                    "--port",
                    str(port),
                    "--data-dir",
                    str(tmp_path / "data"),
                ],
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
            )
            processes.append(process)
            bases.append(f"http://127.0.0.1:{port}")
            wait_ready(bases[-1], process, log)
        yield key, bases
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        for handle in logs:
            handle.close()


def test_two_processes_share_one_limit(two_servers: tuple[str, list[str]]) -> None:
    key, bases = two_servers
    # Windows are calendar minutes: start early in one so all requests fall in it.
    second = time.time() % 60
    if second > 40:
        time.sleep(61 - second)
    statuses = []
    for i in range(4 * LIMIT):
        response = httpx.post(
            f"{bases[i % 2]}/api/v1/image/generate",
            json={"model": "murano-tiny", "prompt": "x", "width": 64, "height": 64},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        statuses.append(response.status_code)
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == 3 * LIMIT
