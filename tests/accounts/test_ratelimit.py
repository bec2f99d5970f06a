"""Rate limits: fixed windows per key and model with each image counted, Venice's
failed-request budget, their headers, and one limit shared through Redis."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from murano.accounts import (
    Charge,
    MemoryAccounts,
    MemoryRateLimiter,
    OpenAccounts,
    Outcome,
    RateLimiter,
    RedisRateLimiter,
    StaticKeyAccounts,
)
from murano.errors import AuthenticationFailed, RateLimited

from .conftest import REDIS_URL, AccountsFactory, new_key

CENT = Decimal("0.01")
T0 = 1_700_000_020.0  # 40 s into a minute, 10 s into a 30 s window


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def next_minute_ms(now: float) -> int:
    return (int(now) // 60 + 1) * 60_000


async def away_from_a_window_edge(window_s: int, margin_s: float = 2.0) -> None:
    """Wait until a test of `margin_s` cannot straddle two windows of the real clock."""
    left = window_s - time.time() % window_s
    if left < margin_s:
        await asyncio.sleep(left + 0.05)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def limiter(request: pytest.FixtureRequest, redis_prefix: str) -> AsyncIterator[RateLimiter]:
    made: RateLimiter = (
        MemoryRateLimiter()
        if request.param == "memory"
        else RedisRateLimiter(REDIS_URL, prefix=redis_prefix)
    )
    yield made
    await made.close()


# -- the limiter ---------------------------------------------------------------------------


async def test_a_hit_counts_only_while_it_fits(limiter: RateLimiter) -> None:
    await away_from_a_window_edge(3600)
    first = await limiter.hit("k", 3, 5, 3600)
    refused = await limiter.hit("k", 3, 5, 3600)
    last = await limiter.hit("k", 2, 5, 3600)
    assert [(w.allowed, w.used) for w in (first, refused, last)] == [
        (True, 3),
        (False, 3),
        (True, 5),
    ]
    assert first.reset_ms % 3_600_000 == 0 and 0 < first.reset_ms - time.time() * 1000 <= 3_600_000
    assert (await limiter.hit("k", 0, None, 3600)).used == 5
    assert (await limiter.hit("k", 1, None, 3600)).used == 6
    assert (await limiter.hit("other", 1, 5, 3600)).used == 1


@pytest.mark.parametrize(("cost", "limit", "window_s"), [(-1, 5, 60), (1, -1, 60), (1, 5, 0)])
async def test_impossible_hits_are_refused(
    limiter: RateLimiter, cost: int, limit: int, window_s: int
) -> None:
    with pytest.raises(ValueError, match="bad hit"):
        await limiter.hit("k", cost, limit, window_s)


async def test_windows_are_fixed_and_aligned_to_the_epoch() -> None:
    clock = Clock()
    limiter = MemoryRateLimiter(clock)
    assert (await limiter.hit("k", 20, 20, 60)).reset_ms == next_minute_ms(T0)
    clock.now = next_minute_ms(T0) / 1000 - 0.001
    assert not (await limiter.hit("k", 1, 20, 60)).allowed
    clock.now = next_minute_ms(T0) / 1000
    fresh = await limiter.hit("k", 1, 20, 60)
    assert (fresh.allowed, fresh.used, fresh.reset_ms) == (True, 1, next_minute_ms(T0) + 60_000)


@pytest.mark.redis
async def test_two_redis_limiters_share_one_limit(redis_prefix: str) -> None:
    await away_from_a_window_edge(3600)
    servers = [RedisRateLimiter(REDIS_URL, prefix=redis_prefix) for _ in range(2)]
    try:
        hits = [server.hit("k", 1, 20, 3600) for server in servers for _ in range(15)]
        windows = await asyncio.gather(*hits)
    finally:
        for server in servers:
            await server.close()
    assert sum(w.allowed for w in windows) == 20
    assert max(w.used for w in windows) == 20


_PROCESS = """
import asyncio, sys
from murano.accounts.redis_limiter import RedisRateLimiter

async def main() -> None:
    limiter = RedisRateLimiter(sys.argv[1], prefix=sys.argv[2])
    windows = [await limiter.hit("k", 1, 20, 3600) for _ in range(15)]
    await limiter.close()
    print(sum(w.allowed for w in windows))

