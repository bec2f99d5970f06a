"""`POST /image/generate`, `POST /images/generations` and `GET /image/styles`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from murano.accounts.credentials import Credentials
from murano.api.delivery import Delivery
from murano.api.deps import Connection, CurrentCredentials, Service
from murano.api.job_spec import JobSpec
from murano.api.protocol import GenerateImageRequest, OpenAIImageRequest
from murano.api.serving import Generated, ImageService
from murano.api.streaming import openai_stream
from murano.catalog.styles import STYLE_NAMES
from murano.engine.params import GenerationParams
from murano.imaging.encode import MIME_TYPES, sniff_format

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")


def _log(request: Request, params: GenerationParams, generated: Generated | None) -> None:
    fields: dict[str, Any] = {"model": params.model_id, "images": params.images}
    if generated is not None:
        fields["timing"] = generated.timings.as_venice()
    request.state.log_fields = fields


async def _generate(
    request: Request,
    credentials: Credentials,
    service: ImageService,
    job: JobSpec,
    *,
    delivery: Delivery,
    received: float,
    endpoint: str,
) -> Generated:
    """Both endpoints' common path: log fields, generate, log the timings."""
    _log(request, job.params, None)
    generated = await service.generate(
        credentials, job, delivery=delivery, received=received, endpoint=endpoint
    )
    _log(request, job.params, generated)
    return generated


@router.post("/image/generate", response_model=None)
async def generate_image(
    body: GenerateImageRequest,
    request: Request,
    credentials: CurrentCredentials,
    service: Service,
    delivery: Connection,
) -> Response:
    received = time.monotonic()
    from murano.api import jobs  # imports this module

    if jobs.prefers_async(request):
        return await jobs.respond_async(request, body, credentials, service)
    job, echo = native_job(body, service)
    generated = await _generate(
        request,
        credentials,
        service,
        job,
        delivery=delivery,
        received=received,
        endpoint="image/generate",
    )
    if body.return_binary:
        data = generated.rendered.images[0]
        fmt = sniff_format(data) or body.format
        return Response(data, media_type=MIME_TYPES[fmt], headers=generated.headers)
    images = generated.rendered.base64_images()
    content = {
        "id": f"generate-image-{request.state.request_id}",
        "images": images,
        "timing": generated.timings.as_venice(),
        "request": {"success": True, "data": echo},
    }
    size = sum(map(len, images))
    return await service.json_response(content, headers=generated.headers, size_hint=size)


def native_job(body: GenerateImageRequest, service: ImageService) -> tuple[JobSpec, dict[str, Any]]:
    """The checked job of a native request and its echo (the request, defaults filled in)."""
    job = body.to_job(service.catalog.get(body.model))
    return job, body.echo(job.params)


@router.post("/images/generations", response_model=None)
async def openai_generations(
    body: OpenAIImageRequest,
    request: Request,
    credentials: CurrentCredentials,
    service: Service,
    delivery: Connection,
) -> Response:
    received = time.monotonic()
    job = body.to_job(body.entry_in(service.catalog))
    if body.stream:
        _log(request, job.params, None)
        return await openai_stream(
            service,
            credentials,
            job,
            delivery=delivery,
            received=received,
            partial_images=body.partial_images or 0,
            quality=body.quality,
            background=body.background,
        )
    generated = await _generate(
        request,
        credentials,
        service,
        job,
        delivery=delivery,
        received=received,
        endpoint="images/generations",
    )
    image = generated.rendered.images[0]
    b64 = generated.rendered.base64_images()[0]
    if body.response_format == "url":
        mime = MIME_TYPES[sniff_format(image) or body.output_format]
        item = {"url": f"data:{mime};base64,{b64}"}
    else:
        item = {"b64_json": b64}
    content = {"created": int(time.time()), "data": [item]}
    return await service.json_response(content, headers=generated.headers, size_hint=len(b64))


@router.get("/image/styles")
async def image_styles() -> dict[str, Any]:
    return {"data": list(STYLE_NAMES), "object": "list"}
