"""`murano generate` against the real server in a subprocess: files written in the format of
their extension, seeds and timings printed, and every failure one line with the server's
message and exit status 1."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from murano.cli import main
from tests.cli.conftest import KEY
from tests.live_server import LiveServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(autouse=True)
def _no_ambient_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MURANO_URL", raising=False)
    monkeypatch.delenv("MURANO_API_KEY", raising=False)


def image_format(path: Path) -> str | None:
    return Image.open(io.BytesIO(path.read_bytes())).format


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(["generate", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_variants_seed_size_and_style(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "boats" / "boat.png"
    status, stdout, stderr = run(
        capsys,
        "a red boat",
        "-o",
        str(out),
        "--seed",
        "41",
        "--variants",
        "2",
        "--size",
        "64x48",
        "--style",
        "3D Model",
        "--url",
        server.url,
        "--key",
        KEY,
    )
    assert (status, stderr) == (0, "")
    first, second = tmp_path / "boats" / "boat-1.png", tmp_path / "boats" / "boat-2.png"
    for path in (first, second):
        image = Image.open(io.BytesIO(path.read_bytes()))
        assert (image.format, image.size) == ("PNG", (64, 48))
    lines = stdout.splitlines()
    assert lines[0] == f"{first}  seed 41  64x48"
    assert lines[1] == f"{second}  seed 42  64x48"
    assert lines[2].startswith("timing: total ") and "inference" in lines[2]
    assert first.read_bytes() != second.read_bytes()


def test_default_model_and_name_from_the_environment(
    server: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MURANO_URL", server.url)
    monkeypatch.setenv("MURANO_API_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run(capsys, "a lighthouse", "--size", "64x64", "--seed", "7")
    assert (status, stderr) == (0, "")
    assert stdout.splitlines()[0] == "murano-7.webp  seed 7  64x64"
    assert image_format(tmp_path / "murano-7.webp") == "WEBP"


def test_the_same_seed_makes_the_same_image(
    server: LiveServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--seed", "5", "--size", "64x64", "--url", server.url, "--key", KEY]
    for name in ("a.png", "b.png"):
        status, _, stderr = run(capsys, "a hill", "-o", str(tmp_path / name), *common)
        assert (status, stderr) == (0, "")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--size", "65x64"],
            "murano generate: error: width must be divisible by 8 for model 'murano-tiny' "
            "(got 65). (HTTP 400)",
        ),
        (["-m", "no-such-model"], "murano generate: error: Specified model not found (HTTP 404)"),
        (["--style", "Nope"], "HTTP 400"),
    ],
)
def test_a_refused_request_is_one_line(
    server: LiveServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "x.webp"
    status, stdout, stderr = run(
        capsys, "a boat", "-o", str(out), "--url", server.url, "--key", KEY, *args
    )
    assert status == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1
    assert message in stderr
    assert not out.exists()


def test_a_wrong_key(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, stderr = run(capsys, "a boat", "--url", server.url, "--key", "wrong")
    assert status == 1
    assert stderr == "murano generate: error: Authentication failed (HTTP 401)\n"


def test_no_server(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, _, stderr = run(capsys, "a boat", "--url", "http://127.0.0.1:9", "--key", KEY)
    assert status == 1
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith("murano generate: error: cannot reach the server at ")
    assert "is `murano serve` running?" in stderr


def test_bad_arguments_are_refused_before_any_request(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, expected in [
        (["x", "--size", "big"], "'big' is not a size like 1024x1024"),
        (["x", "-o", "out.gif"], "needs an image extension: .webp, .png or .jpg"),
        (["x", "--variants", "9"], "'9' is not a whole number from 1 to 4"),
        (["x", "--size", "64x64", "--aspect-ratio", "1:1"], "not allowed with argument"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", *argv])
        assert exit_info.value.code == 2
        assert expected in capsys.readouterr().err


def test_the_installed_command(server: LiveServer, tmp_path: Path) -> None:
    """As a user runs it: a separate process, URL and key from the environment."""
    env = {**os.environ, "MURANO_URL": server.url, "MURANO_API_KEY": KEY}
    done = subprocess.run(
        [sys.executable, "-m", "murano", "generate", "a kite", "--size", "64x64", "-o", "k.jpg"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert image_format(tmp_path / "k.jpg") == "JPEG"
    assert done.stdout.splitlines()[0].startswith("k.jpg  seed ")


def test_model_loading_shows_progress_in_the_log(server: LiveServer) -> None:
    """diffusers' own progress bar for loading the pipeline reaches the server's log (so
    does huggingface_hub's for a download; none happens offline)."""
    log = server.log.read_text()
    assert "loading model murano-tiny from" in log
    assert "Loading pipeline components" in log
    assert f"playground: {server.url}/" in log
