"""`murano serve` has torch's OpenMP workers sleep between parallel regions
(`OMP_WAIT_POLICY=PASSIVE`) unless the environment says otherwise; the variable only works
when it is set before torch is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from murano.cli.serve import passive_openmp


def test_serve_sets_a_passive_wait_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_a_policy_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    passive_openmp()
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_the_cli_does_not_import_torch_before_serve_sets_it() -> None:
    # Every subcommand's parser is built, and the settings read, before `_serve` runs.
    code = (
        "import sys, murano.cli, murano.settings\n"
        "murano.cli.build_parser()\n"
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
