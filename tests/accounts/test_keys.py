"""API keys: created once, stored as a hash, authenticated until revoked or expired."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from murano.accounts import AmbiguousKey, Charge, KeyNotFound, Outcome
from murano.accounts import ledger as ledger_module
from murano.accounts.store import utcnow
from murano.errors import AuthenticationFailed

from .conftest import AccountsFactory, Database, new_key


async def test_a_new_key_authenticates_as_itself(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created = await accounts.create_key(name="ci", balance_usd=Decimal("2.5"), rpm=7)
    principal = await accounts.authenticate(created.secret)
    assert created.secret.startswith("mur_") and len(created.secret) == 44
    assert created.key.prefix == created.secret[:12]
    assert (principal.key_id, principal.name, principal.is_admin) == (created.key.id, "ci", False)
    assert (principal.balance_usd, principal.rpm) == (Decimal("2.5"), 7)


@pytest.mark.parametrize("token", [None, "", "mur_nope", "Bearer x"])
async def test_unknown_credentials_fail(open_accounts: AccountsFactory, token: str | None) -> None:
    accounts = await open_accounts()
    await accounts.create_key(name="other")
    with pytest.raises(AuthenticationFailed, match="Authentication failed"):
        await accounts.authenticate(token)


async def test_a_key_differing_in_one_character_fails(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created = await accounts.create_key(name="k")
    last = created.secret[-1]
    forged = created.secret[:-1] + ("a" if last != "a" else "b")
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(forged)


async def test_a_revoked_key_stops_working(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created = await accounts.create_key(name="k")
    revoked = await accounts.revoke_key(created.key.prefix)
    again = await accounts.revoke_key(created.key.id)
    assert revoked.revoked_at is not None and again.revoked_at == revoked.revoked_at
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(created.secret)


async def test_a_key_revoked_after_authentication_cannot_reserve(
    open_accounts: AccountsFactory,
) -> None:
    accounts = await open_accounts()
    created, principal = await new_key(accounts)
    await accounts.revoke_key(created.key.id)
    with pytest.raises(AuthenticationFailed):
        await accounts.admit(principal, Charge("m", 1, Decimal("0.01")))


async def test_an_expired_key_fails(
    open_accounts: AccountsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = await open_accounts()
    expires = utcnow() + timedelta(hours=1)
    created = await accounts.create_key(name="k", expires_at=expires)
    assert (await accounts.authenticate(created.secret)).key_id == created.key.id
    monkeypatch.setattr(ledger_module, "utcnow", lambda: expires + timedelta(seconds=1))
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(created.secret)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": ""}, "name must be"),
        ({"name": "k", "rpm": 0}, "rpm must be >= 1"),
        ({"name": "k", "balance_usd": Decimal("-1")}, "balance_usd must be >= 0"),
        ({"name": "k", "balance_usd": Decimal("0.0000001")}, "finer than"),
        ({"name": "k", "expires_at": utcnow() - timedelta(days=1)}, "in the future"),
    ],
)
async def test_bad_key_settings_are_refused(
    open_accounts: AccountsFactory, options: dict[str, object], message: str
) -> None:
    accounts = await open_accounts()
    with pytest.raises(ValueError, match=message):
        await accounts.create_key(**options)  # type: ignore[arg-type]
    assert await accounts.list_keys() == []


async def test_keys_are_found_by_id_or_prefix(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts()
    created = await accounts.create_key(name="k")
    assert (await accounts.get_key(created.key.prefix)).id == created.key.id
    assert (await accounts.get_key(created.key.id)).prefix == created.key.prefix
    with pytest.raises(KeyNotFound):
        await accounts.get_key("mur_missing1")


async def test_a_shared_prefix_is_ambiguous(open_accounts: AccountsFactory) -> None:
    accounts = await open_accounts(seed_keys=["same-prefix-key-one!", "same-prefix-key-two!"])
    keys = await accounts.list_keys()
    assert [key.prefix for key in keys] == ["same-", "same-"]
    with pytest.raises(AmbiguousKey):
        await accounts.get_key("same-")
    for seed in ("same-prefix-key-one!", "same-prefix-key-two!"):
        assert (await accounts.authenticate(seed)).is_admin


async def test_the_store_keeps_only_a_hash(database: Database) -> None:
    accounts = database.accounts()
    await accounts.start()
    try:
        created, principal = await new_key(accounts)
        admission = await accounts.admit(principal, Charge("m", 1, Decimal("0.01")))
        await accounts.settle(admission, Outcome.DELIVERED)
    finally:
        await accounts.close()
    engine = database.raw_engine()
    try:
        async with engine.connect() as conn:
            tables = ["api_keys", "reservations", "usage_records", "alembic_version"]
            dump = [
                str(row) for t in tables for row in await conn.execute(text(f"SELECT * FROM {t}"))
            ]
            stored = await conn.scalar(text("SELECT key_hash FROM api_keys"))
    finally:
        await engine.dispose()
    assert created.secret not in "".join(dump)
    assert created.secret[12:] not in "".join(dump)
    assert stored == hashlib.sha256(created.secret.encode()).hexdigest()


async def test_first_start_creates_one_admin_key_and_logs_it_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = database.accounts(bootstrap=True, public_url="http://0.0.0.0:9000")
    await first.start()
    await first.close()
    second = database.accounts(bootstrap=True)
    await second.start()
    try:
        key = first.bootstrap_key
        assert key is not None and second.bootstrap_key is None
        assert (await second.authenticate(key)).is_admin
        assert len(await second.list_keys()) == 1
    finally:
        await second.close()
    logged = [r for r in caplog.records if key in r.getMessage()]
    assert [r.levelno for r in logged] == [logging.WARNING]
    assert f'curl -H "Authorization: Bearer {key}" http://0.0.0.0:9000/api/v1/image/generate' in (
        logged[0].getMessage()
    )


async def test_settings_keys_are_added_once_and_prevent_a_bootstrap_key(
    database: Database,
) -> None:
    seeds = ["a-long-settings-key-0123456789"]
    for _ in range(2):
        accounts = database.accounts(seed_keys=seeds, bootstrap=True)
        await accounts.start()
        try:
            assert accounts.bootstrap_key is None
            assert [key.name for key in await accounts.list_keys()] == ["settings key 1"]
            assert (await accounts.authenticate(seeds[0])).is_admin
        finally:
            await accounts.close()


async def test_no_key_reaches_the_logs_after_startup(
    open_accounts: AccountsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    accounts = await open_accounts()
    caplog.set_level(logging.DEBUG)
    created, principal = await new_key(accounts, usd="0.01")
    admission = await accounts.admit(principal, Charge("m", 1, Decimal("0.01")))
    await accounts.settle(admission, Outcome.DELIVERED)
    await accounts.settle(admission, Outcome.DELIVERED)
    with pytest.raises(Exception, match="Insufficient"):
        await accounts.admit(principal, Charge("m", 1, Decimal("0.01")))
    await accounts.note_failure(principal, "m", 400)
    await accounts.revoke_key(created.key.id)
    with pytest.raises(AuthenticationFailed):
        await accounts.authenticate(created.secret)
    assert created.secret not in caplog.text
