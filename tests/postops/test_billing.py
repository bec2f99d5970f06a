"""Money on the post-processing endpoints, on SQLite: an upscale costs its entry's 2x or 4x
price and a cut-out its flat price, only when the PNG is delivered; input errors, inference
failures, timeouts and a short balance charge nothing; rate limits count them like images."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.accounts import SqlAccounts
from murano.engine.scheduler import SchedulerConfig
from tests.accounts.conftest import make_database
from tests.edit.images import encoded
from tests.postops.conftest import (
    REMOVER,
    UPSCALER,
    Parts,
    postop_catalog,
    serving,
)

UPSCALE = "/api/v1/image/upscale"
REMOVE = "/api/v1/image/background-remove"
IMAGE = base64.b64encode(encoded(256, 256)).decode()


@dataclass
class Billing:
    client: httpx.AsyncClient
    accounts: SqlAccounts
    parts: Parts

    async def key(self, balance: str = "1") -> dict[str, str]:
        created = await self.accounts.create_key(name="t", balance_usd=Decimal(balance))
        return {"Authorization": f"Bearer {created.secret}"}

    async def balance(self, headers: dict[str, str]) -> Decimal:
        key = await self.accounts.authenticate(headers["Authorization"].split()[1])
        assert key.balance_usd is not None
        return key.balance_usd


async def _billing(tmp_path: Path, parts: Parts, **options: Any) -> AsyncIterator[Billing]:
    rpm = options.pop("rpm", 1000)
    async with make_database("sqlite", tmp_path) as db:
        accounts = db.accounts(default_rpm=rpm, failure_budget=1000)
        async with serving(tmp_path, parts, accounts=accounts, **options) as client:
            yield Billing(client, accounts, parts)


@pytest.fixture
async def billing(tmp_path: Path, parts: Parts) -> AsyncIterator[Billing]:
    async for b in _billing(tmp_path, parts):
        yield b


@pytest.mark.parametrize(("scale", "charged"), [(2, "0.02"), (4, "0.08")])
async def test_an_upscale_costs_the_entrys_tier(billing: Billing, scale: int, charged: str) -> None:
    key = await billing.key("1")
    response = await billing.client.post(
        UPSCALE, json={"image": IMAGE, "scale": scale}, headers=key
    )
    assert response.status_code == 200
    assert response.headers["x-venice-balance-usd"] == "1"
    assert await billing.balance(key) == Decimal(1) - Decimal(charged)
    usage = await billing.accounts.list_usage(limit=1)
    assert usage[0].model == UPSCALER and usage[0].charged_usd == Decimal(charged)


async def test_custom_upscale_prices_from_the_entry(tmp_path: Path, parts: Parts) -> None:
    prices = {"2x": {"usd": 0.5, "diem": 0.5}, "4x": {"usd": 0.75, "diem": 0.75}}
    catalog = postop_catalog(model_spec={"name": "Mine", "pricing": {"upscale": prices}})
    async for billing in _billing(tmp_path, parts, catalog=catalog):
        key = await billing.key("1")
        body = {"image": IMAGE, "scale": 4}
        assert (await billing.client.post(UPSCALE, json=body, headers=key)).status_code == 200
        assert await billing.balance(key) == Decimal("0.25")


async def test_a_background_removal_costs_its_flat_price(billing: Billing) -> None:
    key = await billing.key("1")
    response = await billing.client.post(REMOVE, json={"image": IMAGE}, headers=key)
    assert response.status_code == 200
    assert await billing.balance(key) == Decimal("0.97")


@pytest.mark.parametrize("url", [UPSCALE, REMOVE])
async def test_short_balance_is_402_and_nothing_runs(billing: Billing, url: str) -> None:
    key = await billing.key("0.01")
    response = await billing.client.post(url, json={"image": IMAGE}, headers=key)
    assert response.status_code == 402
    assert response.json()["error"].startswith("Insufficient USD or Diem balance")
    model = UPSCALER if url == UPSCALE else REMOVER
    assert billing.parts.fake(model).batches == []
    assert await billing.balance(key) == Decimal("0.01")


@pytest.mark.parametrize("url", [UPSCALE, REMOVE])
async def test_a_failed_job_releases_the_reservation(billing: Billing, url: str) -> None:
    key = await billing.key("1")
    model = UPSCALER if url == UPSCALE else REMOVER
    billing.parts.fake(model).fail_when = lambda batch: True
    response = await billing.client.post(url, json={"image": IMAGE}, headers=key)
    assert response.status_code == 500
    assert response.json() == {"error": "Inference processing failed"}
    assert await billing.balance(key) == Decimal("1")
    usage = await billing.accounts.list_usage(limit=1)
    assert usage[0].outcome == "failed" and usage[0].charged_usd == Decimal(0)


@pytest.mark.parametrize("url", [UPSCALE, REMOVE])
async def test_input_errors_charge_nothing(billing: Billing, url: str) -> None:
    key = await billing.key("1")
    small = base64.b64encode(encoded(100, 100)).decode()
    for body in ({"image": small}, {"image": "***"}, {}):
        response = await billing.client.post(url, json=body, headers=key)
        assert response.status_code == 400
        assert response.headers["x-venice-balance-usd"] == "1"
    assert await billing.balance(key) == Decimal("1")


@pytest.mark.parametrize("url", [UPSCALE, REMOVE])
async def test_a_timeout_in_the_queue_releases(tmp_path: Path, parts: Parts, url: str) -> None:
    async for billing in _billing(tmp_path, parts, config=SchedulerConfig(timeout_s=0.0)):
        key = await billing.key("1")
        response = await billing.client.post(url, json={"image": IMAGE}, headers=key)
        assert response.status_code == 504
        assert await billing.balance(key) == Decimal("1")


async def test_rate_limit_counts_post_op_requests(tmp_path: Path, parts: Parts) -> None:
    async for billing in _billing(tmp_path, parts, rpm=2):
        key = await billing.key("1")
        for _ in range(2):
            ok = await billing.client.post(REMOVE, json={"image": IMAGE}, headers=key)
            assert ok.status_code == 200
        limited = await billing.client.post(REMOVE, json={"image": IMAGE}, headers=key)
        assert limited.status_code == 429
        assert limited.json() == {"error": "Rate limit exceeded"}
        assert await billing.balance(key) == Decimal("0.94")
