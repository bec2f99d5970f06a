"""The real server in a subprocess for the terminal's tests, with one static key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live_server import LiveServer, live_server

KEY = "cli-key-0123456789"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    env = {
        "MURANO_API_KEYS": KEY,
        "MURANO_ACCOUNTS_BACKEND": "static",
        "MURANO_DEFAULT_RPM": "1000",
    }
    with live_server(tmp_path_factory.mktemp("cli-server"), env=env) as running:
        yield running
