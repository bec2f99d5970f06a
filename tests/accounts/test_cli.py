"""`murano keys` and `murano usage`, run as a user would (in-process, through `main`)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from murano.accounts import Charge, Outcome, SqlAccounts
from murano.accounts.sql import sqlite_url
from murano.cli import main


@pytest.fixture(autouse=True)
def _no_env_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MURANO_DATABASE_URL", raising=False)
    monkeypatch.delenv("MURANO_DATA_DIR", raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    status, out, err = run(capsys, *argv)
    assert (status, err) == (0, "")
    return json.loads(out)


def spend(where: list[str], secret: str, images: int) -> None:
    """A request served by the server, through the same database."""
    option, value = where
    url = value if option == "--database-url" else sqlite_url(Path(value))

    async def serve() -> None:
        accounts = SqlAccounts(url, bootstrap=False)
        await accounts.start()
        try:
            principal = await accounts.authenticate(secret)
            admission = await accounts.admit(principal, Charge("m", images, Decimal("0.25")))
            await accounts.settle(admission, Outcome.DELIVERED, timings_ms={"total": 1234.0})
        finally:
            await accounts.close()

    asyncio.run(serve())


def test_a_key_lifecycle(cli_database: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    created = run_json(
        capsys,
        *("keys", "create", "--name", "ci", "--balance-usd", "1.5", "--rpm", "30"),
        *("--admin", "--expires", "2099-01-01", "--json", *cli_database),
    )
    assert created["key"].startswith("mur_") and created["prefix"] == created["key"][:12]
    assert (created["name"], created["admin"], created["balance_usd"], created["rpm"]) == (
        "ci",
        True,
        "1.5",
        30,
    )
    assert created["expires_at"] == "2099-01-01T00:00:00+00:00"

    status, out, _ = run(capsys, "keys", "create", "--name", "plain", *cli_database)
    plain = out.strip().splitlines()[-1]
    assert status == 0 and plain.startswith("mur_") and "unlimited balance" in out

    listed = run_json(capsys, "keys", "list", "--json", *cli_database)
    assert [k["name"] for k in listed] == ["ci", "plain"]
    assert created["key"] not in json.dumps(listed) and plain not in json.dumps(listed)

    status, out, _ = run(capsys, "keys", "top-up", created["prefix"], "--usd", "2", *cli_database)
    assert status == 0 and "balance 3.5 USD" in out

    spend(cli_database, created["key"], images=2)
    spend(cli_database, plain, images=1)
    usage = run_json(capsys, "usage", "--key", created["prefix"], "--json", *cli_database)
    assert [(u["key_name"], u["images"], u["charged_usd"]) for u in usage] == [("ci", 2, "0.5")]
    assert len(run_json(capsys, "usage", "--json", "--limit", "5", *cli_database)) == 2
    status, out, _ = run(capsys, "usage", *cli_database)
    assert status == 0 and "delivered" in out and "1234" in out

    status, out, _ = run(capsys, "keys", "revoke", created["id"], *cli_database)
    assert status == 0 and "Revoked" in out
    status, out, _ = run(capsys, "keys", "list", *cli_database)
    header, first, second = out.strip().splitlines()
    assert header.split()[:3] == ["ID", "PREFIX", "NAME"]
    # 1.5 + 2 topped up - 2 images at 0.25 spent.
    assert first.split()[4:8] == ["3", "0", "30", "revoked"]
    assert second.split()[4:8] == ["unlimited", "0", "default", "active"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("keys", "revoke", "mur_nothing1"), "No API key with id or prefix 'mur_nothing1'"),
        (("keys", "top-up", "mur_nothing1", "--usd", "1"), "No API key"),
        (("keys", "create", "--name", " "), "name must be"),
        (("keys", "create", "--name", "k", "--expires", "2001-01-01"), "in the future"),
    ],
)
def test_mistakes_exit_1_with_a_message(
    argv: tuple[str, ...], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, *argv, "--data-dir", str(tmp_path))
    assert (status, out) == (1, "")
    assert err.startswith(f"murano {argv[0]}: error: ") and message in err


@pytest.mark.parametrize(
    "argv",
    [
        ("keys", "create", "--name", "k", "--rpm", "0"),
        ("keys", "create", "--name", "k", "--balance-usd", "lots"),
        ("keys", "create", "--name", "k", "--balance-usd", "-1"),
        ("keys", "create", "--name", "k", "--expires", "soon"),
        ("keys", "top-up", "x", "--usd", "0.0000001"),
        ("usage", "--limit", "0"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    assert "error: argument" in capsys.readouterr().err


def test_the_database_url_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MURANO_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    run_json(capsys, "keys", "create", "--name", "k", "--json")
    assert (tmp_path / "env.db").exists()
    assert [k["name"] for k in run_json(capsys, "keys", "list", "--json")] == ["k"]
