"""Request and response models for the image endpoints, field for field as in Venice's
OpenAPI spec (`GenerateImageRequest`, `SimpleGenerateImageRequest`). Unknown keys are
rejected (`additionalProperties: false`); types are strict as Zod's are."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

__all__ = [
    "OPENAI_SIZES",
    "GenerateImageRequest",
    "ImageFormat",
    "JobRequest",
    "OpenAIImageRequest",
    "StyleReference",
]

ImageFormat = Literal["jpeg", "png", "webp"]

_Number = StrictInt | StrictFloat


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class StyleReference(_Strict):
    image: StrictStr
    strength: Annotated[_Number, Field(ge=0.1, le=1)] | None = None


class GenerateImageRequest(_Strict):
    """`POST /api/v1/image/generate`."""

    model: StrictStr
    prompt: Annotated[StrictStr, Field(min_length=1, max_length=7500)]
    negative_prompt: Annotated[StrictStr, Field(max_length=7500)] | None = None
    width: Annotated[StrictInt, Field(gt=0, le=1280)] | None = None
    height: Annotated[StrictInt, Field(gt=0, le=1280)] | None = None
    aspect_ratio: StrictStr | None = None
    resolution: StrictStr | None = None
    quality: Literal["low", "medium", "high"] | None = None
    cfg_scale: Annotated[_Number, Field(gt=0, le=20)] | None = None
    steps: Annotated[StrictInt, Field(gt=0)] | None = None
    seed: Annotated[StrictInt, Field(ge=-999_999_999, le=999_999_999)] | None = None
    variants: Annotated[StrictInt, Field(ge=1, le=4)] | None = None
    lora_strength: Annotated[StrictInt, Field(ge=0, le=100)] | None = None
    style_preset: StrictStr | None = None
    style_references: list[StyleReference] | None = None
    format: ImageFormat = "webp"
    return_binary: StrictBool = False
    embed_exif_metadata: StrictBool = False
    hide_watermark: StrictBool = False
    safe_mode: StrictBool = True
    enable_web_search: StrictBool | None = None
    enhance_prompt: StrictBool | None = None
    disable_prompt_optimization_thinking: StrictBool | None = None
    # murano's own: false runs the model without its step cache (where the operator allows).
    step_cache: StrictBool | None = None
    # Deprecated by Venice (disabled 2025-05-19): accepted by the schema, refused with a 400.
    inpaint: Any = None


WebhookEvent = Literal["queued", "started", "completed", "failed", "cancelled"]


class JobRequest(GenerateImageRequest):
    """`POST /api/v1/image/jobs`: the native request, run as an async job, plus a webhook."""

    webhook_url: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = None
    webhook_events: Annotated[list[WebhookEvent], Field(min_length=1)] | None = None


OPENAI_SIZES: dict[str, tuple[int, int] | None] = {
    "auto": None,
    "256x256": (256, 256),
    "512x512": (512, 512),
    "1024x1024": (1024, 1024),
    "1536x1024": (1536, 1024),
    "1024x1536": (1024, 1536),
    "1792x1024": (1792, 1024),
    "1024x1792": (1024, 1792),
}


class OpenAIImageRequest(_Strict):
    """`POST /api/v1/images/generations` (OpenAI-compatible)."""

    prompt: Annotated[StrictStr, Field(min_length=1, max_length=1500)]
    model: StrictStr = "default"
    n: Annotated[StrictInt, Field(ge=1, le=1)] | None = 1
    size: (
        Literal[
            "auto",
            "256x256",
            "512x512",
            "1024x1024",
            "1536x1024",
            "1024x1536",
            "1792x1024",
            "1024x1792",
        ]
        | None
    ) = "auto"
    output_format: ImageFormat = "png"
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    moderation: Literal["low", "auto"] | None = "auto"
    # Accepted and validated for OpenAI compatibility; they change nothing.
    background: Literal["transparent", "opaque", "auto"] | None = "auto"
    output_compression: Annotated[StrictInt, Field(ge=0, le=100)] | None = 100
    quality: Literal["auto", "high", "medium", "low", "hd", "standard"] | None = "auto"
    style: Literal["vivid", "natural"] | None = "natural"
    user: StrictStr | None = None
    # OpenAI streaming: Server-Sent Events with `partial_images` previews, then the image.
    stream: StrictBool | None = False
    partial_images: Annotated[StrictInt, Field(ge=0, le=3)] | None = None
