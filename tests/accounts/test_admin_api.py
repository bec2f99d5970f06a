"""The admin API (`murano.api.admin`) on a minimal app: the router and a tiny handler
that renders domain errors as Venice does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from murano.accounts import (
    Accounts,
    Charge,
    LedgerAccounts,
    OpenAccounts,
    Outcome,
    StaticKeyAccounts,
)
from murano.api import admin
from murano.errors import AuthenticationFailed, Forbidden, InvalidRequest, MuranoError

from .conftest import accounts_factory

_STATUS = ((AuthenticationFailed, 401), (Forbidden, 403), (InvalidRequest, 400))


def make_app(accounts: Accounts) -> FastAPI:
    app = FastAPI()
    app.state.accounts = accounts
    app.include_router(admin.router)

    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MuranoError)
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return JSONResponse({"error": exc.message}, status_code=status, headers=exc.headers)

    app.add_exception_handler(MuranoError, on_error)
    return app


def client_for(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://murano.test")


class Setup:
    def __init__(self, accounts: LedgerAccounts, client: httpx.AsyncClient, app: FastAPI) -> None:
        self.accounts, self.client, self.app = accounts, client, app
        self.admin: dict[str, str] = {}
        self.user: dict[str, str] = {}


@pytest.fixture(params=["memory", "sqlite"])
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    async with accounts_factory(request.param, tmp_path) as open_accounts:
        accounts = await open_accounts()
        app = make_app(accounts)
        async with client_for(app) as client:
            made = Setup(accounts, client, app)
            root = await accounts.create_key(name="root", is_admin=True)
            user = await accounts.create_key(name="user", balance_usd=Decimal(1))
            made.admin = {"Authorization": f"Bearer {root.secret}"}
            made.user = {"Authorization": f"Bearer {user.secret}"}
            yield made


ADMIN_ONLY = [
    ("GET", "/api/v1/api_keys", None),
    ("POST", "/api/v1/api_keys", {"description": "x"}),
    ("DELETE", "/api/v1/api_keys?id=x", None),
    ("GET", "/api/v1/api_keys/x", None),
    ("POST", "/api/v1/api_keys/x/top-up", {"usd": 1}),
    ("GET", "/api/v1/usage", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ONLY)
async def test_admin_endpoints_need_an_admin_key(
    setup: Setup, method: str, path: str, body: object
) -> None:
    anonymous = await setup.client.request(method, path, json=body)
    assert (anonymous.status_code, anonymous.json()) == (401, {"error": "Authentication failed"})
    wrong = await setup.client.request(
        method, path, json=body, headers={"Authorization": "Bearer mur_wrong"}
    )
    assert wrong.status_code == 401
    user = await setup.client.request(method, path, json=body, headers=setup.user)
    assert (user.status_code, user.json()) == (403, {"error": "Unauthorized access"})


async def test_an_admin_creates_a_key_that_works_at_once(setup: Setup) -> None:
    body = {
        "description": "bot",
        "apiKeyType": "INFERENCE",
        "balanceUsd": 0.5,
        "rpm": 10,
        "expiresAt": "2099-01-01T00:00:00Z",
        "consumptionLimit": {"usd": None, "diem": None},
    }
    response = await setup.client.post("/api/v1/api_keys", json=body, headers=setup.admin)
    assert response.status_code == 200
    created = response.json()
    assert created["success"] is True
    data = created["data"]
    assert data["apiKey"].startswith("mur_") and data["prefix"] == data["apiKey"][:12]
    assert (data["apiKeyType"], data["description"], data["balanceUsd"], data["rpm"]) == (
        "INFERENCE",
        "bot",
        0.5,
        10,
    )
    assert data["expiresAt"] == "2099-01-01T00:00:00Z"
    principal = await setup.accounts.authenticate(data["apiKey"])
    assert principal.key_id == data["id"] and not principal.is_admin


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"description": "x", "consumptionLimit": {"usd": 5}}, "set balanceUsd"),
        ({"description": "x", "expiresAt": "2001-01-01T00:00:00Z"}, "in the future"),
    ],
)
async def test_creation_mistakes_are_400s(setup: Setup, body: object, field: str) -> None:
    response = await setup.client.post("/api/v1/api_keys", json=body, headers=setup.admin)
    assert response.status_code == 400 and field in response.text


async def test_an_admin_lists_and_revokes_keys_without_seeing_secrets(setup: Setup) -> None:
    listed = await setup.client.get("/api/v1/api_keys", headers=setup.admin)
    assert listed.json()["object"] == "list"
    keys = {key["description"]: key for key in listed.json()["data"]}
    assert set(keys) == {"root", "user"}
    assert keys["root"]["apiKeyType"] == "ADMIN" and keys["user"]["balanceUsd"] == 1.0
    for secret in (setup.admin, setup.user):
        assert secret["Authorization"].split()[1] not in listed.text
    one = await setup.client.get(f"/api/v1/api_keys/{keys['user']['prefix']}", headers=setup.admin)
    assert one.json()["data"]["id"] == keys["user"]["id"]

    revoked = await setup.client.delete(
        "/api/v1/api_keys", params={"id": keys["user"]["id"]}, headers=setup.admin
    )
    assert revoked.json() == {"success": True}
    after = await setup.client.get("/api/v1/api_keys/rate_limits", headers=setup.user)
    assert after.status_code == 401
    listed = await setup.client.get("/api/v1/api_keys", headers=setup.admin)
    assert [key["description"] for key in listed.json()["data"]] == ["root"]
    missing = await setup.client.delete(
        "/api/v1/api_keys", params={"id": "nope"}, headers=setup.admin
    )
    assert missing.status_code == 400 and "No API key" in missing.json()["error"]


async def test_an_admin_tops_up_a_key(setup: Setup) -> None:
    user = await setup.accounts.authenticate(setup.user["Authorization"].split()[1])
    path = f"/api/v1/api_keys/{user.key_id}/top-up"
    topped = await setup.client.post(path, json={"usd": "1.25"}, headers=setup.admin)
    assert topped.status_code == 200 and topped.json()["data"]["balanceUsd"] == 2.25
    unlimited = await setup.client.get("/api/v1/api_keys", headers=setup.admin)
    root_id = next(k["id"] for k in unlimited.json()["data"] if k["description"] == "root")
    refused = await setup.client.post(
        f"/api/v1/api_keys/{root_id}/top-up", json={"usd": 1}, headers=setup.admin
    )
    assert refused.status_code == 400 and "unlimited" in refused.json()["error"]
    zero = await setup.client.post(path, json={"usd": 0}, headers=setup.admin)
    assert zero.status_code == 422


async def test_rate_limits_answer_any_key_in_venices_shape(setup: Setup) -> None:
    setup.app.state.model_ids = ["murano-tiny"]
    user = await setup.accounts.authenticate(setup.user["Authorization"].split()[1])
    await setup.accounts.admit(user, Charge("other", 2, Decimal("0.25")))
    response = await setup.client.get("/api/v1/api_keys/rate_limits", headers=setup.user)
    data = response.json()["data"]
    assert data["accessPermitted"] is True
    assert data["apiTier"] == {"id": "murano", "isCharged": True}
    assert data["balances"] == {"USD": 0.5, "DIEM": 0}
    assert data["keyExpiration"] is None and data["nextEpochBegins"].endswith(":00Z")
    limits = {entry["apiModelId"]: entry for entry in data["rateLimits"]}
    assert limits["murano-tiny"]["rateLimits"] == [{"amount": 20, "type": "RPM"}]
    assert (limits["other"]["remainingRequests"], limits["murano-tiny"]["remainingRequests"]) == (
        18,
        20,
    )


async def test_usage_lists_settled_requests(setup: Setup) -> None:
    secret = setup.user["Authorization"].split()[1]
    user = await setup.accounts.authenticate(secret)
    for outcome in (Outcome.DELIVERED, Outcome.FAILED):
        admission = await setup.accounts.admit(user, Charge("m", 2, Decimal("0.1")))
        await setup.accounts.settle(admission, outcome, timings_ms={"total": 5.0})
    response = await setup.client.get(
        "/api/v1/usage", params={"key": secret[:12], "limit": 10}, headers=setup.admin
    )
    records = response.json()["data"]
    assert [(r["outcome"], r["chargedUsd"], r["images"]) for r in records] == [
        ("failed", 0.0, 2),
        ("delivered", 0.2, 2),
    ]
    assert records[0]["keyName"] == "user" and records[0]["timingsMs"] == {"total": 5.0}
    assert secret not in response.text


@pytest.mark.parametrize("kind", ["static", "open"])
async def test_accounts_without_a_store_report_limits_but_manage_no_keys(kind: str) -> None:
    accounts: Accounts = (
        StaticKeyAccounts(["a-static-admin-key-0000"]) if kind == "static" else OpenAccounts()
    )
    headers = {"Authorization": "Bearer a-static-admin-key-0000"}
    async with client_for(make_app(accounts)) as client:
        status = await client.get("/api/v1/api_keys/rate_limits", headers=headers)
        listing = await client.get("/api/v1/api_keys", headers=headers)
    assert status.status_code == 200 and status.json()["data"]["balances"]["USD"] is None
    if kind == "static":
        assert listing.status_code == 400 and "sql accounts backend" in listing.json()["error"]
    else:
        assert listing.status_code == 403
