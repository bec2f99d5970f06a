"""`POST /image/upscale` and `POST /image/background-remove`: Venice's post-processing
endpoints. Each reads its body (JSON or multipart), decodes and checks the input image
(`murano.imaging.inputs`), makes a job for the catalog's upscaler or background remover and
hands it to the same service as generation: admission (keys, balances, rate limits, x402),
the model's queue, watermark and encoding, settlement on delivery. The answer is a PNG with
Venice's model headers.

Safe mode does not apply: neither request has a `safe_mode` field on Venice, and the image
is the caller's own. Metadata is never embedded (neither has `embed_exif_metadata`).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from PIL.Image import Image

from murano.api.deps import CurrentCredentials, Service
from murano.api.job_spec import JobSpec, OutputRequest
from murano.api.postops_protocol import (
    BackgroundRemoveImageRequest,
    UpscaleImageRequest,
    read_body,
)
from murano.api.serving import ImageService
from murano.catalog.check import random_seed
from murano.catalog.entries import ModelEntry, ModelType
from murano.catalog.postops import upscale_options, upscale_size, upscale_tier
from murano.engine.params import GenerationParams, Task
from murano.engine.upscale import CREATIVITY_TO_STRENGTH
from murano.errors import InvalidRequest, ModelNotFound
from murano.imaging.inputs import FetchPolicy, read_image
from murano.settings import Settings

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

_PNG = OutputRequest(fmt="png", safe_mode=False, hide_watermark=False, embed_metadata=False)


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


def _job(
    entry: ModelEntry, task: Task, image: Image, size: tuple[int, int], **extra: Any
) -> GenerationParams:
    """The job of one post-processing request: `image` in, one image of `size` out."""
    return GenerationParams(
        model_id=entry.id,
        prompt="",
        negative_prompt=None,
        width=size[0],
        height=size[1],
        steps=1,
        cfg_scale=0.0,
        seed=random_seed(),
        images=1,
        lora_strength=None,
        task=task,
        init_images=(image,),
        **extra,
    )


async def _deliver(
    request: Request,
    credentials: CurrentCredentials,
    service: ImageService,
    params: GenerationParams,
    *,
    received: float,
    endpoint: str,
) -> Response:
    request.state.log_fields = {"model": params.model_id, "images": 1}
    generated = await service.generate(
        credentials,
        JobSpec(params, _PNG),
        received=received,
        is_disconnected=request.is_disconnected,
        endpoint=endpoint,
    )
    request.state.log_fields["timing"] = generated.timings.as_venice()
    return Response(generated.rendered.images[0], media_type="image/png", headers=generated.headers)


@router.post("/image/upscale", response_model=None)
async def upscale_image(
    request: Request, credentials: CurrentCredentials, service: Service, policy: Policy
) -> Response:
    received = time.monotonic()
    body = await read_body(request, UpscaleImageRequest)
    scale, creativity = body.checked_scale(), body.clamped_creativity()
    entry = _model_for(service, "upscale")
    image = await read_image(body.image, field="image", policy=policy)
    try:
        size = upscale_size(image.width, image.height, scale)
    except ValueError as exc:
        raise InvalidRequest("image", f"image: {exc}.") from None
    options = upscale_options(entry)
    strength = creativity * CREATIVITY_TO_STRENGTH if options.creativity else 0.0
    tier = upscale_tier(image.width, size[0])
    params = _job(entry, "upscale", image, size, resolution=tier, strength=strength or None)
    if strength:
        # The creativity pass runs on an image model; have it resident before queueing.
        await service.engine.ensure_loaded(options.creativity_model or service.catalog.default_id)
    return await _deliver(
        request, credentials, service, params, received=received, endpoint="image/upscale"
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
    params = _job(entry, "background-remove", image, image.size)
    return await _deliver(
        request, credentials, service, params, received=received, endpoint="image/background-remove"
    )
