"""Keys, balances and rate limits through the generate endpoint, on SQLite and PostgreSQL:
401/402/429 bodies and headers, and a reservation released on every failure path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.accounts import SqlAccounts
from murano.engine.scheduler import SchedulerConfig
from tests.accounts.conftest import Database, make_database
from tests.conftest import (
    FakeEngineParts,
    fake_engine,
    generation_params,
    make_settings,
    running,
)

URL = "/api/v1/image/generate"
INSUFFICIENT = {
    "error": "Insufficient USD or Diem balance to complete request. "
    "Ask this server's operator to top up your API key."
}


def body(**fields: Any) -> dict[str, Any]:
    return {
        "model": "test-model",
        "prompt": "a lighthouse",
        "width": 64,
        "height": 64,
        "format": "png",
        **fields,
    }


@dataclass
class Billing:
    client: httpx.AsyncClient
    accounts: SqlAccounts
    parts: FakeEngineParts

    async def key(self, balance: str | None = "1", **options: Any) -> dict[str, str]:
        created = await self.accounts.create_key(
            name="t", balance_usd=None if balance is None else Decimal(balance), **options
        )
        return {"Authorization": f"Bearer {created.secret}"}

    async def balance(self, headers: dict[str, str]) -> Decimal:
        key = await self.accounts.authenticate(headers["Authorization"].split()[1])
        assert key.balance_usd is not None
        return key.balance_usd


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with make_database(request.param, tmp_path) as database:
        yield database


async def _billing(
    db: Database, tmp_path: Path, parts: FakeEngineParts, **settings: Any
) -> AsyncIterator[Billing]:
    config = settings.pop("config", None)
    accounts = db.accounts(
        default_rpm=settings.pop("rpm", 1000), failure_budget=settings.pop("budget", 1000)
    )
    engine = fake_engine(parts, config=config)
    async with running(make_settings(tmp_path, **settings), engine, accounts) as client:
        yield Billing(client, accounts, parts)


@pytest.fixture
async def billing(db: Database, tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[Billing]:
    async for b in _billing(db, tmp_path, parts):
        yield b


async def test_delivered_images_are_charged(billing: Billing) -> None:
    key = await billing.key("1")
    response = await billing.client.post(URL, json=body(variants=3), headers=key)
    assert response.status_code == 200
    assert response.headers["x-venice-balance-usd"] == "1"  # the balance before
    assert await billing.balance(key) == Decimal("0.97")
    again = await billing.client.post(URL, json=body(), headers=key)
    assert again.headers["x-venice-balance-usd"] == "0.97"


async def test_short_balance_is_402_and_nothing_runs(billing: Billing) -> None:
    key = await billing.key("0.015")
    response = await billing.client.post(URL, json=body(variants=2), headers=key)
    assert response.status_code == 402
    assert response.json() == INSUFFICIENT
    assert response.headers["x-venice-balance-usd"] == "0.015"
    assert billing.parts.backends["test-model"].batches == []
    assert await billing.balance(key) == Decimal("0.015")


async def test_balance_header_on_errors_too(billing: Billing) -> None:
    key = await billing.key("2")
    response = await billing.client.post(URL, json=body(width=100), headers=key)
    assert response.status_code == 400
    assert response.headers["x-venice-balance-usd"] == "2"


async def test_unlimited_key(billing: Billing) -> None:
    key = await billing.key(None)
    response = await billing.client.post(URL, json=body(variants=4), headers=key)
    assert response.status_code == 200
    assert "x-venice-balance-usd" not in response.headers


async def test_revoked_key_is_401(billing: Billing) -> None:
    created = await billing.accounts.create_key(name="gone", balance_usd=Decimal(1))
    await billing.accounts.revoke_key(created.key.id)
    response = await billing.client.post(
        URL, json=body(), headers={"Authorization": f"Bearer {created.secret}"}
    )
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication failed"}


async def test_failed_inference_releases_the_reservation(billing: Billing) -> None:
    key = await billing.key("1")
    billing.parts.backends["test-model"].fail_when = lambda batch: True
    response = await billing.client.post(URL, json=body(variants=2), headers=key)
    assert response.status_code == 500
    assert await billing.balance(key) == Decimal("1")
    usage = await billing.accounts.list_usage(limit=1)
    assert usage[0].outcome == "failed" and usage[0].charged_usd == Decimal(0)


async def test_unknown_model_and_bad_size_charge_nothing(billing: Billing) -> None:
    key = await billing.key("1")
    for payload in (body(model="nope"), body(width=99), body(steps=99)):
        response = await billing.client.post(URL, json=payload, headers=key)
        assert response.status_code in {400, 404}
    assert await billing.balance(key) == Decimal("1")


async def test_rate_limit_429_and_headers(
    db: Database, tmp_path: Path, parts: FakeEngineParts
) -> None:
    async for billing in _billing(db, tmp_path, parts, rpm=3):
        key = await billing.key("1")
        ok = await billing.client.post(URL, json=body(variants=2), headers=key)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        assert ok.headers["x-ratelimit-remaining-requests"] == "1"
        assert int(ok.headers["x-ratelimit-reset-requests"]) > 1_700_000_000_000  # Unix ms
        limited = await billing.client.post(URL, json=body(variants=2), headers=key)
        assert limited.status_code == 429
        assert limited.json() == {"error": "Rate limit exceeded"}
        assert limited.headers["x-ratelimit-remaining-requests"] == "1"
        assert int(limited.headers["retry-after"]) >= 1
        assert await billing.balance(key) == Decimal("0.98")


async def test_failure_budget(db: Database, tmp_path: Path, parts: FakeEngineParts) -> None:
    async for billing in _billing(db, tmp_path, parts, budget=2):
        key = await billing.key("1")
        for _ in range(3):
            assert (
                await billing.client.post(URL, json=body(width=99), headers=key)
            ).status_code == 400
        blocked = await billing.client.post(URL, json=body(), headers=key)
        assert blocked.status_code == 429
        assert blocked.json()["error"].startswith("Too many failed attempts (> 2)")


async def test_deadline_releases_the_reservation(
    db: Database, tmp_path: Path, parts: FakeEngineParts
) -> None:
    config = SchedulerConfig(timeout_s=0.0)
    async for billing in _billing(db, tmp_path, parts, config=config):
        key = await billing.key("1")
        response = await billing.client.post(URL, json=body(), headers=key)
        assert response.status_code == 504
        assert await billing.balance(key) == Decimal("1")


async def test_shutdown_releases_reservations(
    db: Database, tmp_path: Path, parts: FakeEngineParts
) -> None:
    async for billing in _billing(db, tmp_path, parts):
        key = await billing.key("1")
        engine = billing.client.app.state.engine  # type: ignore[attr-defined]
        backend = parts.backends["test-model"]
        backend.gate = threading.Event()
        running_job = asyncio.create_task(billing.client.post(URL, json=body(seed=1), headers=key))
        await asyncio.to_thread(backend.started.wait, 10)
        queued = asyncio.create_task(billing.client.post(URL, json=body(seed=2), headers=key))
        while engine.queue_depth("test-model") == 0:
            await asyncio.sleep(0.01)
        closing = asyncio.create_task(engine.close())
        await asyncio.sleep(0.05)
        backend.gate.set()
        await closing
        for task in (running_job, queued):
            assert (await task).status_code != 200
        assert await billing.balance(key) == Decimal("1")


async def test_fifty_concurrent_requests_on_ten_images(billing: Billing) -> None:
    key = await billing.key("0.10")
    responses = await asyncio.gather(
        *(billing.client.post(URL, json=body(seed=i + 1), headers=key) for i in range(50))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10 and statuses.count(402) == 40
    assert await billing.balance(key) == Decimal("0")


async def test_disconnect_before_start_removes_the_job_and_charges_nothing(
    billing: Billing,
) -> None:
    from murano.accounts.credentials import Credentials
    from murano.api.delivery import Delivery
    from murano.api.job_spec import JobSpec, OutputRequest
    from murano.errors import JobCancelled

    key = await billing.key("1")
    principal = await billing.accounts.authenticate(key["Authorization"].split()[1])
    app = billing.client.app  # type: ignore[attr-defined]
    backend = billing.parts.backends["test-model"]
    backend.gate = threading.Event()
    busy = asyncio.create_task(billing.client.post(URL, json=body(seed=1), headers=key))
    await asyncio.to_thread(backend.started.wait, 10)
    params = generation_params(prompt="gone", seed=3, images=2)

    async def disconnected() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    with pytest.raises(JobCancelled):
        await app.state.service.generate(
            Credentials(principal),
            JobSpec(
                params,
                OutputRequest(
                    fmt="png", safe_mode=False, hide_watermark=False, embed_metadata=False
                ),
            ),
            received=0.0,
            delivery=Delivery(disconnected, guarded=False),
            endpoint="image/generate",
        )
    backend.gate.set()
    assert (await busy).status_code == 200
    prompts = [p.prompt for batch in backend.batches for p in batch]
    assert "gone" not in prompts
    assert await billing.balance(key) == Decimal("0.99")
