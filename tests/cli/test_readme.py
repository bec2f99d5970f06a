"""Every `murano ...` command the README shows runs as written: the ones that start a server
or build models (`serve`, `models`: tested elsewhere, and minutes each on a busy CPU) are
parsed with the real parser (so a renamed or removed flag fails here), every other one is
run, in README order, against a temporary data directory and the real server in a
subprocess, and must exit 0. Placeholders the README uses for things only a reader has (a key
prefix, image files) are the only substitutions; when the README gains a command
with a new placeholder, add it to `substitute`."""

from __future__ import annotations

import base64
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from murano.cli import build_parser, main
from tests.cli.conftest import KEY
from tests.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

README = Path(__file__).parents[2] / "README.md"
KEY_PLACEHOLDER = "mur_AbCd1234"
PARSED_ONLY = {"serve", "models"}


@dataclass(frozen=True)
class Command:
    line: int
    env: dict[str, str]
    argv: list[str]

    def __str__(self) -> str:
        return f"README.md:{self.line}: murano {shlex.join(self.argv)}"


def shell_lines(text: str) -> list[tuple[int, str]]:
    """Lines of fenced shell blocks (bash, sh, shell or none) and of indented code blocks,
    with backslash continuations joined."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    previous_blank = True
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip() or "sh"
        elif fence in ("bash", "sh", "shell", "console"):
            lines.append((number, stripped))
        elif fence is None and raw.startswith("    ") and previous_blank:
            lines.append((number, stripped))
            continue
        previous_blank = not stripped
    joined: list[tuple[int, str]] = []
    for number, line in lines:
        if joined and joined[-1][1].endswith("\\"):
            joined[-1] = (joined[-1][0], joined[-1][1][:-1] + " " + line)
        else:
            joined.append((number, line))
    return joined


def optional_forms(line: str) -> list[str]:
    """`murano keys list [--json]` is shown as two commands: without and with the options."""
    if "[" not in line:
        return [line]
    bare = re.sub(r"\s*\[[^\]]*\]", "", line)
    full = re.sub(r"\[([^\]]*)\]", r"\1", line)
    return [bare, full]


def readme_commands() -> list[Command]:
    commands = []
    for number, line in shell_lines(README.read_text()):
        if not re.match(r"([A-Z_][A-Z0-9_]*=\S*\s+)*murano\s", line):
            continue
        for form in optional_forms(line):
            words = shlex.split(form, comments=True)
            env = {}
            while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                name, _, value = words.pop(0).partition("=")
                env[name] = value
            if words[:1] == ["murano"]:
                commands.append(Command(number, env, words[1:]))
    return commands


COMMANDS = readme_commands()


def test_the_readme_shows_commands_of_every_kind() -> None:
    """Guards the extraction itself: if it found nothing, every other test would pass."""
    kinds = {command.argv[0] for command in COMMANDS}
    assert {"serve", "generate", "keys", "usage", "watermark", "metadata", "models"} <= kinds


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_command_parses(command: Command) -> None:
    try:
        args = build_parser().parse_args(command.argv)
    except SystemExit as exc:
        pytest.fail(f"{command} does not parse (exit {exc.code})")
    assert callable(args.func)


@pytest.fixture
def workdir(tmp_path: Path, server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A reader's shell: a fresh data directory, the server and its key in the environment,
    and the image files the README's examples name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MURANO_DATABASE_URL", raising=False)
    monkeypatch.setenv("MURANO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MURANO_URL", server.url)
    monkeypatch.setenv("MURANO_API_KEY", KEY)
    for name, fmt in (("image.webp", "webp"), ("image.png", "png")):
        body = {
            "model": "murano-tiny",
            "prompt": "a lighthouse",
            "width": 256,
            "height": 256,
            "format": fmt,
            "embed_exif_metadata": True,
        }
        headers = {"Authorization": f"Bearer {KEY}"}
        response = httpx.post(
            f"{server.url}/api/v1/image/generate", json=body, headers=headers, timeout=300
        )
        response.raise_for_status()
        (tmp_path / name).write_bytes(base64.b64decode(response.json()["images"][0]))
    return tmp_path


def substitute(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    out = []
    for word in argv:
        if KEY_PLACEHOLDER in word:
            word = word.replace(KEY_PLACEHOLDER, first_key_prefix(capsys))
        out.append(word)
    return out


def first_key_prefix(capsys: pytest.CaptureFixture[str]) -> str:
    """The README's `mur_AbCd1234` is the key the reader made first."""
    assert main(["keys", "list", "--json"]) == 0
    keys = json.loads(capsys.readouterr().out)
    assert keys, "the README uses a key prefix before it creates a key"
    return str(keys[0]["prefix"])


def test_every_command_runs(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = []
    for command in COMMANDS:
        if command.argv[0] in PARSED_ONLY or command.env:
            continue
        argv = substitute(command.argv, capsys)
        status = main(argv)
        out, err = capsys.readouterr()
        assert status == 0, f"{command} exited {status}:\n{out}\n{err}"
        ran.append(argv[0])
    assert {"generate", "keys", "usage", "watermark", "metadata"} <= set(ran)
    assert (workdir / "lighthouse.webp").exists()
    assert (workdir / "boat-1.png").exists() and (workdir / "boat-2.png").exists()
