"""Server-Sent Events: the framing, and OpenAI's image stream events exactly as the official
`openai` SDK parses them (`ImageGenPartialImageEvent` and `ImageGenCompletedEvent` for
generation, `ImageEditPartialImageEvent` and `ImageEditCompletedEvent` for edits, which
differ only in the type's prefix: an `event:` line naming the type, one `data:` line of JSON
whose `type` repeats it). A failure after the stream has started is an `error` event with
OpenAI's `{"error": {...}}` body, which the SDK raises as `APIError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Literal

from starlette.responses import Response, StreamingResponse

from murano.api.errors import status_for
from murano.errors import MuranoError
from murano.imaging.encode import ImageFormat, encode

if TYPE_CHECKING:
    from PIL.Image import Image

    from murano.accounts.credentials import Credentials
    from murano.api.delivery import Delivery
    from murano.api.job_spec import JobSpec
    from murano.api.serving import Generated, ImageService
    from murano.engine.job import GenerationJob

__all__ = [
    "SSE_HEADERS",
    "EventPrefix",
    "openai_completed",
    "openai_error",
    "openai_partial",
    "openai_stream",
    "partial_steps",
    "sse",
]

# No caching, and no buffering by proxies that would hold events back (nginx).
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

_QUALITIES = ("low", "medium", "high", "auto")
# The event-type prefix per endpoint: `image_generation.completed`, `image_edit.completed`.
EventPrefix = Literal["image_generation", "image_edit"]
_BACKGROUNDS = ("transparent", "opaque", "auto")


def sse(event: str | None, data: Any, *, event_id: str | int | None = None) -> bytes:
    """One event: optional `id:` and `event:` lines, one compact JSON `data:` line."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return ("\n".join(lines) + "\n\n").encode()


def partial_steps(steps: int, partial_images: int) -> list[int]:
    """The denoising steps (1-based) after which partial images are sent: evenly spaced,
    never the last step (the final image is the completed event), at most one per step."""
    if partial_images <= 0 or steps <= 1:
        return []
    chosen = {max(1, round(steps * (i + 1) / (partial_images + 1))) for i in range(partial_images)}
    return sorted(step for step in chosen if step < steps)


def _common(
    b64: str, *, width: int, height: int, output_format: str, quality: str | None,
    background: str | None,
) -> dict[str, Any]:  # fmt: skip
    return {
        "b64_json": b64,
        "background": background if background in _BACKGROUNDS else "auto",
        "created_at": int(time.time()),
        "output_format": output_format,
        "quality": quality if quality in _QUALITIES else "auto",
        "size": f"{width}x{height}",
    }


def openai_partial(
    b64: str,
    index: int,
    *,
    width: int,
    height: int,
    output_format: str,
    quality: str | None = None,
    background: str | None = None,
    prefix: EventPrefix = "image_generation",
) -> bytes:
    kind = f"{prefix}.partial_image"
    data = _common(
        b64,
        width=width,
        height=height,
        output_format=output_format,
        quality=quality,
        background=background,
    )
    return sse(kind, {"type": kind, **data, "partial_image_index": index})


def openai_completed(
    b64: str,
    *,
    width: int,
    height: int,
    output_format: str,
    quality: str | None = None,
    background: str | None = None,
    prefix: EventPrefix = "image_generation",
) -> bytes:
    kind = f"{prefix}.completed"
    data = _common(
        b64,
        width=width,
        height=height,
        output_format=output_format,
        quality=quality,
        background=background,
    )
    usage = {
        "input_tokens": 0,
        "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
        "output_tokens": 0,
        "total_tokens": 0,
    }
    return sse(kind, {"type": kind, **data, "usage": usage})


def openai_error(message: str, *, status: int, code: str | None = None) -> bytes:
    kind: Literal["server_error", "invalid_request_error"] = (
        "server_error" if status >= 500 else "invalid_request_error"
    )
    return sse("error", {"error": {"message": message, "type": kind, "code": code}})


async def openai_stream(
    service: ImageService,
    credentials: Credentials,
    job: JobSpec,
    *,
    delivery: Delivery,
    received: float,
    partial_images: int,
    quality: str | None,
    background: str | None,
    endpoint: str = "images/generations",
    prefix: EventPrefix = "image_generation",
) -> Response:
    """`POST /images/generations` or `/images/edits` (`endpoint`, events named `prefix`)
    with `stream: true`. Admission happens before the stream starts (a refusal is an
    ordinary 4xx); partial images are the job's live previews at `partial_steps`; the
    charge settles when the completed event has been sent."""
    loop = asyncio.get_running_loop()
    params, output = job.params, job.output
    targets = set(partial_steps(params.steps, partial_images))
    previews: asyncio.Queue[Image | None] = asyncio.Queue()
    admitted: asyncio.Future[None] = loop.create_future()
    sent: set[int] = set()

    def listener(running: GenerationJob) -> None:
        step = running.progress[0] if running.progress is not None else None
        if step in targets and step not in sent and running.preview is not None:
            sent.add(step)
            previews.put_nowait(running.preview)

    def on_job(running: GenerationJob) -> None:
        running.add_listener(listener)
        if not admitted.done():
            admitted.set_result(None)

    task = loop.create_task(
        service.generate(
            credentials,
            job,
            delivery=delivery,
            endpoint=endpoint,
            received=received,
            preview_every=1 if targets else 0,
            on_job=on_job,
        )
    )
    task.add_done_callback(lambda _: previews.put_nowait(None))
    first: set[asyncio.Future[Any]] = {admitted, task}
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if task.done() and not admitted.done():
        task.result()  # a refusal raises here, before any byte of the stream
    entry = service.catalog.get(params.model_id)
    headers = {
        **SSE_HEADERS,
        "x-venice-model-id": entry.id,
        "x-venice-model-name": entry.model_spec.name,
    }
    pool = getattr(service.engine, "postprocess_pool", None)

    async def events() -> AsyncIterator[bytes]:
        index = 0
        while (image := await previews.get()) is not None:
            b64 = await loop.run_in_executor(pool, _b64_image, image, output.fmt)
            yield openai_partial(
                b64,
                index,
                width=params.width,
                height=params.height,
                output_format=output.fmt,
                quality=quality,
                background=background,
                prefix=prefix,
            )
            index += 1
        try:
            generated: Generated = await task
        except MuranoError as exc:
            yield openai_error(exc.message, status=status_for(exc))
            return
        except Exception:
            yield openai_error("Inference processing failed", status=500)
            return
        b64 = base64.b64encode(generated.rendered.images[0]).decode()
        yield openai_completed(
            b64,
            width=params.width,
            height=params.height,
            output_format=output.fmt,
            quality=quality,
            background=background,
            prefix=prefix,
        )

    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


def _b64_image(image: Image, fmt: ImageFormat) -> str:
    return base64.b64encode(encode(image.convert("RGB"), fmt)).decode()
