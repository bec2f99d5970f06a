"""Webhook deliveries to a real receiver on 127.0.0.1: signed as Standard Webhooks says
(checked with the `standardwebhooks` verifier), retried on the back-off schedule by an
injected clock (no sleeps), resumed by another dispatcher after a restart, given up after
the last attempt, and URLs refused by the policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from standardwebhooks import Webhook

from murano.accounts import SqlStore
from murano.accounts.jobs import JobStore, MemoryJobStore, SqlJobStore
from murano.errors import InvalidRequest
from murano.webhooks import BACKOFF_S, UrlPolicy, WebhookDispatcher, generate_secret
from tests.accounts.conftest import make_database

from .receiver import receiver

SECRET = generate_secret()
LOCAL = UrlPolicy(["127.0.0.1"])


class Clock:
    """Real time, moved forward by the test."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def dispatcher(store: JobStore, clock: Clock, policy: UrlPolicy = LOCAL) -> WebhookDispatcher:
    return WebhookDispatcher(store, SECRET, policy, clock=clock)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    async with make_database(request.param, tmp_path) as db:
        accounts_store = SqlStore(db.url, schema=db.schema)
        await accounts_store.start()
        try:
            yield SqlJobStore(accounts_store.engine)
        finally:
            await accounts_store.close()


async def test_a_delivery_is_signed_as_standard_webhooks_says(store: JobStore) -> None:
    clock = Clock()
    sender = dispatcher(store, clock)
    with receiver() as hook:
        await sender.enqueue("job-1", hook.url, "completed", {"id": "job-1", "status": "delivered"})
        assert await sender.run_due() == 1
        (got,) = hook.requests
    await sender.close()
    payload = Webhook(SECRET).verify(got.body, got.headers)
    assert payload["type"] == "image.job.completed"
    assert payload["data"] == {"id": "job-1", "status": "delivered"}
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    with pytest.raises(Exception, match="signature"):
        Webhook(generate_secret()).verify(got.body, got.headers)


async def test_a_receiver_that_fails_twice_gets_it_on_the_third_attempt(store: JobStore) -> None:
    clock = Clock()
    sender = dispatcher(store, clock)
    with receiver(fail_first=2) as hook:
        await sender.enqueue("job-1", hook.url, "completed", {"id": "job-1"})
        assert await sender.run_due() == 1  # 500
        assert await sender.run_due() == 0  # not due for 5 s
        clock.advance(BACKOFF_S[0])
        assert await sender.run_due() == 1  # 500 again
        clock.advance(BACKOFF_S[1] - 1)
        assert await sender.run_due() == 0
        clock.advance(1)
        assert await sender.run_due() == 1  # 204
        clock.advance(max(BACKOFF_S))
        assert await sender.run_due() == 0  # delivered: never sent again
        ids = {r.headers["webhook-id"] for r in hook.requests}
    await sender.close()
    assert len(hook.requests) == 3 and len(ids) == 1  # one event, one id across retries
    for request in hook.requests:  # signed; the verifier's 5-minute window is real time
        stamp = datetime.fromtimestamp(int(request.headers["webhook-timestamp"]), UTC)
        expected = Webhook(SECRET).sign(request.headers["webhook-id"], stamp, request.body.decode())
        assert request.headers["webhook-signature"] == expected


async def test_retries_go_on_for_a_day_then_stop(store: JobStore) -> None:
    clock = Clock()
    sender = dispatcher(store, clock)
    assert sum(BACKOFF_S) >= 24 * 3600
    with receiver(fail_first=1000) as hook:
        await sender.enqueue("job-1", hook.url, "failed", {"id": "job-1"})
        for delay in (0, *BACKOFF_S):
            clock.advance(delay)
            assert await sender.run_due() == 1
        clock.advance(10 * max(BACKOFF_S))
        assert await sender.run_due() == 0
    await sender.close()
    assert len(hook.requests) == len(BACKOFF_S) + 1
    if isinstance(store, MemoryJobStore):
        (delivery,) = store.deliveries()
        assert (delivery.state, delivery.last_error) == ("failed", "HTTP 500")


async def test_a_restarted_server_resumes_what_it_owed(tmp_path: Path) -> None:
    clock = Clock()
    async with make_database("sqlite", tmp_path) as db:
        with receiver(fail_first=1) as hook:
            first_store = SqlStore(db.url)
            await first_store.start()
            first = dispatcher(SqlJobStore(first_store.engine), clock)
            await first.enqueue("job-1", hook.url, "completed", {"id": "job-1"})
            await first.run_due()
            await first.close()
            await first_store.close()  # the server stops with a retry owed

            second_store = SqlStore(db.url)
            await second_store.start()
            second = dispatcher(SqlJobStore(second_store.engine), clock)
            clock.advance(BACKOFF_S[0])
            await second.start()  # its background loop finds the due delivery
            got = await asyncio.to_thread(hook.wait_for, 2)
            await second.close()
            await second_store.close()
    assert len(got) == 2
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]


@pytest.mark.parametrize(
    ("patterns", "url"),
    [
        ([], "http://127.0.0.1:9/x"),  # loopback, not listed
        ([], "http://10.1.2.3/x"),  # private
        ([], "http://[::1]/x"),
        ([], "http://169.254.169.254/latest/meta-data"),  # cloud metadata
        (["*"], "http://192.168.1.5/x"),  # a bare * does not list private addresses
        (["*.example.com"], "https://evil.test/x"),  # not on the allowlist
        ([], "ftp://example.com/x"),
        ([], "/relative"),
        ([], "https://user:pw@example.com/x"),
        ([], "http://host.invalid/x"),  # does not resolve
    ],
)
async def test_refused_urls(patterns: list[str], url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await UrlPolicy(patterns).check(url)
    assert refused.value.field == "webhook_url"


async def test_listed_and_public_urls_pass() -> None:
    await UrlPolicy(["127.0.0.1"]).check("http://127.0.0.1:8080/hook")
    await UrlPolicy(["10.0.*"]).check("http://10.0.0.7/hook")
    await UrlPolicy([]).check("https://93.184.215.14/hook")  # a public literal address
    await UrlPolicy(["93.184.*"]).check("https://93.184.215.14/hook")


async def test_a_url_refused_at_delivery_time_is_given_up(store: JobStore) -> None:
    clock = Clock()
    sender = dispatcher(store, clock, policy=UrlPolicy([]))
    await sender.enqueue("job-1", "http://127.0.0.1:9/x", "completed", {"id": "job-1"})
    assert await sender.run_due() == 1
    clock.advance(max(BACKOFF_S))
    assert await sender.run_due() == 0
    await sender.close()
