"""Wallet credits kept in the accounts database: a payment credits once (also concurrently,
from two servers, after a restart), a wallet is drawn on and billed like a key, a crash's
holds are released at the next start, an upgraded database keeps its keys, and the app
wired from settings serves top-up → Sign-In-With-X → 402 across a restart.

The same tests run on the in-memory twin where no restart is involved; the gate-level and
HTTP tests of `test_wallet.py` and `test_http.py` run on every ledger through the `ledger`
fixture."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import insert, select
from x402.extensions.sign_in_with_x import (
    CreateSIWxClientExtensionOptions,
    create_siwx_client_extension,
)

from murano.accounts import (
    LedgerAccounts,
    MemoryAccounts,
    OpenAccounts,
    Outcome,
    SqlAccounts,
    SqlStore,
    StaticKeyAccounts,
    migrate,
)
from murano.accounts._keygen import generate_key, hash_key, key_prefix
from murano.accounts._tables import api_keys, x402_payments
from murano.accounts.store import utcnow
from murano.app import create_app
from murano.errors import AuthenticationFailed
from murano.payments import (
    AccountsWalletLedger,
    InsufficientWalletBalance,
    build_payment_gate,
    build_wallet_ledger,
    wallet_ledger_for,
)
from murano.settings import Settings
from tests.accounts.conftest import LEDGERS, STORES, Database, accounts_factory, make_database
from tests.conftest import FakeEngineParts, fake_engine
from tests.payments.chain import FakeUsdc
from tests.payments.conftest import ORIGIN, Buyer, charge, gate_settings
from tests.payments.facilitator import LocalFacilitator
from tests.payments.test_http import BODY, GENERATE, TOP_UP, Paid

ADDRESS = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


@pytest.fixture(params=LEDGERS)
async def ledger_on(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, LedgerAccounts]]:
    """Started accounts (memory, SQLite, PostgreSQL) and their kind."""
    async with accounts_factory(request.param, tmp_path) as open_accounts:
        yield request.param, await open_accounts()


@pytest.fixture(params=STORES)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with make_database(request.param, tmp_path) as db:
        yield db


@asynccontextmanager
async def started(database: Database, **options: object) -> AsyncIterator[SqlAccounts]:
    """One server's accounts on `database`; leaving the block is its shutdown."""
    accounts = database.accounts(**options)
    await accounts.start()
    try:
        yield accounts
    finally:
        await accounts.close()


def wallets(accounts: LedgerAccounts) -> AccountsWalletLedger:
    ledger = wallet_ledger_for(accounts)
    assert isinstance(ledger, AccountsWalletLedger)
    return ledger


async def payments(accounts: SqlAccounts) -> list[tuple[str, str, int, str | None]]:
    query = select(
        x402_payments.c.payment_id,
        x402_payments.c.address,
        x402_payments.c.micros,
        x402_payments.c.tx,
    ).order_by(x402_payments.c.created_at)
    async with accounts.store.engine.connect() as conn:
        return [(r.payment_id, r.address, r.micros, r.tx) for r in await conn.execute(query)]


# -- crediting ----------------------------------------------------------------------------


