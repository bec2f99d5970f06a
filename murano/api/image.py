"""`POST /image/generate`, `POST /images/generations` and `GET /image/styles`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from murano.accounts.base import Principal
from murano.api.delivery import Delivery
from murano.api.deps import Connection, CurrentPrincipal, Service
from murano.api.protocol import OPENAI_SIZES, GenerateImageRequest, OpenAIImageRequest
from murano.api.serving import Generated, ImageService, OutputRequest
from murano.api.streaming import openai_stream
from murano.catalog.check import MAX_SIDE
from murano.catalog.styles import STYLE_NAMES
from murano.engine.params import GenerationParams
from murano.errors import InvalidRequest
from murano.gateway import ratio_for_size
from murano.imaging.encode import MIME_TYPES, sniff_format

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

# OpenAI's largest sizes are 1792 px on a side; Venice's native endpoint stops at 1280.
OPENAI_MAX_SIDE = 1792


def _log(request: Request, params: GenerationParams, generated: Generated | None) -> None:
    fields: dict[str, Any] = {"model": params.model_id, "images": params.images}
    if generated is not None:
        fields["timing"] = generated.timings.as_venice()
    request.state.log_fields = fields


async def _generate(
    request: Request,
    principal: Principal,
    service: ImageService,
    params: GenerationParams,
    output: OutputRequest,
    *,
    delivery: Delivery,
    received: float,
    endpoint: str,
) -> Generated:
    """Both endpoints' common path: log fields, generate, log the timings."""
    _log(request, params, None)
    generated = await service.generate(
        principal, params, output, delivery=delivery, received=received, endpoint=endpoint
    )
    _log(request, params, generated)
    return generated


@router.post("/image/generate", response_model=None)
async def generate_image(
    body: GenerateImageRequest,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    delivery: Connection,
) -> Response:
    received = time.monotonic()
    from murano.api import jobs  # imports this module

    if jobs.prefers_async(request):
        return await jobs.respond_async(request, body, principal, service)
    params, output, echo = native_job(body, service)
    generated = await _generate(
        request,
        principal,
        service,
        params,
        output,
        delivery=delivery,
        received=received,
        endpoint="image/generate",
    )
    if body.return_binary:
        data = generated.rendered.images[0]
        fmt = sniff_format(data) or body.format
        return Response(data, media_type=MIME_TYPES[fmt], headers=generated.headers)
    content = {
        "id": f"generate-image-{request.state.request_id}",
        "images": generated.rendered.base64_images(),
        "timing": generated.timings.as_venice(),
        "request": {"success": True, "data": echo},
    }
    return await service.json_response(content, headers=generated.headers)


def native_job(
    body: GenerateImageRequest, service: ImageService
) -> tuple[GenerationParams, OutputRequest, dict[str, Any]]:
    """A checked native request: its parameters, its output options and its echo."""
    if body.inpaint is not None:
        raise InvalidRequest(
            "inpaint", "inpaint is deprecated and was disabled on May 19th, 2025; omit it."
        )
    if body.return_binary and (body.variants or 1) > 1:
        raise InvalidRequest(
            "variants", "variants > 1 is only supported when return_binary is false."
        )
    params = service.resolve(body.model, body, max_side=MAX_SIDE)
    output = OutputRequest(
        fmt=body.format,
        safe_mode=body.safe_mode,
        hide_watermark=body.hide_watermark,
        embed_metadata=body.embed_exif_metadata,
        style_preset=body.style_preset,
        binary=body.return_binary,
        as_base64=not body.return_binary,
    )
    return params, output, _echo(body, params)


def _echo(body: GenerateImageRequest, params: GenerationParams) -> dict[str, Any]:
    """The request as parsed, every default filled in (style_references omitted, as Venice)."""
    data = body.model_dump(exclude={"style_references", "inpaint"}, exclude_none=True)
    data.update(
        width=params.width,
        height=params.height,
        steps=params.steps,
        cfg_scale=params.cfg_scale,
        seed=params.seed,
        variants=params.images,
    )
    if params.resolution is not None:
        data["resolution"] = params.resolution
    return data


@router.post("/images/generations", response_model=None)
async def openai_generations(
    body: OpenAIImageRequest,
    request: Request,
    principal: CurrentPrincipal,
    service: Service,
    delivery: Connection,
) -> Response:
    received = time.monotonic()
    model = body.model if body.model in service.catalog else service.catalog.default_id
    size = OPENAI_SIZES[body.size or "auto"]
    # A model sized by aspect ratio takes OpenAI's size as the ratio it has (1024x1024: 1:1).
    ratio = ratio_for_size(service.catalog.get(model), *size) if size else None
    if ratio is not None:
        size = None
    native = GenerateImageRequest.model_construct(
        model=model,
        prompt=body.prompt,
        width=size[0] if size else None,
        height=size[1] if size else None,
        aspect_ratio=ratio,
        format=body.output_format,
        safe_mode=body.moderation != "low",
    )
    params = service.resolve(model, native, max_side=OPENAI_MAX_SIDE)
    output = OutputRequest(
        fmt=body.output_format,
        safe_mode=body.moderation != "low",
        hide_watermark=False,
        embed_metadata=False,
        as_base64=True,
    )
    if body.stream:
        _log(request, params, None)
        return await openai_stream(
            service,
            principal,
            params,
            output,
            delivery=delivery,
            received=received,
            partial_images=body.partial_images or 0,
            quality=body.quality,
            background=body.background,
        )
    generated = await _generate(
        request,
        principal,
        service,
        params,
        output,
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
    return await service.json_response(content, headers=generated.headers)


@router.get("/image/styles")
async def image_styles() -> dict[str, Any]:
    return {"data": list(STYLE_NAMES), "object": "list"}
