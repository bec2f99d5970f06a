"""The install step of scripts/serve.sh and scripts/test.sh (scripts/_venv.sh) runs only when
the project or its pins changed, and installs with the lock; scripts/lock.sh writes a lock
that pins every dependency. A fake `python` records what the scripts ask of pip."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the files the scripts read, and a virtual environment whose python only
    writes down its arguments."""
    (tmp_path / "scripts").mkdir()
    for name in ("pyproject.toml", "requirements.lock", "scripts/_venv.sh"):
        shutil.copy(ROOT / name, tmp_path / name)
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    python = bin_dir / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "pip.log"}\n')
    python.chmod(0o755)
    return tmp_path


def install(project: Path, extras: str = "", torch: str | None = None) -> list[str]:
    """Source _venv.sh as the scripts do; the pip commands it ran."""
    log = project / "pip.log"
    log.unlink(missing_ok=True)
    env = {"PATH": "/usr/bin:/bin", "MURANO_EXTRAS": extras}
    if torch is not None:
        env["TORCH_SPEC"] = torch
    subprocess.run(
        ["bash", "-c", "source scripts/_venv.sh"], cwd=project, env=env, check=True, timeout=60
    )
    return log.read_text().splitlines() if log.exists() else []


def test_installs_only_when_the_project_or_the_lock_changed(project: Path) -> None:
    first = install(project)
    assert first == [
        "-m pip install --quiet torch==2.13.0",
        "-m pip install --quiet -c requirements.lock -e .",
    ]
    assert install(project) == []  # a restart: nothing to install, no index needed
    with (project / "requirements.lock").open("a") as lock:
        lock.write("extra-package==1.0\n")
    assert len(install(project)) == 2
    assert install(project) == []
    (project / "pyproject.toml").write_text((project / "pyproject.toml").read_text() + "\n")
    assert len(install(project)) == 2


def test_a_dev_install_covers_the_server(project: Path) -> None:
    assert install(project, "[dev]")[-1] == "-m pip install --quiet -c requirements.lock -e .[dev]"
    assert install(project) == []  # serve.sh after test.sh
    assert install(project, "[dev]") == []


def test_torch_spec_may_carry_pip_options(project: Path) -> None:
    spec = "torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
    commands = install(project, torch=spec)
    assert commands[0] == f"-m pip install --quiet {spec}"
    assert install(project, torch=spec) == []
    assert len(install(project)) == 2  # back to the default build: install again


def test_the_lock_pins_every_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    for text in [*project["dependencies"], *project["optional-dependencies"]["dev"]]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        if name == "torch":
            assert name not in pins  # TORCH_SPEC decides
            continue
        assert name in pins, f"{name} is not in requirements.lock: run scripts/lock.sh"
        assert requirement.specifier.contains(pins[name], prereleases=True), (name, pins[name])


def test_lock_script_writes_the_same_lock_from_this_environment(tmp_path: Path) -> None:
    """scripts/lock.sh reads the installed environment; run on the environment the tests
    run in, it reproduces the committed lock (when it does not, re-run scripts/lock.sh)."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "_lock.py"), str(ROOT / "pyproject.toml")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    made = {line for line in done.stdout.splitlines() if not line.startswith("#")}
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    committed = {line for line in lines if not line.startswith("#")}
    assert sorted(made - committed) == sorted(committed - made) == []
