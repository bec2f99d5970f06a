"""Key administration over HTTP, shaped after Venice's `/api_keys` endpoints.

    GET    /api/v1/api_keys                   list active keys                 admin
    POST   /api/v1/api_keys                   create a key (shown once)         admin
    GET    /api/v1/api_keys/{id}              one key                           admin
    DELETE /api/v1/api_keys?id=ID             revoke a key                      admin
    POST   /api/v1/api_keys/{id}/top-up       add to a key's balance (murano)   admin
    GET    /api/v1/api_keys/rate_limits       the caller's balance and limits   any key
    GET    /api/v1/usage                      settled requests, newest first    admin

Errors are raised as murano's domain errors (AuthenticationFailed → 401, Forbidden →
403, InvalidRequest → 400) for the app's handlers to render as Venice does. Key
administration needs an accounts backend with a store (`sql`); `static` and `--no-auth`
servers answer it with 400. `rate_limits` lists the models in `app.state.model_ids` when
the app sets it, plus those with their own limit and those already used.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from murano.accounts.base import Accounts, Principal
from murano.accounts.management import KeyManager, LimitReporter, LimitStatus
from murano.accounts.records import AmbiguousKey, ApiKey, KeyNotFound, UsageRecord
from murano.api.deps import bearer_token
from murano.errors import Forbidden, InvalidRequest

__all__ = ["CreateKeyRequest", "TopUpRequest", "router"]

router = APIRouter(prefix="/api/v1", tags=["api keys"])

_BODY_FIELDS = {
    "name": "description",
    "balance_usd": "balanceUsd",
    "rpm": "rpm",
    "expires_at": "expiresAt",
}


class CreateKeyRequest(BaseModel):
    """Venice's `POST /api_keys` body, plus murano's `balanceUsd` and `rpm`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    description: Annotated[str, Field(min_length=1, max_length=200)]
    api_key_type: Literal["ADMIN", "INFERENCE"] = Field("INFERENCE", alias="apiKeyType")
    expires_at: datetime | None = Field(None, alias="expiresAt")
    balance_usd: Decimal | None = Field(None, alias="balanceUsd", ge=0, allow_inf_nan=False)
    rpm: int | None = Field(None, ge=1)
    consumption_limit: dict[str, float | None] | None = Field(None, alias="consumptionLimit")

    @field_validator("expires_at", mode="before")
    @classmethod
    def _empty_is_never(cls, value: object) -> object:
        return None if value == "" else value


class TopUpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    usd: Decimal = Field(gt=0, allow_inf_nan=False)


def _accounts(request: Request) -> Accounts:
    accounts: Accounts = request.app.state.accounts
    return accounts


async def _caller(request: Request) -> Principal:
    return await _accounts(request).authenticate(bearer_token(request))


Caller = Annotated[Principal, Depends(_caller)]


async def _admin(caller: Caller) -> Principal:
    if not caller.is_admin:
        raise Forbidden()
    return caller


Admin = Annotated[Principal, Depends(_admin)]


def _manager(request: Request, _: Admin) -> KeyManager:
    accounts = _accounts(request)
    if not isinstance(accounts, KeyManager):
        raise InvalidRequest(
            "accounts_backend",
            "Key administration needs the sql accounts backend (MURANO_ACCOUNTS_BACKEND=sql).",
        )
    return accounts


Manager = Annotated[KeyManager, Depends(_manager)]


@router.get("/api_keys")
async def list_keys(keys: Manager) -> dict[str, Any]:
    active = [key for key in await keys.list_keys() if key.revoked_at is None]
    return {"object": "list", "data": [_key_json(key) for key in active]}


@router.post("/api_keys")
async def create_key(body: CreateKeyRequest, keys: Manager) -> dict[str, Any]:
    if body.consumption_limit and any(v is not None for v in body.consumption_limit.values()):
        raise InvalidRequest(
            "consumptionLimit",
            "murano keys have a prepaid balance instead of epoch consumption limits; "
            "set balanceUsd.",
        )
    expires_at = body.expires_at
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    try:
        created = await keys.create_key(
            name=body.description,
            is_admin=body.api_key_type == "ADMIN",
            balance_usd=body.balance_usd,
            rpm=body.rpm,
            expires_at=expires_at,
        )
    except ValueError as exc:
        # The store names its own parameters; point at the body's names for them.
        field = _BODY_FIELDS.get(str(exc).split(" ", 1)[0], "body")
        raise InvalidRequest(field, str(exc)) from None
    return {"success": True, "data": {"apiKey": created.secret, **_key_json(created.key)}}


