"""Server-Sent Events: the framing, and OpenAI's image-generation stream events exactly as
the official `openai` SDK parses them (`ImageGenPartialImageEvent`,
`ImageGenCompletedEvent`: an `event:` line naming the type, one `data:` line of JSON whose
`type` repeats it). A failure after the stream has started is an `error` event with
OpenAI's `{"error": {...}}` body, which the SDK raises as `APIError`.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

__all__ = [
    "SSE_HEADERS",
    "openai_completed",
    "openai_error",
    "openai_partial",
    "partial_steps",
    "sse",
]

# No caching, and no buffering by proxies that would hold events back (nginx).
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

_QUALITIES = ("low", "medium", "high", "auto")
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
) -> bytes:
    kind = "image_generation.partial_image"
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
) -> bytes:
    kind = "image_generation.completed"
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