asyncio.run(main())
"""


@pytest.mark.redis
async def test_two_processes_share_one_limit(redis_prefix: str) -> None:
    await away_from_a_window_edge(3600, margin_s=30)
    runs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROCESS, REDIS_URL, redis_prefix, stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [await run.communicate() for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert sum(int(out.decode()) for out, _ in outputs) == 20


# -- requests per minute, through the accounts ----------------------------------------------


async def test_each_image_counts_against_the_default_limit() -> None:
    clock = Clock()
    accounts = MemoryAccounts(clock=clock, default_rpm=20)
    created, principal = await new_key(accounts, usd="10", rpm=None)
    remaining = []
    for _ in range(5):
        admission = await accounts.admit(principal, Charge("m", 4, CENT))
        remaining.append(admission.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["16", "12", "8", "4", "0"]
    assert admission.headers["x-ratelimit-limit-requests"] == "20"
    assert admission.headers["x-ratelimit-reset-requests"] == str(next_minute_ms(T0))
    # Each request authenticates afresh, so its balance is the one before it.
    principal = await accounts.authenticate(created.secret)
    with pytest.raises(RateLimited) as refused:
        await accounts.admit(principal, Charge("m", 1, CENT))
    assert refused.value.message == "Rate limit exceeded"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.value.headers["x-ratelimit-reset-requests"] == str(next_minute_ms(T0))
    assert refused.value.headers["Retry-After"] == "20"
    assert refused.value.headers["x-venice-balance-usd"] == "9.8"
    # Another model has a window of its own; the next minute starts afresh.
    assert (await accounts.admit(principal, Charge("other", 1, CENT))).reservation_id
    clock.now = next_minute_ms(T0) / 1000
    again = await accounts.admit(principal, Charge("m", 1, CENT))
    assert again.headers["x-ratelimit-remaining-requests"] == "19"


async def test_a_refused_request_takes_nothing_from_the_window() -> None:
    accounts = MemoryAccounts(clock=Clock(), default_rpm=4)
    _, principal = await new_key(accounts, rpm=None)
    await accounts.admit(principal, Charge("m", 3, CENT))
    for _ in range(3):
        with pytest.raises(RateLimited):
            await accounts.admit(principal, Charge("m", 2, CENT))
    admission = await accounts.admit(principal, Charge("m", 1, CENT))
    assert admission.headers["x-ratelimit-remaining-requests"] == "0"


async def test_model_and_key_overrides() -> None:
    accounts = MemoryAccounts(clock=Clock(), default_rpm=20, model_rpm={"big": 2})
    _, default = await new_key(accounts, rpm=None)
    _, generous = await new_key(accounts, rpm=5)
    big = Charge("big", 1, CENT)
    for _ in range(2):
        await accounts.admit(default, big)
    with pytest.raises(RateLimited) as refused:
        await accounts.admit(default, big)
    assert refused.value.headers["x-ratelimit-limit-requests"] == "2"
    # A key's own limit wins over the model's.
    admitted = [await accounts.admit(generous, big) for _ in range(5)]
    assert admitted[-1].headers["x-ratelimit-limit-requests"] == "5"
    with pytest.raises(RateLimited):
        await accounts.admit(generous, big)
    with pytest.raises(ValueError, match="the rpm of big must be >= 1"):
        MemoryAccounts(model_rpm={"big": 0})


async def test_more_images_than_the_limit_are_never_admitted() -> None:
    accounts = MemoryAccounts(clock=Clock(), default_rpm=3)
    _, principal = await new_key(accounts, rpm=None)
    with pytest.raises(RateLimited) as refused:
        await accounts.admit(principal, Charge("m", 4, CENT))
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "3"


@pytest.mark.redis
async def test_servers_sharing_redis_share_each_keys_limit(
    open_sql_accounts: AccountsFactory, redis_prefix: str
) -> None:
    await away_from_a_window_edge(60)
    servers = [
        await open_sql_accounts(limiter=RedisRateLimiter(REDIS_URL, prefix=redis_prefix))
        for _ in range(2)
    ]
    _, principal = await new_key(servers[0], usd="1", rpm=5)
    calls = [server.admit(principal, Charge("m", 1, CENT)) for server in servers for _ in range(4)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert sum(not isinstance(r, BaseException) for r in results) == 5
    assert sum(isinstance(r, RateLimited) for r in results) == 3


# -- the failed-request budget -------------------------------------------------------------


async def test_too_many_failures_lock_the_key_out_until_the_window_ends() -> None:
    clock = Clock()
    accounts = MemoryAccounts(clock=clock, failure_budget=3, failure_window_s=30)
    _, principal = await new_key(accounts)
    _, bystander = await new_key(accounts)
    for status in (400, 401, 402, 429, 500, 503, 200):
        await accounts.note_failure(principal, "m", status)
    assert await accounts.admit(principal, Charge("m", 1, CENT))
    await accounts.note_failure(principal, "m", 422)
    with pytest.raises(RateLimited) as refused:
        await accounts.admit(principal, Charge("m", 1, CENT))
    assert refused.value.message == (
        "Too many failed attempts (> 3) resulting in a non-success status code. "
        "Please wait 20s and try again."
    )
    window_end_ms = 1_700_000_040_000
    assert refused.value.headers["x-ratelimit-resets"] == str(window_end_ms)
    assert refused.value.headers["x-ratelimit-remaining"] == "0"
    assert refused.value.headers["Retry-After"] == "20"
    assert refused.value.headers["x-ratelimit-remaining-requests"] == "999"
    assert (await accounts.limit_status(principal)).failures_exceeded
    assert await accounts.admit(bystander, Charge("m", 1, CENT))
    clock.now = window_end_ms / 1000
    assert await accounts.admit(principal, Charge("m", 1, CENT))


async def test_the_default_budget_is_venices_20_in_30_seconds() -> None:
    accounts = MemoryAccounts(clock=Clock())
    _, principal = await new_key(accounts)
    for _ in range(20):
        await accounts.note_failure(principal, "m", 400)
    assert await accounts.admit(principal, Charge("m", 1, CENT))
    await accounts.note_failure(principal, "m", 400)
    with pytest.raises(RateLimited, match=r"Too many failed attempts \(> 20\).*wait \d+s"):
        await accounts.admit(principal, Charge("m", 1, CENT))


# -- status and the accounts without a store ---------------------------------------------


async def test_limit_status_reports_balance_and_windows() -> None:
    accounts = MemoryAccounts(clock=Clock(), model_rpm={"big": 2})
    _, principal = await new_key(accounts, usd="0.5", rpm=None)
    await accounts.admit(principal, Charge("m", 3, CENT))
    status = await accounts.limit_status(principal, ["listed"])
    assert status.balance_usd == Decimal("0.47") and status.access_permitted
    assert status.next_window_ms == next_minute_ms(T0)
    assert [(m.model_id, m.rpm, m.remaining) for m in status.limits] == [
        ("big", 2, 2),
        ("listed", 20, 20),
        ("m", 20, 17),
    ]


async def test_static_keys_are_unlimited_admins_under_the_same_limits() -> None:
    clock = Clock()
    accounts = StaticKeyAccounts(
        ["first-static-key-000000", "second-static-key-11111"],
        default_rpm=2,
        failure_budget=1,
        clock=clock,
    )
    await accounts.start()
    principal = await accounts.authenticate("second-static-key-11111")
    assert (principal.name, principal.is_admin, principal.balance_usd) == (
        "settings key 2",
        True,
        None,
    )
    assert "second-static-key" not in principal.key_id
    admission = await accounts.admit(principal, Charge("m", 2, CENT))
    assert "x-venice-balance-usd" not in admission.headers
    assert admission.headers["x-ratelimit-remaining-requests"] == "0"
    await accounts.settle(admission, Outcome.DELIVERED)
    with pytest.raises(RateLimited, match="Rate limit exceeded"):
        await accounts.admit(principal, Charge("m", 1, CENT))
    for _ in range(2):
        await accounts.note_failure(principal, "other", 400)
    with pytest.raises(RateLimited, match="Too many failed attempts"):
        await accounts.admit(principal, Charge("other", 1, CENT))
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate("first-static-key-00000")
    await accounts.close()
    with pytest.raises(ValueError, match="at least one key"):
        StaticKeyAccounts([])


async def test_open_accounts_let_everyone_in_anonymously() -> None:
    accounts = OpenAccounts()
    principal = await accounts.authenticate(None)
    assert principal.anonymous and not principal.is_admin and not accounts.auth_required
    for _ in range(100):
        admission = await accounts.admit(principal, Charge("m", 4, CENT))
        await accounts.settle(admission, Outcome.DELIVERED)
    assert admission.headers == {} and admission.settled
    assert (await accounts.limit_status(principal)).access_permitted
