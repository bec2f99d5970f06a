"""Two real murano servers: the second (the embedded tiny model, its own keys and balances
in its own SQLite) is the Venice upstream of the first, a pure gateway whose models file
routes `tiny-upstream` to it with the operator's key in UPSTREAM_KEY. Driven with plain HTTP
and the official `openai` client. The upstream is stopped by the last test."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

UPSTREAM_ADMIN = "upstream-admin-key-0123"
GATEWAY_ADMIN = "gateway-admin-key-0123"

MODELS = """
[[models]]
id = "tiny-upstream"
[models.upstream]
kind = "venice"
base_url = "{base}/api/v1"
key_env = "UPSTREAM_KEY"
model = "murano-tiny"
timeout_s = 60
[models.model_spec]
name = "murano tiny, through a gateway"
constraints = {{ widthHeightDivisor = 1, steps = {{ default = 2, max = 4 }} }}
pricing = {{ generation = {{ usd = 0.05, diem = 0.05 }} }}
"""


@dataclass
class Server:
    base: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(data_dir: Path, env: dict[str, str], *args: str) -> Server:
    port = _free_port()
    log = data_dir / "server.log"
    command = [sys.executable, "-m", "murano", "serve", "--port", str(port)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*command, "--data-dir", str(data_dir), *args],
            env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{server.base}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server not ready:\n{log.read_text()}")


def _key(server: Server, admin: str, name: str) -> str:
    response = httpx.post(
        f"{server.base}/api/v1/api_keys",
        json={"description": name, "apiKeyType": "INFERENCE", "balanceUsd": 1},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert response.status_code == 200, response.text
    secret: str = response.json()["data"]["apiKey"]
    return secret


@dataclass
class Pair:
    gateway: Server
    upstream: Server
    caller: str
    operator: str

    def balance(self, server: Server, key: str) -> Decimal:
        response = httpx.get(
            f"{server.base}/api/v1/api_keys/rate_limits",
            headers={"Authorization": f"Bearer {key}"},
        )
        return Decimal(str(response.json()["data"]["balances"]["USD"]))

    def generate(self, body: dict[str, Any], key: str | None = None) -> httpx.Response:
        return httpx.post(
            f"{self.gateway.base}/api/v1/image/generate",
            json={"model": "tiny-upstream", "prompt": "a red boat", **body},
            headers={"Authorization": f"Bearer {key or self.caller}"},
            timeout=120,
        )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    upstream = _start(tmp_path_factory.mktemp("upstream"), {"MURANO_API_KEYS": UPSTREAM_ADMIN})
    try:
        operator = _key(upstream, UPSTREAM_ADMIN, "gateway operator")
        gateway_dir = tmp_path_factory.mktemp("gateway")
        models = gateway_dir / "models.toml"
        models.write_text(MODELS.format(base=upstream.base), encoding="utf-8")
        env = {"MURANO_API_KEYS": GATEWAY_ADMIN, "UPSTREAM_KEY": operator}
        gateway = _start(gateway_dir, env, "--models", str(models))
        try:
            caller = _key(gateway, GATEWAY_ADMIN, "caller")
            yield Pair(gateway, upstream, caller, operator)
        finally:
            gateway.stop()
    finally:
        upstream.stop()


def test_a_generation_is_billed_by_both_with_the_operators_key(pair: Pair) -> None:
    response = pair.generate({"width": 64, "height": 48, "variants": 2, "format": "png"})
    assert response.status_code == 200, response.text
    images = [Image.open(io.BytesIO(base64.b64decode(b))) for b in response.json()["images"]]
    assert [(i.format, i.size) for i in images] == [("PNG", (64, 48))] * 2
    assert pair.balance(pair.gateway, pair.caller) == Decimal("0.9")
    assert pair.balance(pair.upstream, pair.operator) == Decimal("0.98")
    # The upstream saw the operator's key (its only charged usage), and never the caller's.
    usage = httpx.get(
        f"{pair.upstream.base}/api/v1/usage",
        headers={"Authorization": f"Bearer {UPSTREAM_ADMIN}"},
    ).json()["data"]
    assert {(u["keyName"], u["outcome"]) for u in usage} == {("gateway operator", "delivered")}
    assert pair.caller not in pair.upstream.log.read_text()


def test_the_upstreams_400_comes_back_as_the_same_400(pair: Pair) -> None:
    direct = httpx.post(
        f"{pair.upstream.base}/api/v1/image/generate",
        json={"model": "murano-tiny", "prompt": "a red boat", "width": 60, "height": 64},
        headers={"Authorization": f"Bearer {pair.operator}"},
    )
    proxied = pair.generate({"width": 60, "height": 64})
    assert direct.status_code == proxied.status_code == 400
    assert proxied.json() == direct.json()
    assert pair.balance(pair.gateway, pair.caller) == Decimal("0.9")


def test_return_binary_and_the_openai_sdk(pair: Pair) -> None:
    binary = pair.generate({"width": 64, "height": 64, "return_binary": True, "format": "jpeg"})
    assert binary.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(binary.content)).size == (64, 64)
    with openai.OpenAI(base_url=f"{pair.gateway.base}/api/v1", api_key=pair.caller) as client:
        result = client.images.generate(model="tiny-upstream", prompt="a boat", size="256x256")
    assert result.data is not None and result.data[0].b64_json
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert (image.format, image.size) == ("PNG", (256, 256))
    assert pair.balance(pair.gateway, pair.caller) == Decimal("0.8")
    assert pair.balance(pair.upstream, pair.operator) == Decimal("0.96")


def test_a_stopped_upstream_gives_503_and_releases_the_reservation(pair: Pair) -> None:
    pair.upstream.stop()
    response = pair.generate({"width": 64, "height": 64})
    assert response.status_code == 503
    assert "retry-after" in response.headers
    assert pair.balance(pair.gateway, pair.caller) == Decimal("0.8")
    metrics = httpx.get(f"{pair.gateway.base}/metrics").text
    assert "murano_upstream_errors_total{" in metrics and 'reason="connect"' in metrics
