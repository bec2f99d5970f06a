"""x402 on the post-processing endpoints: an anonymous request is validated, then asked
for exactly its price; the x402 SDK pays and gets the PNG."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from x402.http.clients.httpx import x402AsyncTransport

from murano.app import create_app
from murano.payments import build_payment_gate
from tests.edit.images import encoded
from tests.payments.conftest import ORIGIN, Buyer, gate_settings
from tests.payments.facilitator import LocalFacilitator
from tests.postops.conftest import Parts, postop_engine

UPSCALE = "/api/v1/image/upscale"
REMOVE = "/api/v1/image/background-remove"
IMAGE = base64.b64encode(encoded(256, 256)).decode()


@asynccontextmanager
async def paid_app(tmp_path: Path, facilitator: LocalFacilitator) -> AsyncIterator[FastAPI]:
    settings = gate_settings(tmp_path, facilitator.url)
    gate = build_payment_gate(settings, public_url=ORIGIN)
    assert gate is not None
    parts = Parts()
    engine = postop_engine(parts)
    app = create_app(settings, engine=engine, payment_gate=gate)
    async with app.router.lifespan_context(app):
        yield app
    await gate.close()


def paying(app: FastAPI, buyer: Buyer | None = None) -> httpx.AsyncClient:
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
    if buyer is not None:
        transport = x402AsyncTransport(buyer.client, transport=transport)
    return httpx.AsyncClient(transport=transport, base_url=ORIGIN, timeout=30)


async def test_x402_asks_for_the_post_op_price_after_validation(
    tmp_path: Path, facilitator: LocalFacilitator
) -> None:
    async with paid_app(tmp_path, facilitator) as app, paying(app) as http:
        upscale = await http.post(UPSCALE, json={"image": IMAGE, "scale": 4})
        removal = await http.post(REMOVE, json={"image": IMAGE})
        bad = await http.post(UPSCALE, json={"image": IMAGE, "scale": 3})
    assert (upscale.status_code, removal.status_code, bad.status_code) == (402, 402, 400)
    assert upscale.json()["accepts"][0]["amount"] == "80000"  # $0.08 in USDC units
    assert removal.json()["accepts"][0]["amount"] == "30000"
    assert "payment-required" not in bad.headers
    assert not {"verify", "settle"} & set(facilitator.calls)


async def test_x402_sdk_pays_for_an_upscale(
    tmp_path: Path, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    async with paid_app(tmp_path, facilitator) as app, paying(app, buyer) as http:
        response = await http.post(UPSCALE, json={"image": IMAGE})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert "payment-response" in response.headers
