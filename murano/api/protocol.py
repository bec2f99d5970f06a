"""Request and response models for the image endpoints, field for field as in Venice's
OpenAPI spec (`GenerateImageRequest`, `SimpleGenerateImageRequest`). Unknown keys are
rejected (`additionalProperties: false`); types are strict as Zod's are.

Each request model turns itself into the job it asks for (`to_job(entry)`, as vLLM's
`to_sampling_params()`): the catalog's check against the model (constraints, sizing,
style), defaults filled in, and the response's output options."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from murano.api.job_spec import JobSpec, OutputRequest
from murano.catalog.check import MAX_SIDE, TextToImage, check
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.params import GenerationParams
from murano.errors import InvalidRequest
from murano.gateway.translate import ratio_for_size

__all__ = [
    "OPENAI_MAX_SIDE",
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

    def to_job(self, entry: ModelEntry) -> JobSpec:
        """The job this request asks of `entry`; InvalidRequest / UnsupportedFeature name
        the field otherwise."""
        if self.inpaint is not None:
            raise InvalidRequest(
                "inpaint", "inpaint is deprecated and was disabled on May 19th, 2025; omit it."
            )
        if self.return_binary and (self.variants or 1) > 1:
            raise InvalidRequest(
                "variants", "variants > 1 is only supported when return_binary is false."
            )
        output = OutputRequest(
            fmt=self.format,
            safe_mode=self.safe_mode,
            hide_watermark=self.hide_watermark,
            embed_metadata=self.embed_exif_metadata,
            style_preset=self.style_preset,
            binary=self.return_binary,
            as_base64=not self.return_binary,
        )
        return JobSpec(check(entry, self, max_side=MAX_SIDE), output)

    def echo(self, params: GenerationParams) -> dict[str, Any]:
        """The request as parsed, every default filled in from its checked `params`
        (`style_references` omitted, as Venice does)."""
        fields = set(GenerateImageRequest.model_fields) - {"style_references", "inpaint"}
        data = self.model_dump(include=fields, exclude_none=True)
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


WebhookEvent = Literal["queued", "started", "completed", "failed", "cancelled"]


class JobRequest(GenerateImageRequest):
    """`POST /api/v1/image/jobs`: the native request, run as an async job, plus a webhook."""

    webhook_url: Annotated[StrictStr, Field(min_length=1, max_length=2048)] | None = None
    webhook_events: Annotated[list[WebhookEvent], Field(min_length=1)] | None = None


# OpenAI's largest sizes are 1792 px on a side; Venice's native endpoint stops at 1280.
OPENAI_MAX_SIDE = 1792

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

    def entry_in(self, catalog: Catalog) -> ModelEntry:
        """The model asked for; OpenAI's own names (`dall-e-3`, `default`) mean the default."""
        return catalog.get(self.model) if self.model in catalog else catalog.default

    def to_job(self, entry: ModelEntry) -> JobSpec:
        """The job this request asks of `entry`. A model sized by aspect ratio takes
        `size` as the ratio it has (1024x1024: 1:1), one sized by width and height takes
        it as is (up to OpenAI's 1792 px)."""
        size = OPENAI_SIZES[self.size or "auto"]
        ratio = ratio_for_size(entry, *size) if size else None
        if ratio is not None:
            size = None
        asked = TextToImage(
            prompt=self.prompt,
            width=size[0] if size else None,
            height=size[1] if size else None,
            aspect_ratio=ratio,
        )
        output = OutputRequest(
            fmt=self.output_format,
            safe_mode=self.moderation != "low",
            hide_watermark=False,
            embed_metadata=False,
            as_base64=True,
        )
        return JobSpec(check(entry, asked, max_side=OPENAI_MAX_SIDE), output)
