"""`POST /image/edit`, `POST /image/multi-edit` (Venice) and `POST /images/edits` (OpenAI).

Each reads its body (JSON or multipart), decodes and checks the input images, has the
request make its job (`to_job`: the model's edit check, the inputs fitted to the output)
and hands the job to the same service as generation — so billing, rate limits, x402, safe
mode, watermark and the job lifecycle are generation's. Venice's endpoints answer with the
raw image; OpenAI's with `{created, data: [{b64_json} | {url}]}`.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from PIL.Image import Image

from murano.accounts.credentials import Credentials
from murano.api.deps import Connection, CurrentCredentials, Service
from murano.api.edit_protocol import (
    EditImageRequest,
    MultiEditImageRequest,
    OpenAIEditRequest,
    parse_body,
)
from murano.api.job_spec import JobSpec
from murano.api.serving import Generated, ImageService
from murano.api.streaming import openai_stream
from murano.catalog.editing import can_edit
from murano.catalog.entries import Catalog, ModelEntry
from murano.errors import InvalidRequest
from murano.imaging.encode import MIME_TYPES, ImageFormat, sniff_format
from murano.imaging.inputs import (
    FetchPolicy,
    decode_image,
    mask_from_alpha,
    read_image,
)
from murano.settings import Settings

__all__ = ["default_edit_model", "router", "run_logged"]

router = APIRouter(prefix="/api/v1")


def default_edit_model(catalog: Catalog) -> ModelEntry:
    """The model an edit without a model id goes to: the default model when it edits,
    else the first model that does."""
    if can_edit(catalog.default):
        return catalog.default
    for entry in catalog:
        if can_edit(entry):
            return entry
    raise InvalidRequest("model", "No model on this server can edit images.")


def _edit_model(catalog: Catalog, model_id: str | None) -> ModelEntry:
    return default_edit_model(catalog) if model_id is None else catalog.get(model_id)


def _policy(request: Request) -> FetchPolicy:
    settings: Settings = request.app.state.settings
    return FetchPolicy.from_patterns(
        settings.fetch_allow, max_bytes=settings.fetch_max_bytes, timeout_s=settings.fetch_timeout_s
    )


def _fields(count: int, name: str) -> list[str]:
    return [name] if count == 1 else [f"{name}.{i}" for i in range(count)]


async def _read_all(
    values: Sequence[bytes | str], names: Sequence[str], policy: FetchPolicy
) -> list[Image]:
    return list(
        await asyncio.gather(
            *(read_image(v, field=n, policy=policy) for v, n in zip(values, names, strict=True))
        )
    )


async def run_logged(
    request: Request,
    credentials: Credentials,
    service: ImageService,
    job: JobSpec,
    *,
    received: float,
    endpoint: str,
) -> Generated:
    request.state.log_fields = {"model": job.params.model_id, "images": job.params.images}
    generated = await service.generate(
        credentials,
        job,
        received=received,
        is_disconnected=request.is_disconnected,
        endpoint=endpoint,
    )
    request.state.log_fields["timing"] = generated.timings.as_venice()
    return generated


def _binary(generated: Generated, fmt: ImageFormat) -> Response:
    data = generated.rendered.images[0]
    media = MIME_TYPES[sniff_format(data) or fmt]
    return Response(data, media_type=media, headers=generated.headers)


async def _venice_edit(
    request: Request,
    credentials: Credentials,
    service: ImageService,
    *,
    model_id: str | None,
    values: Sequence[bytes | str],
    names: Sequence[str],
    body: EditImageRequest | MultiEditImageRequest,
    endpoint: str,
) -> Response:
    received = time.monotonic()
    entry = _edit_model(service.catalog, model_id)
    images = await _read_all(values, names, _policy(request))
    job = await asyncio.to_thread(body.to_job, entry, images)
    generated = await run_logged(
        request, credentials, service, job, received=received, endpoint=endpoint
    )
    return _binary(generated, job.output.fmt)


@router.post("/image/edit", response_model=None)
async def edit_image(
    request: Request, credentials: CurrentCredentials, service: Service
) -> Response:
    body = await parse_body(request, EditImageRequest)
    model_id = body.model or body.modelId
    body.refuse_unsupported(model_id or "default")
    return await _venice_edit(
        request,
        credentials,
        service,
        model_id=model_id,
        values=[body.image],
        names=["image"],
        body=body,
        endpoint="image/edit",
    )


@router.post("/image/multi-edit", response_model=None)
async def multi_edit_image(
    request: Request, credentials: CurrentCredentials, service: Service
) -> Response:
    body = await parse_body(request, MultiEditImageRequest)
    body.refuse_unsupported(body.modelId or "default")
    return await _venice_edit(
        request,
        credentials,
        service,
        model_id=body.modelId,
        values=body.images,
        names=[f"images.{i}" for i in range(len(body.images))],
        body=body,
        endpoint="image/multi-edit",
    )


def _openai_mask(data: bytes, size: tuple[int, int]) -> Image:
    return mask_from_alpha(decode_image(data, field="mask"), size, field="mask")


@router.post("/images/edits", response_model=None)
async def openai_edits(
    request: Request, credentials: CurrentCredentials, service: Service, delivery: Connection
) -> Response:
    received = time.monotonic()
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise InvalidRequest("body", "images/edits takes multipart/form-data, as OpenAI's API.")
    body = await parse_body(request, OpenAIEditRequest)
    catalog = service.catalog
    entry = catalog.get(body.model) if body.model in catalog else default_edit_model(catalog)
    names = ["image"] if len(body.image) == 1 else [f"image[{i}]" for i in range(len(body.image))]
    images = await _read_all(body.image, names, _policy(request))
    mask = None
    if body.mask is not None:
        mask = await asyncio.to_thread(_openai_mask, body.mask, images[0].size)
    job = await asyncio.to_thread(body.to_job, entry, images, mask)
    fmt = job.output.fmt
    if body.stream:
        request.state.log_fields = {"model": job.params.model_id, "images": job.params.images}
        return await openai_stream(
            service,
            credentials,
            job,
            delivery=delivery,
            received=received,
            partial_images=body.partial_images or 0,
            quality=body.quality,
            background=body.background,
            endpoint="images/edits",
            prefix="image_edit",
        )
    generated = await run_logged(
        request, credentials, service, job, received=received, endpoint="images/edits"
    )
    image = generated.rendered.images[0]
    b64 = base64.b64encode(image).decode()
    item: dict[str, Any]
    if body.response_format == "url":
        item = {"url": f"data:{MIME_TYPES[sniff_format(image) or fmt]};base64,{b64}"}
    else:
        item = {"b64_json": b64}
    return JSONResponse({"created": int(time.time()), "data": [item]}, headers=generated.headers)
