"""Liveness, readiness and Prometheus metrics, each at the root (where probes and scrapers
look by default) and under `/api/v1` (where the rest of the API is)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from murano.engine.engine import Engine
from murano.metrics import Metrics

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
@router.get("/api/v1/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
@router.get("/api/v1/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    """200 once the default model is loaded and every service the accounts live in (the
    database, Redis) answers; 503 otherwise, naming what is down."""
    engine: Engine = request.app.state.engine
    check = getattr(request.app.state.accounts, "check_dependencies", None)
    dependencies: dict[str, bool] = await check() if check is not None else {}
    down = sorted(name for name, up in dependencies.items() if not up)
    if engine.draining:
        status = "draining"
    else:
        status = "loading" if not engine.ready else "unavailable" if down else "ready"
    body: dict[str, object] = {"status": status, "model": engine.catalog.default_id}
    if dependencies:
        body["dependencies"] = {name: "up" if up else "down" for name, up in dependencies.items()}
    headers = {"Retry-After": "5"} if down else None
    return JSONResponse(body, status_code=200 if status == "ready" else 503, headers=headers)


@router.get("/metrics")
@router.get("/api/v1/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    engine: Engine = request.app.state.engine
    for entry in engine.catalog:
        registry.queue_depth.labels(entry.id).set(engine.queue_depth(entry.id))
    dependencies = getattr(request.app.state.accounts, "dependencies", None)
    if dependencies is not None:
        registry.watch_dependencies(dependencies.snapshot)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
