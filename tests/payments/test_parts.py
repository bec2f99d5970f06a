"""The small parts: used-payment stores (memory and Redis), USD → token units, the wallet
ledger, and the settings `build_payment_gate` refuses."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as redis

from murano.accounts.base import Outcome
from murano.payments import (
    InsufficientWalletBalance,
    MemoryNonces,
    MemoryWalletLedger,
    Nonces,
    RedisNonces,
    build_payment_gate,
)
from murano.payments.assets import resolve_assets, to_atomic
from murano.settings import Settings
from tests.payments.conftest import SELLER, charge

REDIS_URL = os.environ.get("MURANO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def nonces(request: pytest.FixtureRequest) -> AsyncIterator[Nonces]:
    if request.param == "memory":
        store: Nonces = MemoryNonces()
        yield store
        await store.close()
        return
    prefix = f"murano-test:{secrets.token_hex(6)}:"
    store = RedisNonces(REDIS_URL, prefix=prefix)
    yield store
    await store.close()
    client = redis.Redis.from_url(REDIS_URL)
    try:
        async for name in client.scan_iter(match=f"{prefix}*"):
            await client.delete(name)
    finally:
        await client.aclose()


async def test_a_nonce_is_claimed_once_until_released(nonces: Nonces) -> None:
    assert await nonces.claim("payer:1", 60)
    assert not await nonces.claim("payer:1", 60)
    assert await nonces.claim("payer:2", 60)
    await nonces.release("payer:1")
    assert await nonces.claim("payer:1", 60)


async def test_concurrent_claims_of_one_nonce_let_one_through(nonces: Nonces) -> None:
    results = await asyncio.gather(*(nonces.claim("same", 60) for _ in range(20)))
    assert results.count(True) == 1


async def test_a_claim_lapses_after_its_ttl(nonces: Nonces) -> None:
    assert await nonces.claim("short", 1)
    await asyncio.sleep(1.2)
    assert await nonces.claim("short", 1)


@pytest.mark.parametrize(
    ("usd", "decimals", "atomic"),
    [("0.01", 6, 10_000), ("0.0000001", 6, 1), ("0.0100001", 6, 10_001), ("5", 6, 5_000_000)],
)
def test_prices_become_token_units_rounded_up(usd: str, decimals: int, atomic: int) -> None:
    assert to_atomic(Decimal(usd), decimals) == atomic


def test_the_default_asset_is_usdc_on_each_network() -> None:
    base, sepolia = resolve_assets(["eip155:8453", "eip155:84532"], None)
    assert (base.address, base.name) == ("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin")
    assert (sepolia.address, sepolia.name) == (
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "USDC",
    )


@pytest.mark.parametrize(
    ("networks", "asset", "message"),
    [
        ([], None, "x402_networks is empty"),
        (["solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp"], None, "CAIP-2 form"),
        (["eip155:999999"], None, "no default asset"),
        (["eip155:8453"], "0x" + "ab" * 20, "not a token the x402 package knows"),
    ],
)
def test_unusable_payment_settings_are_named(
    networks: list[str], asset: str | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_assets(networks, asset)


def test_payments_are_off_without_a_payee_and_refuse_a_bad_one(tmp_path: Path) -> None:
    assert build_payment_gate(Settings(data_dir=tmp_path)) is None
    with pytest.raises(ValueError, match="x402_pay_to must be an EVM address"):
        build_payment_gate(Settings(data_dir=tmp_path, x402_pay_to="alice"))


async def test_the_gate_asks_for_time_to_generate_before_settling(tmp_path: Path) -> None:
    gate = build_payment_gate(
        Settings(data_dir=tmp_path, x402_pay_to=SELLER.address, request_timeout_s=900)
    )
    assert gate is not None
    assert gate.exact.max_timeout_s == 960
    await gate.close()


async def test_the_wallet_ledger_holds_commits_and_releases() -> None:
    ledger = MemoryWalletLedger()
    assert await ledger.credit("0xAbC", Decimal(1), payment_id="p1") == 1
    assert await ledger.credit("0xabc", Decimal(1), payment_id="p1") == 1  # same payment

    hold = await ledger.reserve("0xabc", charge("0.2", images=3))
    with pytest.raises(InsufficientWalletBalance) as short:
        await ledger.reserve("0xabc", charge("0.6"))
    assert short.value.available_usd == Decimal("0.4")
    assert await ledger.settle(hold, Outcome.DELIVERED) == Decimal("0.4")
    assert await ledger.settle(hold, Outcome.DELIVERED) == Decimal("0.4")  # idempotent
    other = await ledger.reserve("0xabc", charge("0.4"))
    assert await ledger.settle(other, Outcome.FAILED) == Decimal("0.4")
    assert await ledger.available("0xABC") == Decimal("0.4")
