"""Balances: reserve before the job, commit what was delivered, release everything else,
never spend the same money twice."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from murano.accounts import BALANCE_HEADER, Admission, Charge, LedgerAccounts, Outcome, Principal
from murano.errors import InsufficientBalance

from .conftest import AccountsFactory, new_key

CENT = Decimal("0.01")


def one_image(model: str = "m") -> Charge:
    return Charge(model, 1, CENT)


async def balance(accounts: LedgerAccounts, key_id: str) -> tuple[Decimal | None, Decimal]:
    key = await accounts.get_key(key_id)
    return key.balance_usd, key.reserved_usd


async def test_admit_reserves_and_delivery_commits(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="1")
    admission = await accounts.admit(principal, Charge("m", 3, CENT))
    assert admission.headers[BALANCE_HEADER] == "1"
    assert await balance(accounts, created.key.id) == (Decimal(1), Decimal("0.03"))
    await accounts.settle(admission, Outcome.DELIVERED, timings_ms={"total": 41.5})
    assert await balance(accounts, created.key.id) == (Decimal("0.97"), Decimal(0))
    [record] = await accounts.list_usage()
    assert (record.model, record.images, record.charged_usd) == ("m", 3, Decimal("0.03"))
    assert (record.outcome, record.timings_ms, record.key_prefix) == (
        "delivered",
        {"total": 41.5},
        created.key.prefix,
    )


@pytest.mark.parametrize("outcome", [o for o in Outcome if o is not Outcome.DELIVERED])
async def test_every_other_outcome_releases(
    open_accounts: AccountsFactory, outcome: Outcome
) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="0.05")
    admission = await accounts.admit(principal, Charge("m", 4, CENT))
    await accounts.settle(admission, outcome)
    assert await balance(accounts, created.key.id) == (Decimal("0.05"), Decimal(0))
    [record] = await accounts.list_usage(key_id=created.key.id)
    assert (record.outcome, record.charged_usd) == (outcome.value, Decimal(0))


async def test_settle_is_idempotent(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="1")
    admission = await accounts.admit(principal, one_image())
    await accounts.settle(admission, Outcome.DELIVERED)
    await accounts.settle(admission, Outcome.DELIVERED)
    await accounts.settle(admission, Outcome.FAILED)
    # A copy of the admission (another code path holding the same reservation) too.
    copy = Admission(admission.principal, admission.charge, admission.reservation_id)
    await accounts.settle(copy, Outcome.DELIVERED)
    assert await balance(accounts, created.key.id) == (Decimal("0.99"), Decimal(0))
    assert len(await accounts.list_usage()) == 1


async def test_a_short_balance_is_refused_with_venices_402(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="0.02")
    held = await accounts.admit(principal, one_image())
    with pytest.raises(InsufficientBalance) as refused:
        await accounts.admit(principal, Charge("m", 2, CENT))
    assert refused.value.message == (
        "Insufficient USD or Diem balance to complete request. "
        "Ask this server's operator to top up your API key."
    )
    # What the key could spend: its balance less the request still in flight.
    assert refused.value.headers[BALANCE_HEADER] == "0.01"
    assert refused.value.headers["x-ratelimit-limit-requests"] == "1000"
    await accounts.settle(held, Outcome.FAILED)
    admitted = await accounts.admit(principal, Charge("m", 2, CENT))
    assert admitted.headers[BALANCE_HEADER] == "0.02"
    assert await balance(accounts, created.key.id) == (Decimal("0.02"), Decimal("0.02"))


async def test_top_up_lets_a_refused_key_through(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="0")
    with pytest.raises(InsufficientBalance):
        await accounts.admit(principal, one_image())
    topped = await accounts.top_up(created.key.prefix, Decimal("0.5"))
    assert topped.balance_usd == Decimal("0.5")
    assert (await accounts.admit(principal, one_image())).headers[BALANCE_HEADER] == "0.5"


async def test_top_ups_are_checked(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    unlimited, _ = await new_key(accounts, usd=None)
    limited, _ = await new_key(accounts, usd="1")
    with pytest.raises(ValueError, match="unlimited"):
        await accounts.top_up(unlimited.key.id, Decimal(1))
    with pytest.raises(ValueError, match="> 0"):
        await accounts.top_up(limited.key.id, Decimal(0))
    await accounts.revoke_key(limited.key.id)
    with pytest.raises(ValueError, match="revoked"):
        await accounts.top_up(limited.key.id, Decimal(1))


async def test_unlimited_keys_are_admitted_and_recorded_without_a_balance_header(
    open_accounts: AccountsFactory,
) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd=None)
    admission = await accounts.admit(principal, Charge("m", 2, Decimal("0.25")))
    assert BALANCE_HEADER not in admission.headers
    await accounts.settle(admission, Outcome.DELIVERED)
    assert (await accounts.get_key(created.key.id)).balance_usd is None
    [record] = await accounts.list_usage()
    assert record.charged_usd == Decimal("0.5")


async def test_concurrent_requests_never_overspend(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="0.10")
    results = await asyncio.gather(
        *(accounts.admit(principal, one_image()) for _ in range(50)), return_exceptions=True
    )
    admitted = [r for r in results if isinstance(r, Admission)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert (len(admitted), len(refused)) == (10, 40)
    await asyncio.gather(*(accounts.settle(a, Outcome.DELIVERED) for a in admitted))
    assert await balance(accounts, created.key.id) == (Decimal(0), Decimal(0))


async def test_two_servers_on_one_database_never_overspend(
    open_sql_accounts: AccountsFactory,
) -> None:
    first = await open_sql_accounts()
    second = await open_sql_accounts()
    created, principal = await new_key(first, usd="0.10")
    calls = [server.admit(principal, one_image()) for server in (first, second) for _ in range(25)]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, Admission | InsufficientBalance) for r in results), results
    admitted = [r for r in results if isinstance(r, Admission)]
    assert len(admitted) == 10
    await asyncio.gather(*(second.settle(a, Outcome.DELIVERED) for a in admitted))
    assert await balance(first, created.key.id) == (Decimal(0), Decimal(0))


async def test_prices_finer_than_a_micro_dollar_round_up(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="1")
    admission = await accounts.admit(principal, Charge("m", 3, Decimal("0.0000001")))
    await accounts.settle(admission, Outcome.DELIVERED)
    assert (await accounts.get_key(created.key.id)).balance_usd == Decimal("0.999999")


@pytest.mark.parametrize(("images", "price"), [(0, "0.01"), (1, "-0.01"), (1, "NaN")])
async def test_a_malformed_charge_is_a_bug(
    open_accounts: AccountsFactory, images: int, price: str
) -> None:
    accounts = await open_accounts()
    _, principal = await new_key(accounts)
    with pytest.raises(ValueError, match="a charge needs"):
        await accounts.admit(principal, Charge("m", images, Decimal(price)))


async def test_the_principal_carries_what_the_key_can_spend(
    open_accounts: AccountsFactory,
) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts, usd="1")
    await accounts.admit(principal, Charge("m", 10, CENT))
    again: Principal = await accounts.authenticate(created.secret)
    assert again.balance_usd == Decimal("0.9")
