"""`POST /image/jobs` with a webhook: the event reaches a receiver on 127.0.0.1 (listed in
MURANO_WEBHOOK_ALLOW) signed with the server's secret; a refused URL is a 400 with
Venice's error shape, makes no job and charges nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.accounts.conftest import Database

from .conftest import JOBS, Env, body, open_env
from .receiver import receiver

SECRET = "whsec_" + "B" * 43 + "="


@pytest.fixture
async def hooked(db: Database, tmp_path: Path) -> AsyncIterator[Env]:
    async for e in open_env(db, tmp_path, webhook_allow=["127.0.0.1"], webhook_secret=SECRET):
        yield e


async def test_a_completed_job_calls_its_webhook_signed(hooked: Env) -> None:
    key = await hooked.key("1")
    with receiver() as hook:
        response = await hooked.client.post(JOBS, json=body(webhook_url=hook.url), headers=key)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.headers["location"] == f"{JOBS}/{job_id}"
        (got,) = await asyncio.to_thread(hook.wait_for, 1)
    payload: dict[str, Any] = Webhook(SECRET).verify(got.body, got.headers)
    assert payload["type"] == "image.job.completed"
    assert payload["data"]["id"] == job_id and payload["data"]["status"] == "delivered"
    assert len(payload["data"]["result"]["images"]) == 1
    assert await hooked.balance(key) == Decimal(1) - Decimal("0.01")


async def test_webhook_events_choose_what_is_sent(hooked: Env) -> None:
    key = await hooked.key("1")
    with receiver() as hook:
        response = await hooked.client.post(
            JOBS,
            json=body(webhook_url=hook.url, webhook_events=["queued", "completed"]),
            headers=key,
        )
        assert response.status_code == 202
        got = await asyncio.to_thread(hook.wait_for, 2)
    types = [Webhook(SECRET).verify(r.body, r.headers)["type"] for r in got]
    assert types == ["image.job.queued", "image.job.completed"]


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1/hook", "http://[::1]:8080/hook", "ftp://example.com/x", "not a url"],
)
async def test_a_refused_webhook_url_is_a_400_and_no_job(hooked: Env, url: str) -> None:
    key = await hooked.key("1")
    response = await hooked.client.post(JOBS, json=body(webhook_url=url), headers=key)
    assert response.status_code == 400
    error = response.json()
    assert "webhook_url" in error["details"] and error["error"]
    assert (await hooked.client.get(JOBS, headers=key)).json()["data"] == []
    assert await hooked.balance(key) == Decimal(1)


async def test_webhook_events_without_a_url_are_refused(hooked: Env) -> None:
    key = await hooked.key("1")
    response = await hooked.client.post(JOBS, json=body(webhook_events=["completed"]), headers=key)
    assert response.status_code == 400 and "webhook_events" in response.json()["details"]
