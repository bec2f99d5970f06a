"""`GET /models` and `GET /models/traits`: Venice's `ModelResponse` objects for the catalog,
with each model's live state (offline when it failed to load, resident or not)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request

from murano.catalog.editing import EDIT_ASPECT_RATIOS, can_edit, max_input_images
from murano.catalog.entries import ModelEntry
from murano.catalog.spec import Price
from murano.engine.engine import Engine, LoadState, Replica
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
    # Upscalers and background removers take no prompt or size: no constraints to show.
    exclude = None if entry.type == "image" else {"constraints"}
    spec = entry.model_spec.model_dump(mode="json", exclude_none=True, exclude=exclude)
    spec["offline"] = spec.get("offline", False) or status.state is LoadState.FAILED
    # murano's own keys: what the operator can see of the model's memory state.
    spec["resident"] = status.state is LoadState.RESIDENT
    spec["loadState"] = status.state.value
    if status.state is LoadState.FAILED:
        spec["loadError"] = status.error
        spec["nextLoadAttempt"] = (
            datetime.fromtimestamp(status.retry_at_unix, UTC).isoformat().replace("+00:00", "Z")
        )
    # The entry's speed settings (`[models.optimize]`), applied at load.
    spec["optimizations"] = entry.optimize.report()
    # Its copies, one per device (none for a model served upstream).
    replicas = [_replica(replica) for replica in engine.replicas(entry.id)]
    if replicas:
        spec["replicas"] = replicas
    return {
        "created": entry.created,
        "id": entry.id,
        "model_spec": spec,
        "object": "model",
        "owned_by": "venice.ai",
        "type": entry.type,
    }


def _replica(replica: Replica) -> dict[str, Any]:
    status = replica.status
    shown: dict[str, Any] = {"device": replica.name, "loadState": status.state.value}
    if status.state is LoadState.FAILED:
        shown["loadError"] = status.error
    return shown


def inpaint_response(entry: ModelEntry, engine: Engine) -> dict[str, Any]:
    """An edit-capable model as Venice lists `type=inpaint` models: inpaint constraints
    (`aspectRatios` with `auto`, `combineImages`, `maxInputImages`), the `inpaint` price,
    and `capabilities.maxInputImages`, which the edit endpoints' docs point to."""
    response = model_response(entry, engine)
    spec = response["model_spec"]
    limit = max_input_images(entry)
    constraints = entry.constraints
    ratios = [r for r in constraints.aspectRatios or EDIT_ASPECT_RATIOS if r != "auto"]
    spec["constraints"] = {
        "aspectRatios": ["auto", *ratios],
        "promptCharacterLimit": constraints.promptCharacterLimit,
        "combineImages": limit > 1,
        "maxInputImages": limit,
        "resolutions": constraints.resolutions or ["1K"],
        "defaultResolution": constraints.defaultResolution or "1K",
    }
    pricing = entry.model_spec.pricing
    price = pricing.inpaint or pricing.generation or Price(usd=pricing.unit_price(None))
    spec["pricing"] = {"inpaint": price.model_dump(mode="json", exclude_none=True)}
    spec["capabilities"] = {"maxInputImages": limit}
    response["type"] = "inpaint"
    return response


def _listed(kind: str, engine: Engine) -> list[dict[str, Any]]:
    catalog = list(engine.catalog)
    data: list[dict[str, Any]] = []
    if kind in {"image", "all"}:
        generators = [e for e in catalog if e.type == "image" and e.family_info.generates]
        data += [model_response(e, engine) for e in generators]
    if kind in {"inpaint", "all"}:
        data += [inpaint_response(e, engine) for e in catalog if can_edit(e)]
    # Upscalers under `upscale`; background removers, which Venice's types do not name,
    # only under `all`.
    if kind in {"upscale", "all"}:
        data += [model_response(e, engine) for e in catalog if e.type == "upscale"]
    if kind == "all":
        data += [model_response(e, engine) for e in catalog if e.type == "background-remove"]
    return data


@router.get("/models")
async def list_models(request: Request, type: str | None = Query(None)) -> dict[str, Any]:
    # Venice lists its text models when no type is given; murano serves only images, so
    # it lists those (the OpenAI SDK's `client.models.list()` sends no type).
    kind = _check_type(type or "image", LIST_TYPES)
    engine: Engine = request.app.state.engine
    return {"data": _listed(kind, engine), "object": "list", "type": kind}


@router.get("/models/traits")
async def model_traits(request: Request, type: str = Query("text")) -> dict[str, Any]:
    kind = _check_type(type, MODEL_TYPES)
    engine: Engine = request.app.state.engine
    data = engine.catalog.traits() if kind == "image" else {}
    return {"data": data, "object": "list", "type": kind}
