"""The smaller defects of issue #11, each as a user would meet it, on the real app (fake
engine) with real accounts on SQLite and PostgreSQL; and an accounts database that goes
away (PostgreSQL behind a relay the test cuts) as the API shows it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from murano.accounts import SqlAccounts
from tests.accounts.conftest import POSTGRES_URL, Database, make_database, postgres_schema
from tests.conftest import FakeEngineParts, fake_engine, make_settings, running
from tests.faults.relay import Relay

URL = "/api/v1/image/generate"
JSON = {"Content-Type": "application/json"}


@dataclass
class App:
    client: httpx.AsyncClient
    accounts: SqlAccounts
    parts: FakeEngineParts
    user: dict[str, str]
    admin: dict[str, str]
    secret: str

    async def balance(self) -> tuple[Decimal | None, Decimal]:
        key = await self.accounts.get_key(self.secret[:12])
        return key.balance_usd, key.reserved_usd


async def _app(db: Database, tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[App]:
    accounts = db.accounts(default_rpm=1000, failure_budget=1000, outbox_dir=tmp_path / "ob")
    engine = fake_engine(parts)
    settings = make_settings(tmp_path, max_body_bytes=16_384)
    async with running(settings, engine, accounts) as client:
        user = await accounts.create_key(name="user", balance_usd=Decimal(1))
        root = await accounts.create_key(name="root", is_admin=True)
        yield App(
            client,
            accounts,
            parts,
            {"Authorization": f"Bearer {user.secret}"},
            {"Authorization": f"Bearer {root.secret}"},
            user.secret,
        )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, parts: FakeEngineParts
) -> AsyncIterator[App]:
    async with make_database(request.param, tmp_path) as db:
        async for made in _app(db, tmp_path, parts):
            yield made


def assert_detailed(body: dict[str, Any], message: str) -> None:
    assert body["error"] == message
    assert body["details"] == {"_errors": [message]}
    assert body["issues"] == [{"code": "invalid_body", "path": [], "message": message}]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"model": "test-model", "prompt": "\xff\xfe"}', "The request body is not valid UTF-8"),
        (b"[" * 2000 + b"]" * 2000, "The request body's JSON is nested too deeply"),
        (
            b'{"model": "test-model", "prompt": "p", "seed": ' + b"9" * 10_000 + b"}",
            "The request body holds a number with too many digits",
        ),
    ],
    ids=["invalid-utf8", "deep", "huge-int"],
)
async def test_unreadable_bodies_are_detailed_400s_and_charge_nothing(
    app: App, content: bytes, message: str
) -> None:
    response = await app.client.post(URL, content=content, headers={**JSON, **app.user})
    assert response.status_code == 400
    assert_detailed(response.json(), message)
    assert await app.balance() == (Decimal(1), Decimal(0))
    assert app.parts.backends["test-model"].batches == []


async def test_a_chunked_body_over_the_limit_is_413(app: App) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "test-model", "prompt": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    response = await app.client.post(URL, content=chunks(), headers={**JSON, **app.user})
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert await app.balance() == (Decimal(1), Decimal(0))


async def test_nul_bytes_in_admin_input_are_400s_not_500s(app: App) -> None:
    created = await app.client.post(
        "/api/v1/api_keys", json={"description": "a\x00b"}, headers=app.admin
    )
    assert created.status_code == 400
    assert created.json()["details"]["description"]["_errors"] == [
        "name must not contain NUL characters"
    ]
    for method, path in [
        ("GET", "/api/v1/api_keys/a%00b"),
        ("GET", "/api/v1/usage?key=a%00b"),
        ("DELETE", "/api/v1/api_keys?id=a%00b"),
        ("POST", "/api/v1/api_keys/a%00b/top-up"),
    ]:
        body = {"usd": 1} if method == "POST" else None
        response = await app.client.request(method, path, json=body, headers=app.admin)
        assert response.status_code == 400, (path, response.text)
        assert "No API key with id or prefix" in response.json()["error"]


@pytest.mark.parametrize("path", [URL, "/api/v1/api_keys/rate_limits"])
async def test_a_key_without_bearer_is_refused_everywhere(app: App, path: str) -> None:
    raw = {"Authorization": app.secret}
    if path == URL:
        response = await app.client.post(
            path, json={"model": "test-model", "prompt": "p"}, headers=raw
        )
    else:
        response = await app.client.get(path, headers=raw)
    assert response.status_code == 401
    assert response.json() == {"error": "Authentication failed"}
    assert await app.balance() == (Decimal(1), Decimal(0))


async def test_the_402_names_no_other_service(app: App) -> None:
    poor = await app.accounts.create_key(name="poor", balance_usd=Decimal("0.001"))
    response = await app.client.post(
        URL,
        json={"model": "test-model", "prompt": "p", "width": 64, "height": 64},
        headers={"Authorization": f"Bearer {poor.secret}"},
    )
    assert response.status_code == 402
    assert "venice.ai" not in response.text


async def test_models_without_a_type_are_the_image_models_for_the_openai_sdk(app: App) -> None:
    response = await app.client.get("/api/v1/models")
    assert response.status_code == 200
    assert {m["id"] for m in response.json()["data"]} == {
        "test-model",
        "ratio-model",
        "guidance-model",
    }
    sdk = openai.AsyncOpenAI(
        base_url="http://murano.test/api/v1", api_key=app.secret, http_client=app.client
    )
    listed = [model.id async for model in sdk.models.list()]
    assert sorted(listed) == ["guidance-model", "ratio-model", "test-model"]
    text = await app.client.get("/api/v1/models", params={"type": "text"})
    assert text.json()["data"] == []


# -- the accounts database away ------------------------------------------------------------


@pytest.fixture
async def relayed_app(tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[tuple[Relay, App]]:
    port = int(POSTGRES_URL.rsplit(":", 1)[1].split("/")[0])
    relay = Relay("127.0.0.1", port)
    url = POSTGRES_URL.replace(f":{port}/", f":{await relay.start()}/")
    async with postgres_schema() as schema:
        try:
            async for made in _app(Database(url, schema), tmp_path, parts):
                yield relay, made
                await relay.restore()
        finally:
            await relay.close()


@pytest.mark.postgres
async def test_a_database_outage_is_503_with_retry_after_and_readyz_says_so(
    relayed_app: tuple[Relay, App],
) -> None:
    relay, app = relayed_app
    request = {"model": "test-model", "prompt": "p", "width": 64, "height": 64}
    assert (await app.client.post(URL, json=request, headers=app.user)).status_code == 200
    await relay.cut()
    for _ in range(3):
        response = await app.client.post(URL, json=request, headers=app.user)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json() == {
            "error": "The service is temporarily unavailable. Please try again later."
        }
    ready = await app.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["dependencies"] == {"database": "down"}
    metrics = (await app.client.get("/metrics")).text
    assert 'murano_dependency_up{dependency="database"} 0.0' in metrics
    assert 'murano_dependency_outages_total{dependency="database"} 1.0' in metrics
    await relay.restore()
    ready = await app.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["dependencies"] == {"database": "up"}
    assert (await app.client.post(URL, json=request, headers=app.user)).status_code == 200
    while app.accounts.outbox.pending():  # the refused admissions' possible reservations
        await app.accounts._flush()
    assert await app.balance() == (Decimal("0.98"), Decimal(0))
