"""Translation between murano's checked request and the two upstream dialects, and back.

    murano (GenerationParams)           Venice native                OpenAI Images
    width, height                  ↔    width, height            ↔   size "WxH" (or the
    ratio-sized: width, height     ↔    aspect_ratio, resolution      closest of `sizes`)
    images                         ↔    variants                 ↔   n
    format                         ↔    format                       (re-encoded here)
    images (bytes)                 ←    images[] (base64)        ←   data[].b64_json / url

Edits (`params.is_edit`): Venice gets JSON with base64 PNG inputs at `/image/edit` (one
input) or `/image/multi-edit` (several), the output's aspect ratio and tier; OpenAI gets
multipart `image[]` (and `mask`, transparent where it repaints) at `/images/edits`.

Pure functions; nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from PIL.Image import Image

from murano.catalog.check import size_for_aspect_ratio
from murano.catalog.editing import EDIT_ASPECT_RATIOS
from murano.catalog.entries import ModelEntry, UpstreamEntry
from murano.engine.params import GenerationParams
from murano.imaging.encode import ImageFormat

__all__ = [
    "UpstreamRequest",
    "aspect_ratio_of",
    "closest_size",
    "decode_b64",
    "openai_body",
    "openai_edit_form",
    "ratio_for_size",
    "upstream_model",
    "venice_body",
    "venice_edit_body",
    "venice_edit_path",
]


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """One checked request for a model served upstream, with the caller's output choices."""

    params: GenerationParams
    fmt: ImageFormat
    safe_mode: bool = True
    hide_watermark: bool = False
    embed_metadata: bool = False


def upstream_model(entry: ModelEntry, upstream: UpstreamEntry) -> str:
    return upstream.model or entry.id


def aspect_ratio_of(entry: ModelEntry, params: GenerationParams) -> str | None:
    """The aspect ratio (one of the entry's) that the checked width and height came from;
    None for models sized by width and height."""
    constraints = entry.constraints
    tier = (params.resolution or "1K").upper()
    for ratio in constraints.aspectRatios or []:
        size = size_for_aspect_ratio(ratio, tier, constraints.widthHeightDivisor)
        if size == (params.width, params.height):
            return ratio
    return None


def ratio_for_size(entry: ModelEntry, width: int, height: int) -> str | None:
    """The entry's aspect ratio equal to width:height (for OpenAI `size` on a ratio-sized
    model), or None when it has none."""
    for ratio in entry.constraints.aspectRatios or []:
        w, _, h = ratio.partition(":")
        try:
            if math.isclose(float(w) / float(h), width / height, rel_tol=1e-3):
                return ratio
        except (ValueError, ZeroDivisionError):
            continue
    return None


def venice_body(
    entry: ModelEntry, upstream: UpstreamEntry, request: UpstreamRequest
) -> dict[str, Any]:
    """A Venice `POST /image/generate` body. Always JSON back (`return_binary` false), so
    every variant and the upstream's flags arrive together."""
    params = request.params
    body: dict[str, Any] = {
        "model": upstream_model(entry, upstream),
        "prompt": params.prompt,
        "steps": params.steps,
        "seed": params.seed,
        "variants": params.images,
        "format": request.fmt,
        "safe_mode": request.safe_mode,
        "hide_watermark": request.hide_watermark,
        "embed_exif_metadata": request.embed_metadata,
        "return_binary": False,
    }
    ratio = aspect_ratio_of(entry, params)
    if ratio is not None:
        body["aspect_ratio"] = ratio
        if params.resolution is not None:
            body["resolution"] = params.resolution
    else:
        body["width"], body["height"] = params.width, params.height
    if params.negative_prompt:
        body["negative_prompt"] = params.negative_prompt
    if params.cfg_scale > 0:  # 0: not given, the upstream's default applies
        body["cfg_scale"] = params.cfg_scale
    if params.lora_strength is not None:
        body["lora_strength"] = params.lora_strength
    return body


