"""A headless Chromium (Debian's `chromium`, driven by Playwright through `executable_path`:
Playwright's own browser download is not reachable here) against the real server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from tests.live_server import LiveServer, live_server

KEY = "playground-key-0123456789"
CHROMIUM = os.environ.get("MURANO_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A busy CI machine starts Chromium and answers slowly; waits are generous, never measured.
expect.set_options(timeout=30_000)

# Screenshots are kept here for people (and CI) to look at; the directory is git-ignored.
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data directory for every server of the session: the tiny model is built once."""
    return tmp_path_factory.mktemp("playground")


@pytest.fixture(scope="module")
def server(data_dir: Path) -> Iterator[LiveServer]:
    env = {
        "MURANO_API_KEYS": KEY,
        "MURANO_ACCOUNTS_BACKEND": "static",
        "MURANO_DEFAULT_RPM": "1000",
    }
    with live_server(data_dir, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def open_server(data_dir: Path) -> Iterator[LiveServer]:
    with live_server(data_dir, "--no-auth") as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped on purpose: between its calls Playwright's sync API leaves its event
    loop marked as running in this thread, which would break every asyncio test after it."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (CI's .ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
