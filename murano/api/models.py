"""`GET /models` and `GET /models/traits`: Venice's `ModelResponse` objects for the catalog,
with each model's live state (offline when it failed to load, resident or not)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from murano.catalog.entries import ModelEntry
from murano.engine.engine import Engine, LoadState
from murano.errors import InvalidRequest

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

MODEL_TYPES = ("asr", "embedding", "image", "music", "text", "tts", "upscale", "inpaint", "video")
LIST_TYPES = (*MODEL_TYPES, "all", "code")


def _check_type(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InvalidRequest("type", f"type must be one of {', '.join(allowed)}.")
    return value


def model_response(entry: ModelEntry, engine: Engine) -> dict[str, Any]:
    status = engine.status(entry.id)
    spec = entry.model_spec.model_dump(mode="json", exclude_none=True)
    spec["offline"] = spec.get("offline", False) or status.state is LoadState.FAILED
    # murano's own keys: what the operator can see of the model's memory state.
    spec["resident"] = status.state is LoadState.RESIDENT
    spec["loadState"] = status.state.value
    if status.state is LoadState.FAILED:
        spec["loadError"] = status.error
        spec["nextLoadAttempt"] = (
            datetime.fromtimestamp(status.retry_at_unix, UTC).isoformat().replace("+00:00", "Z")
        )
    return {
        "created": entry.created,
        "id": entry.id,
        "model_spec": spec,
        "object": "model",
        "owned_by": "venice.ai",
        "type": "image",
    }


@router.get("/models")
async def list_models(request: Request, type: str = Query("text")) -> dict[str, Any]:
    kind = _check_type(type, LIST_TYPES)
    engine: Engine = request.app.state.engine
    entries = list(engine.catalog) if kind in {"image", "all"} else []
    return {"data": [model_response(e, engine) for e in entries], "object": "list", "type": kind}


@router.get("/models/traits")
async def model_traits(request: Request, type: str = Query("text")) -> dict[str, Any]:
    kind = _check_type(type, MODEL_TYPES)
    engine: Engine = request.app.state.engine
    data = engine.catalog.traits() if kind == "image" else {}
    return {"data": data, "object": "list", "type": kind}