async def test_a_payment_credits_its_wallet_once(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    ledger = wallets(ledger_on[1])

    assert await ledger.credit("0x" + "AB" * 20, Decimal(5), payment_id="p1") == 5
    assert await ledger.credit(ADDRESS, Decimal(5), payment_id="p1") == 5
    assert await ledger.credit(ADDRESS, Decimal("2.5"), payment_id="p2") == Decimal("7.5")

    assert await ledger.available(ADDRESS) == Decimal("7.5")
    assert await ledger.available(OTHER) == 0


@pytest.mark.parametrize("kind", LEDGERS)
async def test_ten_concurrent_credits_of_one_payment_credit_once(kind: str, tmp_path: Path) -> None:
    async with accounts_factory(kind, tmp_path) as open_accounts:
        first = wallets(await open_accounts())
        # On a database, half of them come from a second server sharing it.
        second = first if kind == "memory" else wallets(await open_accounts())

        balances = await asyncio.gather(
            *(
                (first, second)[n % 2].credit(ADDRESS, Decimal(5), payment_id="p1", tx="0xf00")
                for n in range(10)
            )
        )

        assert balances == [Decimal(5)] * 10
        assert await first.available(ADDRESS) == await second.available(ADDRESS) == 5


@pytest.mark.parametrize("kind", LEDGERS)
async def test_a_new_wallets_concurrent_first_top_ups_all_count(kind: str, tmp_path: Path) -> None:
    async with accounts_factory(kind, tmp_path) as open_accounts:
        first = wallets(await open_accounts())
        second = first if kind == "memory" else wallets(await open_accounts())

        await asyncio.gather(
            *(
                (first, second)[n % 2].credit(ADDRESS, Decimal(1), payment_id=f"p{n}")
                for n in range(10)
            )
        )

        assert await first.available(ADDRESS) == 10


async def test_a_restart_keeps_balances_and_what_was_credited(
    database: Database,
) -> None:
    async with started(database) as accounts:
        ledger = wallets(accounts)
        await ledger.credit(ADDRESS, Decimal(5), payment_id="p1", tx="0x" + "12" * 32)
        hold = await ledger.reserve(ADDRESS, charge("0.5", images=2))
        await ledger.settle(hold, Outcome.DELIVERED)

    async with started(database) as accounts:
        ledger = wallets(accounts)
        assert await ledger.available(ADDRESS) == 4
        assert await ledger.credit(ADDRESS, Decimal(5), payment_id="p1") == 4  # a replay
        assert await payments(accounts) == [("p1", ADDRESS, 5_000_000, "0x" + "12" * 32)]


async def test_a_credit_that_cannot_be_recorded_is_refused(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    ledger = wallets(ledger_on[1])

    with pytest.raises(ValueError, match="> 0 USD"):
        await ledger.credit(ADDRESS, Decimal(0), payment_id="p1")
    with pytest.raises(ValueError, match="finer than"):
        await ledger.credit(ADDRESS, Decimal("0.0000001"), payment_id="p1")
    with pytest.raises(ValueError, match="payment_id must be 1 to 255"):
        await ledger.credit(ADDRESS, Decimal(1), payment_id="")
    with pytest.raises(ValueError, match="wallet address"):
        await ledger.credit("0x 12", Decimal(1), payment_id="p1")

    assert await ledger.available(ADDRESS) == 0
    assert await ledger.credit(ADDRESS, Decimal(1), payment_id="p1") == 1  # never recorded


# -- spending -----------------------------------------------------------------------------


async def test_a_wallet_is_drawn_on_and_billed_like_a_key(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    accounts = ledger_on[1]
    ledger = wallets(accounts)
    await ledger.credit(ADDRESS, Decimal(1), payment_id="p1")

    hold = await ledger.reserve(ADDRESS, charge("0.2", images=3))
    assert (hold.address, hold.available_usd) == (ADDRESS, Decimal(1))
    assert await ledger.available(ADDRESS) == Decimal("0.4")
    assert await ledger.settle(hold, Outcome.DELIVERED) == Decimal("0.4")
    assert await ledger.settle(hold, Outcome.DELIVERED) == Decimal("0.4")  # idempotent
    failed = await ledger.reserve(ADDRESS, charge("0.4"))
    assert await ledger.settle(failed, Outcome.FAILED) == Decimal("0.4")

    usage = await accounts.list_usage(key_id=ledger.store.wallet_id(ADDRESS))
    assert [(u.outcome, u.charged_usd, u.images) for u in usage] == [
        ("failed", 0, 1),
        ("delivered", Decimal("0.6"), 3),
    ]
    assert {(u.key_name, u.key_prefix, u.model) for u in usage} == {
        (f"x402 wallet {ADDRESS}", ADDRESS[:12], "test-model")
    }


async def test_a_short_wallet_is_refused_with_what_it_has(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    ledger = wallets(ledger_on[1])
    with pytest.raises(InsufficientWalletBalance) as never_credited:
        await ledger.reserve(ADDRESS, charge("0.01"))
    refused = never_credited.value
    assert (refused.available_usd, refused.needed_usd) == (Decimal(0), Decimal("0.01"))

    await ledger.credit(ADDRESS, Decimal("0.5"), payment_id="p1")
    await ledger.reserve(ADDRESS, charge("0.3"))
    with pytest.raises(InsufficientWalletBalance) as short:
        await ledger.reserve(ADDRESS, charge("0.3"))

    assert short.value.available_usd == Decimal("0.2")
    assert await ledger.available(ADDRESS) == Decimal("0.2")


async def test_concurrent_requests_never_overspend_a_wallet(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    ledger = wallets(ledger_on[1])
    await ledger.credit(ADDRESS, Decimal(1), payment_id="p1")

    results = await asyncio.gather(
        *(ledger.reserve(ADDRESS, charge("0.3")) for _ in range(10)), return_exceptions=True
    )
    holds = [r for r in results if not isinstance(r, BaseException)]
    assert len(holds) == 3
    assert all(isinstance(r, InsufficientWalletBalance) for r in results if r not in holds)
    await asyncio.gather(*(ledger.settle(hold, Outcome.DELIVERED) for hold in holds))

    assert await ledger.available(ADDRESS) == Decimal("0.1")


async def test_a_free_request_from_a_wallet_never_credited_is_let_through(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    ledger = wallets(ledger_on[1])

    hold = await ledger.reserve(ADDRESS, charge("0"))

    assert await ledger.settle(hold, Outcome.DELIVERED) == 0
    assert await ledger_on[1].list_keys() == []


async def test_start_releases_the_holds_a_crash_left_on_wallets(
    database: Database, tmp_path: Path
) -> None:
    crashed = database.accounts(outbox_dir=tmp_path / "outbox")
    await crashed.start()
    ledger = wallets(crashed)
    await ledger.credit(ADDRESS, Decimal(1), payment_id="p1")
    stranded = await ledger.reserve(ADDRESS, charge("0.6"))
    assert await ledger.available(ADDRESS) == Decimal("0.4")
    await crashed.abandon()  # killed without settling

    async with started(database, outbox_dir=tmp_path / "outbox") as accounts:
        restarted = wallets(accounts)
        assert await restarted.available(ADDRESS) == 1
        # A delivery decided before the crash that reaches the database late is still
        # charged, once.
        assert await restarted.settle(stranded, Outcome.DELIVERED) == Decimal("0.4")
        assert await restarted.settle(stranded, Outcome.DELIVERED) == Decimal("0.4")
        assert await restarted.available(ADDRESS) == Decimal("0.4")


# -- wallets are not keys -----------------------------------------------------------------


async def test_a_wallet_is_not_a_key(ledger_on: tuple[str, LedgerAccounts]) -> None:
    accounts = ledger_on[1]
    ledger = wallets(accounts)
    created = await accounts.create_key(name="k", balance_usd=Decimal(1))
    await ledger.credit(ADDRESS, Decimal(1), payment_id="p1")

    assert [key.id for key in await accounts.list_keys()] == [created.key.id]
    assert await accounts.store.count_keys() == 1
    for token in (ADDRESS, f"wallet:{ADDRESS}", ledger.store.wallet_id(ADDRESS)):
        with pytest.raises(AuthenticationFailed):
            await accounts.authenticate(token)
    # The operator can still look it up (and top it up or revoke it) by its prefix.
    assert (await accounts.get_key(ADDRESS[:12])).balance_usd == 1


async def test_a_database_holding_only_wallets_still_gets_a_bootstrap_key(
    database: Database,
) -> None:
    async with started(database) as accounts:
        await wallets(accounts).credit(ADDRESS, Decimal(1), payment_id="p1")

    async with started(database, bootstrap=True) as accounts:
        assert accounts.bootstrap_key is not None
        assert [key.name for key in await accounts.list_keys()] == ["bootstrap admin"]


async def test_a_revoked_wallet_is_credited_but_cannot_spend(
    ledger_on: tuple[str, LedgerAccounts],
) -> None:
    accounts = ledger_on[1]
    ledger = wallets(accounts)
    await ledger.credit(ADDRESS, Decimal(1), payment_id="p1")
    await accounts.revoke_key(ADDRESS[:12])

    assert await ledger.credit(ADDRESS, Decimal(1), payment_id="p2") == 2  # money came in
    with pytest.raises(AuthenticationFailed, match="blocked"):
        await ledger.reserve(ADDRESS, charge("0.01"))


async def test_an_upgrade_from_0002_keeps_keys_and_adds_wallets(database: Database) -> None:
    old = SqlStore(database.url, schema=database.schema)
    if old.url.get_backend_name() == "sqlite":  # what start() does first
        Path(old.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    await migrate.upgrade(old.engine, "0002")
    secret = generate_key()
    row = {
        "id": "0d7c6a55-0000-4000-8000-000000000002",
        "name": "from 0.1",
        "prefix": key_prefix(secret),
        "key_hash": hash_key(secret),
        "is_admin": False,
        "balance_micros": 2_500_000,
        "reserved_micros": 0,
        "created_at": utcnow(),
        "last_used_at": utcnow(),
    }
    async with old.engine.begin() as conn:
        # 0002's columns only: no wallet_address yet.
        await conn.execute(insert(api_keys).values(row))
    await old.close()

    async with started(database) as accounts:
        assert await migrate.current_revision(accounts.store.engine) == migrate.head_revision()
        principal = await accounts.authenticate(secret)
        assert (principal.name, principal.balance_usd) == ("from 0.1", Decimal("2.5"))
        assert [key.id for key in await accounts.list_keys()] == [row["id"]]
        assert await wallets(accounts).credit(ADDRESS, Decimal(5), payment_id="p1") == 5
        assert await accounts.store.count_keys() == 1


# -- settings → ledger --------------------------------------------------------------------


async def test_which_accounts_can_keep_wallets(tmp_path: Path) -> None:
    sql = SqlAccounts(f"sqlite+aiosqlite:///{tmp_path / 'murano.db'}", bootstrap=False)

    assert isinstance(wallet_ledger_for(sql), AccountsWalletLedger)
    assert isinstance(wallet_ledger_for(MemoryAccounts()), AccountsWalletLedger)
    assert wallet_ledger_for(StaticKeyAccounts(["test-key-0123456789"])) is None
    assert wallet_ledger_for(OpenAccounts()) is None


async def test_wallet_credits_are_switched_on_by_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = SqlAccounts(f"sqlite+aiosqlite:///{tmp_path / 'murano.db'}", bootstrap=False)
    static = StaticKeyAccounts(["test-key-0123456789"])

    assert build_wallet_ledger(Settings(data_dir=tmp_path), sql) is None
    monkeypatch.setenv("MURANO_X402_WALLETS", "true")
    on = Settings(data_dir=tmp_path)
    assert isinstance(build_wallet_ledger(on, sql), AccountsWalletLedger)
    with pytest.raises(ValueError, match="accounts_backend 'sql'"):
        build_wallet_ledger(on, static)


# -- through the app ----------------------------------------------------------------------


@asynccontextmanager
async def server(
    database: Database, tmp_path: Path, facilitator: LocalFacilitator
) -> AsyncIterator[tuple[Paid, SqlAccounts]]:
    """The app on `database` with wallet credits switched on in its settings; leaving the
    block shuts it down."""
    settings = gate_settings(tmp_path, facilitator.url, accounts_backend="sql", x402_wallets=True)
    accounts = database.accounts()
    # How create_app wires it (build_accounts → build_wallet_ledger → build_payment_gate);
    # built here only because the PostgreSQL tests need a schema of their own.
    gate = build_payment_gate(
        settings, wallets=build_wallet_ledger(settings, accounts), public_url=ORIGIN
    )
    assert gate is not None and gate.wallets_enabled
    parts = FakeEngineParts()
    engine = fake_engine(parts)
    app = create_app(settings, engine=engine, accounts=accounts, payment_gate=gate)
    async with app.router.lifespan_context(app):
        await engine.ensure_loaded(engine.catalog.default_id)
        yield Paid(app, parts, gate), accounts


async def test_top_up_then_spend_with_sign_in_across_a_restart(
    database: Database,
    tmp_path: Path,
    facilitator: LocalFacilitator,
    token: FakeUsdc,
    buyer: Buyer,
) -> None:
    buyer.client.register_extension(
        create_siwx_client_extension(CreateSIWxClientExtensionOptions(signers=[buyer.account]))
    )
    async with server(database, tmp_path, facilitator) as (app, _), app.client(buyer) as http:
        topped = await http.post(TOP_UP, params={"amountUsd": "6"}, json={})
        spent = await http.post(GENERATE, json={**BODY, "variants": 2})
    assert topped.status_code == 200, topped.text
    assert topped.json()["data"]["newBalance"] == 6
    assert spent.status_code == 200, spent.text
    assert spent.headers["x-balance-remaining"] == "5.980000"

    async with server(database, tmp_path, facilitator) as (app, accounts):
        async with app.client(buyer) as http:
            again = await http.post(GENERATE, json=BODY)
        usage = await accounts.list_usage()

    assert again.status_code == 200, again.text
    assert again.headers["x-venice-balance-usd"] == "5.98"
    assert again.headers["x-balance-remaining"] == "5.970000"
    assert [(u.key_name, u.charged_usd) for u in usage] == [
        (f"x402 wallet {buyer.address.lower()}", Decimal("0.01")),
        (f"x402 wallet {buyer.address.lower()}", Decimal("0.02")),
    ]
    assert len(token.transfers) == 1  # the top-up; the images came out of the credit


async def test_a_wallet_spent_down_gets_the_wallet_402(
    database: Database, tmp_path: Path, facilitator: LocalFacilitator, buyer: Buyer
) -> None:
    async with server(database, tmp_path, facilitator) as (app, accounts):
        await wallets(accounts).credit(buyer.address, Decimal("0.01"), payment_id="p1")
        async with app.client() as http:

            async def generate() -> httpx.Response:
                discovery = (await http.post(GENERATE, json=BODY)).json()
                header = await buyer.sign_in(discovery["extensions"]["sign-in-with-x"])
                return await http.post(GENERATE, json=BODY, headers={"SIGN-IN-WITH-X": header})

            spent, empty = await generate(), await generate()

    assert spent.status_code == 200, spent.text
    assert spent.headers["x-balance-remaining"] == "0.000000"
    assert empty.status_code == 402
    assert empty.json()["reason"] == "insufficient_balance"
    assert empty.json()["currentBalanceUsd"] == 0
