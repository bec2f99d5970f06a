"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from murano.engine.engine import Engine
from murano.metrics import Metrics

__all__ = ["router"]

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    engine: Engine = request.app.state.engine
    ready = engine.ready
    status = "draining" if engine.draining else "ready" if ready else "loading"
    body = {"status": status, "model": engine.catalog.default_id}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    engine: Engine = request.app.state.engine
    for entry in engine.catalog:
        registry.queue_depth.labels(entry.id).set(engine.queue_depth(entry.id))
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)
