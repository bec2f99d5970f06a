"""Two murano apps in one process: a gateway whose upstream models are served by a second
murano (its own fake engine, keys and balances) and by a small fake OpenAI Images API,
both reached through httpx's ASGI transport. The transport records every upstream request
and can be told to refuse connections, as a stopped upstream does."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image

from murano.accounts import MemoryAccounts
from murano.api.serving import PaymentGate
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.job import Inspector
from murano.gateway import Gateway
from murano.metrics import Metrics
from tests.conftest import (
    FakeEngineParts,
    entry,
    fake_engine,
    make_settings,
    running,
    test_catalog,
)

UPSTREAM_URL = "http://upstream.test/api/v1"
OPENAI_URL = "http://openai.test/v1"
OPENAI_KEY = "sk-operator-openai"
RATIO = {
    "promptCharacterLimit": 200,
    "steps": {"default": 4, "max": 20},
    "widthHeightDivisor": 16,
    "aspectRatios": ["1:1", "16:9", "9:16"],
    "defaultAspectRatio": "1:1",
    "resolutions": ["1K", "2K"],
    "defaultResolution": "1K",
}


def upstream_entry(model_id: str, upstream: dict[str, Any], **spec: Any) -> ModelEntry:
    kind = upstream["kind"]
    raw = {
        "id": model_id,
        "family": f"{kind}-upstream",
        "upstream": upstream,
        "model_spec": {
            "name": f"Proxied {model_id}",
            # Looser than the upstream's divisor of 8: its own check answers for it.
            "constraints": {"promptCharacterLimit": 500, "widthHeightDivisor": 1},
            "pricing": {"generation": {"usd": 0.05, "diem": 0.05}},
            **spec,
        },
    }
    return ModelEntry.model_validate(raw)


def venice(model: str) -> dict[str, Any]:
    return {"kind": "venice", "base_url": UPSTREAM_URL, "key_env": "UPSTREAM_KEY", "model": model}


def gateway_catalog() -> Catalog:
    return Catalog(
        [
            entry("test-model", model_spec={"traits": ["default"]}),
            upstream_entry("proxied", venice("test-model")),
            upstream_entry(
                "proxied-marked",
                {**venice("test-model"), "watermark": True, "safety_check": True},
            ),
            upstream_entry("proxied-slow", {**venice("test-model"), "timeout_s": 0.2}),
            upstream_entry(
                "proxied-ratio",
                venice("ratio-model"),
                constraints=RATIO,
                pricing={"resolutions": {"1K": {"usd": 0.1}, "2K": {"usd": 0.2}}},
            ),
            upstream_entry(
                "openai-proxied",
                {
                    "kind": "openai",
                    "base_url": OPENAI_URL,
                    "key_env": "OPENAI_KEY",
                    "model": "gpt-image-1",
                    "sizes": ["1024x1024", "1536x1024", "1024x1536"],
                },
            ),
            upstream_entry(
                "openai-exact",
                {"kind": "openai", "base_url": OPENAI_URL, "key_env": "OPENAI_KEY"},
            ),
            upstream_entry(
                "proxied-edit",
                {**venice("test-model"), "edits": True},
                constraints={
                    "promptCharacterLimit": 500,
                    "widthHeightDivisor": 8,
                    "maxInputImages": 3,
                },
                pricing={"generation": {"usd": 0.05}, "inpaint": {"usd": 0.07}},
            ),
            upstream_entry(
                "openai-edit",
                {
                    "kind": "openai",
                    "base_url": OPENAI_URL,
                    "key_env": "OPENAI_KEY",
                    "model": "gpt-image-1",
                    "edits": True,
                },
                constraints={
                    "promptCharacterLimit": 500,
                    "widthHeightDivisor": 16,
                    "maxInputImages": 2,
                },
            ),
        ],
        "test-model",
    )


def png(width: int, height: int, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


@dataclass
class FakeOpenAI:
    """OpenAI's Images API as far as the gateway uses it: records each request; the prompt
    "refuse" gets OpenAI's 400 body, "as url" gets data: URLs instead of b64_json."""

    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/images/generations")
        async def generations(request: Request) -> JSONResponse:
            body = await request.json()
            self.requests.append((dict(request.headers), body))
            if body["prompt"] == "refuse":
                error = {"message": "Your request was rejected", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=400)
            width, height = (int(v) for v in body.get("size", "1024x1024").split("x"))
            data = base64.b64encode(png(width // 16, height // 16)).decode()
            key = "url" if body["prompt"] == "as url" else "b64_json"
            value = f"data:image/png;base64,{data}" if key == "url" else data
            items = [{key: value} for _ in range(body.get("n", 1))]
            return JSONResponse({"created": int(time.time()), "data": items})

        @app.post("/v1/images/edits")
        async def edits(request: Request) -> JSONResponse:
            async with request.form() as form:
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
                uploads = {k: [u.filename for u in form.getlist(k)] for k in ("image[]", "mask")}
                mask = form.get("mask")
                if mask is not None and not isinstance(mask, str):
                    with Image.open(io.BytesIO(await mask.read())) as picture:
                        alpha = picture.getchannel("A")
                        # Transparent (0) where OpenAI repaints.
                        fields["mask_alpha"] = (
                            f"{alpha.getpixel((0, 0))},{alpha.getpixel((alpha.width - 1, 0))}"
                        )
            self.requests.append((dict(request.headers), {**fields, "files": uploads}))
            if fields["prompt"] == "refuse":
                error = {"message": "Your request was rejected", "type": "invalid_request_error"}
                return JSONResponse({"error": error}, status_code=400)
            width, height = (int(v) for v in fields.get("size", "1024x1024").split("x"))
            data = base64.b64encode(png(width // 16, height // 16)).decode()
            return JSONResponse({"created": int(time.time()), "data": [{"b64_json": data}]})

        return app


class RecordingTransport(httpx.AsyncBaseTransport):
    """Routes by host to ASGI apps; records every request; `stopped` hosts refuse to connect."""

    def __init__(self, apps: dict[str, Any]) -> None:
        self._routes = {host: httpx.ASGITransport(app=app) for host, app in apps.items()}
        self.requests: list[httpx.Request] = []
        self.stopped: set[str] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        self.requests.append(request)
        if request.url.host in self.stopped:
            raise httpx.ConnectError("connection refused", request=request)
        return await self._routes[request.url.host].handle_async_request(request)


@dataclass
class Pair:
    gateway: httpx.AsyncClient
    upstream: httpx.AsyncClient
    gateway_accounts: MemoryAccounts
    upstream_accounts: MemoryAccounts
    transport: RecordingTransport
    openai: FakeOpenAI
    upstream_parts: FakeEngineParts
    operator_key: str
    caller: dict[str, str]
    metrics: Metrics

    async def balance(self, accounts: MemoryAccounts, secret: str) -> Decimal:
        key = await accounts.authenticate(secret)
        assert key.balance_usd is not None
        return key.balance_usd

    async def caller_balance(self) -> Decimal:
        return await self.balance(self.gateway_accounts, self.caller["Authorization"].split()[1])

    async def operator_balance(self) -> Decimal:
        return await self.balance(self.upstream_accounts, self.operator_key)


async def make_pair(
    tmp_path: Path,
    *,
    operator_balance: str = "1",
    upstream_rpm: int = 100_000,
    inspector: Inspector | None = None,
    environ: dict[str, str] | None = None,
    payment_gate: PaymentGate | None = None,
) -> AsyncIterator[Pair]:
    async with AsyncExitStack() as stack:
        upstream_accounts = MemoryAccounts(default_rpm=upstream_rpm, failure_budget=100_000)
        upstream_parts = FakeEngineParts()
        upstream_settings = make_settings(
            tmp_path / "upstream", api_keys=[], watermark=False, blocked_terms=["forbidden"]
        )
        upstream = await stack.enter_async_context(
            running(
                upstream_settings,
                fake_engine(upstream_parts, catalog=test_catalog()),
                upstream_accounts,
            )
        )
        operator = await upstream_accounts.create_key(
            name="operator", balance_usd=Decimal(operator_balance)
        )
        openai = FakeOpenAI()
        transport = RecordingTransport(
            {"upstream.test": upstream.app, "openai.test": openai.app()}  # type: ignore[attr-defined]
        )
        metrics = Metrics()
        env = {"UPSTREAM_KEY": operator.secret, "OPENAI_KEY": OPENAI_KEY}
        gateway_obj = Gateway(
            metrics=metrics,
            transport=transport,
            environ=env if environ is None else environ,
        )
        gateway_accounts = MemoryAccounts(default_rpm=100_000, failure_budget=100_000)
        engine = fake_engine(FakeEngineParts(), catalog=gateway_catalog())
        client = await stack.enter_async_context(
            running(
                make_settings(tmp_path / "gateway", api_keys=[]),
                engine,
                gateway_accounts,
                gateway=gateway_obj,
                metrics=metrics,
                inspector=inspector,
                payment_gate=payment_gate,
            )
        )
        caller = await gateway_accounts.create_key(name="caller", balance_usd=Decimal("1"))
        yield Pair(
            client,
            upstream,
            gateway_accounts,
            upstream_accounts,
            transport,
            openai,
            upstream_parts,
            operator.secret,
            {"Authorization": f"Bearer {caller.secret}"},
            metrics,
        )


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    async for value in make_pair(tmp_path):
        yield value


def images_of(response: httpx.Response) -> list[Image.Image]:
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in response.json()["images"]]


def flag_all(images: Sequence[Image.Image]) -> list[bool]:
    return [True] * len(images)