def closest_size(sizes: list[str], width: int, height: int) -> str:
    """Of "WxH" sizes, the one closest to width:height in aspect ratio, then in area."""

    def distance(size: str) -> tuple[float, float]:
        w, _, h = size.partition("x")
        sw, sh = int(w), int(h)
        return abs(math.log((sw / sh) / (width / height))), abs(
            math.log(sw * sh / (width * height))
        )

    return min(sizes, key=distance)


def openai_body(
    entry: ModelEntry, upstream: UpstreamEntry, request: UpstreamRequest
) -> dict[str, Any]:
    """An OpenAI `POST /images/generations` body: only the fields every OpenAI image model
    takes; the format is converted here, as the answer is base64 of whatever it sends."""
    params = request.params
    size = f"{params.width}x{params.height}"
    if upstream.sizes:
        size = closest_size(upstream.sizes, params.width, params.height)
    return {
        "model": upstream_model(entry, upstream),
        "prompt": params.prompt,
        "n": params.images,
        "size": size,
    }


def _png(image: Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _edit_ratio(entry: ModelEntry, params: GenerationParams) -> str | None:
    """The edit's aspect ratio (of those the edit endpoints take) that gave its output
    size; None when it came from the input's own ratio (the upstream's `auto`)."""
    tier = (params.resolution or "1K").upper()
    listed = [r for r in entry.constraints.aspectRatios or [] if r != "auto"]
    for ratio in listed or EDIT_ASPECT_RATIOS:
        size = size_for_aspect_ratio(ratio, tier, entry.constraints.widthHeightDivisor)
        if size == (params.width, params.height):
            return ratio
    return None


def venice_edit_path(request: UpstreamRequest) -> str:
    return "/image/edit" if len(request.params.init_images) == 1 else "/image/multi-edit"


def venice_edit_body(
    entry: ModelEntry, upstream: UpstreamEntry, request: UpstreamRequest
) -> dict[str, Any]:
    """A Venice `POST /image/edit` or `/image/multi-edit` body (PNG inputs in base64);
    the answer is the edited image itself."""
    params = request.params
    inputs = [base64.b64encode(_png(image)).decode() for image in params.init_images]
    body: dict[str, Any] = {
        "modelId": upstream_model(entry, upstream),
        "prompt": params.prompt,
        "output_format": request.fmt,
        "safe_mode": request.safe_mode,
    }
    if len(inputs) == 1:
        body["image"] = inputs[0]
    else:
        body["images"] = inputs
    ratio = _edit_ratio(entry, params)
    body["aspect_ratio"] = ratio or "auto"
    if params.resolution is not None:
        body["resolution"] = params.resolution
    return body


def openai_edit_form(
    entry: ModelEntry, upstream: UpstreamEntry, request: UpstreamRequest
) -> tuple[dict[str, str], list[tuple[str, tuple[str, bytes, str]]]]:
    """An OpenAI `POST /images/edits` multipart form: its fields and its files (`image[]`
    per input, `mask` as a PNG whose transparent pixels are repainted)."""
    fields = {k: str(v) for k, v in openai_body(entry, upstream, request).items()}
    params = request.params
    files = [
        ("image[]", (f"image-{i}.png", _png(image), "image/png"))
        for i, image in enumerate(params.init_images)
    ]
    if params.mask is not None:
        # murano's mask is white where it repaints; OpenAI's is transparent there.
        alpha = params.mask.point(lambda v: 255 - v)
        rgba = PILImage.new("RGBA", params.mask.size, (0, 0, 0, 255))
        rgba.putalpha(alpha)
        files.append(("mask", ("mask.png", _png(rgba), "image/png")))
    return fields, files


def decode_b64(value: object) -> bytes:
    """Base64 image data (a data: URL's too); ValueError when it is not."""
    if not isinstance(value, str) or not value:
        raise ValueError("not a base64 string")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from exc
