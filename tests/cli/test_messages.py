"""What a newcomer reads from the `murano` command: a help text for users, `--version`, and
one human line for each mistake (never a Python repr, a function name or a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from murano import __version__
from murano.cli import main


@pytest.fixture(autouse=True)
def _no_env_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MURANO_DATABASE_URL", raising=False)
    monkeypatch.delenv("MURANO_DATA_DIR", raising=False)


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_help_is_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert "self-hosted image-generation server" in text
    assert "register(subparsers)" not in text and "func(args)" not in text
    for command in ("serve", "generate", "keys", "usage", "models", "watermark", "metadata"):
        assert f"\n    {command}" in text
    assert 'murano generate "a lighthouse at dusk"' in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"murano {__version__}\n"


@pytest.mark.parametrize("amount", ["-3", "lots", "NaN"])
def test_a_bad_amount_says_what_is_wrong(amount: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "keys", "top-up", "X", "--usd", amount)
    last = err.splitlines()[-1]
    assert last.startswith("murano keys top-up: error: argument --usd: ")
    assert f"{amount!r} is not" in last and "parse_usd" not in err


def test_revoking_twice_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    where = ["--data-dir", str(tmp_path)]
    assert main(["keys", "create", "--name", "k", "--json", *where]) == 0
    prefix = json.loads(capsys.readouterr().out)["prefix"]
    assert main(["keys", "revoke", prefix, *where]) == 0
    assert capsys.readouterr().out.startswith(f"Revoked key {prefix}")
    assert main(["keys", "revoke", prefix, *where]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"murano keys: error: key {prefix} is already revoked\n"


def test_an_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["keys", "list", "--database-url", "postgresql://nobody@127.0.0.1:9/none"])
    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    assert err.startswith("murano keys: error: cannot open the database: ")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("command", [["metadata"], ["watermark", "check"]])
def test_a_file_that_is_not_an_image(
    command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    assert main([*command, str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"murano: cannot read {path}: not a PNG, JPEG or WebP image\n"
