"""`POST /image/upscale` and `POST /image/background-remove`: Venice's post-processing
endpoints. Each reads its body (JSON or multipart), decodes and checks the input image
(`murano.imaging.inputs`), has the request make its job for the catalog's upscaler or
background remover (`to_job(entry, image)`) and hands it to the same service as
generation: admission (keys, balances, rate limits, x402), the model's queue, watermark and
encoding, settlement on delivery. The answer is a PNG with Venice's model headers.

Safe mode does not apply: neither request has a `safe_mode` field on Venice, and the image
is the caller's own. Metadata is never embedded (neither has `embed_exif_metadata`).
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from murano.accounts.credentials import Credentials
from murano.api.deps import CurrentCredentials, Service
from murano.api.edit import run_logged
from murano.api.job_spec import JobSpec
from murano.api.postops_protocol import (
    BackgroundRemoveImageRequest,
    UpscaleImageRequest,
    read_body,
)
from murano.api.serving import ImageService
from murano.catalog.entries import ModelEntry, ModelType
from murano.catalog.postops import upscale_options
from murano.errors import ModelNotFound
from murano.imaging.inputs import FetchPolicy, read_image
from murano.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


def _fetch_policy(request: Request) -> FetchPolicy:
    settings: Settings = request.app.state.settings
    return FetchPolicy.from_patterns(
        settings.fetch_allow, max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s
    )


Policy = Annotated[FetchPolicy, Depends(_fetch_policy)]


def _model_for(service: ImageService, kind: ModelType) -> ModelEntry:
    """The catalog's first model of `kind`; 404 when this server has none."""
    models = service.catalog.of_type(kind)
    if not models:
        raise ModelNotFound(kind)
    return models[0]


async def _deliver(
    request: Request,
    credentials: Credentials,
    service: ImageService,
    job: JobSpec,
    *,
    received: float,
    endpoint: str,
) -> Response:
    generated = await run_logged(
        request, credentials, service, job, received=received, endpoint=endpoint
    )
    return Response(generated.rendered.images[0], media_type="image/png", headers=generated.headers)


@router.post("/image/upscale", response_model=None)
async def upscale_image(
    request: Request, credentials: CurrentCredentials, service: Service, policy: Policy
) -> Response:
    received = time.monotonic()
    body = await read_body(request, UpscaleImageRequest)
    # A bad scale or creativity is refused before the image is read.
    body.checked_scale()
    body.clamped_creativity()
    entry = _model_for(service, "upscale")
    image = await read_image(body.image, field="image", policy=policy)
    job = body.to_job(entry, image)
    if job.params.strength:
        # The creativity pass runs on an image model; have it resident before queueing.
        model = upscale_options(entry).creativity_model or service.catalog.default_id
        await service.engine.ensure_loaded(model)
    return await _deliver(
        request, credentials, service, job, received=received, endpoint="image/upscale"
    )


@router.post("/image/background-remove", response_model=None)
async def remove_background(
    request: Request, credentials: CurrentCredentials, service: Service, policy: Policy
) -> Response:
    received = time.monotonic()
    body = await read_body(request, BackgroundRemoveImageRequest)
    field, value = body.source()
    entry = _model_for(service, "background-remove")
    image = await read_image(value, field=field, policy=policy)
    job = body.to_job(entry, image)
    return await _deliver(
        request, credentials, service, job, received=received, endpoint="image/background-remove"
    )