@router.get("/api_keys/rate_limits")
async def rate_limits(request: Request, caller: Caller) -> dict[str, Any]:
    accounts = _accounts(request)
    if not isinstance(accounts, LimitReporter):
        raise InvalidRequest("accounts_backend", "This accounts backend reports no limits.")
    status = await accounts.limit_status(caller, _model_ids(request))
    return {"data": _status_json(status)}


@router.get("/api_keys/{key_id}")
async def get_key(key_id: str, keys: Manager) -> dict[str, Any]:
    return {"data": _key_json(await _lookup(keys.get_key, key_id))}


@router.delete("/api_keys")
async def revoke_key(keys: Manager, key_id: Annotated[str, Query(alias="id")]) -> dict[str, Any]:
    await _lookup(keys.revoke_key, key_id)
    return {"success": True}


@router.post("/api_keys/{key_id}/top-up")
async def top_up(key_id: str, body: TopUpRequest, keys: Manager) -> dict[str, Any]:
    key = await _lookup(keys.get_key, key_id)
    try:
        key = await keys.top_up(key.id, body.usd)
    except ValueError as exc:
        raise InvalidRequest("usd", str(exc)) from None
    return {"success": True, "data": _key_json(key)}


@router.get("/usage")
async def usage(
    keys: Manager,
    key: Annotated[str | None, Query(description="a key's id or prefix")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    key_id = None if key is None else (await _lookup(keys.get_key, key)).id
    records = await keys.list_usage(key_id=key_id, limit=limit)
    return {"object": "list", "data": [_usage_json(record) for record in records]}


async def _lookup(find: Callable[[str], Awaitable[ApiKey]], ref: str) -> ApiKey:
    try:
        key = await find(ref)
    except (KeyNotFound, AmbiguousKey) as exc:
        raise InvalidRequest("id", str(exc)) from None
    return key


def _model_ids(request: Request) -> list[str]:
    models: Iterable[object] = getattr(request.app.state, "model_ids", ())
    return [model for model in models if isinstance(model, str)]


def _key_json(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "apiKeyType": "ADMIN" if key.is_admin else "INFERENCE",
        "description": key.name,
        "prefix": key.prefix,
        "createdAt": _iso(key.created_at),
        "expiresAt": _iso(key.expires_at),
        "lastUsedAt": _iso(key.last_used_at),
        "revokedAt": _iso(key.revoked_at),
        "balanceUsd": _number(key.balance_usd),
        "reservedUsd": _number(key.reserved_usd),
        "rpm": key.rpm,
    }


def _status_json(status: LimitStatus) -> dict[str, Any]:
    return {
        "accessPermitted": status.access_permitted,
        "apiTier": {"id": "murano", "isCharged": status.balance_usd is not None},
        "balances": {"USD": _number(status.balance_usd), "DIEM": 0},
        "keyExpiration": _iso(status.expires_at),
        "nextEpochBegins": _iso(datetime.fromtimestamp(status.next_window_ms / 1000, UTC)),
        "rateLimits": [
            {
                "apiModelId": limit.model_id,
                "rateLimits": [{"amount": limit.rpm, "type": "RPM"}],
                "remainingRequests": limit.remaining,
                "resetsAt": limit.reset_ms,
            }
            for limit in status.limits
        ],
    }


def _usage_json(record: UsageRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "keyId": record.key_id,
        "keyPrefix": record.key_prefix,
        "keyName": record.key_name,
        "model": record.model,
        "images": record.images,
        "chargedUsd": _number(record.charged_usd),
        "outcome": record.outcome,
        "reason": record.reason,
        "timingsMs": record.timings_ms,
        "createdAt": _iso(record.created_at),
    }


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")
