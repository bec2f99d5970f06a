"""Request models of the edit endpoints, field for field as in Venice's OpenAPI spec
(`EditImageRequest`, `MultiEditImageRequest` and their multipart forms) and OpenAI's
`images.edit`, and `parse_body`, which reads either content type into one of them.

Each model turns itself, with its decoded input images, into the job it asks for
(`to_job(entry, images)`): the catalog's edit check (task, output size), the inputs fitted
to the output, and the response's output options. It resizes images: run it off the event
loop.

Multipart forms carry text: their booleans and numbers are parsed from it ("true",
"1"), and their files arrive as bytes where the JSON body has a string."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL.Image import Image
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictBytes,
    StrictInt,
    StrictStr,
    ValidationError,
)
from starlette.datastructures import UploadFile

from murano.api.job_spec import JobSpec, OutputRequest
from murano.catalog.editing import attach_inputs, check_edit
from murano.catalog.entries import ModelEntry
from murano.engine.params import GenerationParams
from murano.errors import InvalidRequest
from murano.imaging.encode import ImageFormat

__all__ = [
    "EditImageRequest",
    "MultiEditImageRequest",
    "OpenAIEditRequest",
    "output_format",
    "parse_body",
]

AspectRatio = Literal["auto", "1:1", "3:2", "16:9", "21:9", "9:16", "2:3", "3:4", "4:5"]
OutputFormat = Literal["jpeg", "jpg", "png", "webp"]
ImageInput = StrictStr | StrictBytes
_Prompt = Annotated[StrictStr, Field(min_length=1, max_length=32768)]
_Id = Annotated[StrictStr, Field(min_length=1)]
_Resolution = Annotated[StrictStr, Field(min_length=1, max_length=10)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _EditOptions(_Strict):
    prompt: _Prompt
    aspect_ratio: AspectRatio | None = None
    resolution: _Resolution | None = None
    output_format: OutputFormat | None = None
    safe_mode: StrictBool = True
    enhance_prompt: StrictBool | None = None
    disable_prompt_optimization_thinking: StrictBool | None = None

    def refuse_unsupported(self, model: str) -> None:
        """Options no model here honours, refused before any image is read."""
        if self.enhance_prompt:
            raise InvalidRequest(
                "enhance_prompt",
                f"Model '{model}' does not support 'enhance_prompt': murano does not rewrite"
                " prompts.",
            )

    def to_job(self, entry: ModelEntry, images: Sequence[Image]) -> JobSpec:
        """The edit of `images` (the first is the base) this request asks of `entry`."""
        params = check_edit(
            entry,
            prompt=self.prompt,
            aspect_ratio=self.aspect_ratio,
            resolution=self.resolution,
            first_size=images[0].size,
            inputs=len(images),
        )
        fmt = output_format(self.output_format, params.resolution or "1K")
        output = OutputRequest(
            fmt=fmt,
            safe_mode=self.safe_mode,
            hide_watermark=False,
            embed_metadata=False,
            binary=True,
        )
        return JobSpec(attach_inputs(params, images), output)


class EditImageRequest(_EditOptions):
    """`POST /api/v1/image/edit`: one image (upload, base64, data URL or URL)."""

    image: ImageInput
    model: _Id | None = None
    # Deprecated by Venice in favour of `model`; accepted the same.
    modelId: _Id | None = None


class MultiEditImageRequest(_EditOptions):
    """`POST /api/v1/image/multi-edit`: the first image is the base."""

    images: Annotated[list[ImageInput], Field(min_length=1)]
    modelId: _Id | None = None
    quality: Literal["low", "medium", "high"] | None = None

    def refuse_unsupported(self, model: str) -> None:
        super().refuse_unsupported(model)
        if self.quality is not None:
            raise InvalidRequest("quality", f"Model '{model}' does not support 'quality'.")


OpenAISize = Literal["auto", "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536"]
_OPENAI_SIZES: dict[str, tuple[int, int]] = {
    "256x256": (256, 256),
    "512x512": (512, 512),
    "1024x1024": (1024, 1024),
    "1536x1024": (1536, 1024),
    "1024x1536": (1024, 1536),
}


class OpenAIEditRequest(_Strict):
    """`POST /api/v1/images/edits` (OpenAI's `images.edit`, multipart only). `image` holds
    one file or, as `image[]`, up to 16; `mask` applies to the first."""

    image: Annotated[list[StrictBytes], Field(min_length=1, max_length=16)]
    prompt: _Prompt
    mask: StrictBytes | None = None
    model: StrictStr = "default"
    n: Annotated[StrictInt, Field(ge=1, le=1)] | None = 1
    size: OpenAISize | None = "auto"
    output_format: Literal["png", "jpeg", "webp"] | None = "png"
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    # Validated; a local model has no use for them.
    background: Literal["transparent", "opaque", "auto"] | None = "auto"
    quality: Literal["auto", "high", "medium", "low", "standard"] | None = "auto"
    input_fidelity: Literal["high", "low"] | None = None
    output_compression: Annotated[StrictInt, Field(ge=0, le=100)] | None = 100
    user: StrictStr | None = None
    # OpenAI streaming: Server-Sent Events with `partial_images` previews, then the image.
    stream: StrictBool | None = False
    partial_images: Annotated[StrictInt, Field(ge=0, le=3)] | None = None

    def to_job(self, entry: ModelEntry, images: Sequence[Image], mask: Image | None) -> JobSpec:
        """The edit of `images` (`mask`, already decoded, for the first) this request asks
        of `entry`. Safe mode is always on, as OpenAI's moderation is."""
        params = self._params(entry, images, masked=mask is not None)
        output = OutputRequest(
            fmt=self.output_format or "png",
            safe_mode=True,
            hide_watermark=False,
            embed_metadata=False,
        )
        return JobSpec(attach_inputs(params, images, mask), output)

    def _params(self, entry: ModelEntry, images: Sequence[Image], masked: bool) -> GenerationParams:
        """Sizing: `size` exactly on width/height models; on models sized by aspect ratio,
        the listed ratio closest to `size`'s (at 1K), as with `aspect_ratio: auto`; `auto`:
        the first image's ratio."""
        size = _OPENAI_SIZES.get(self.size or "auto")
        params = check_edit(
            entry,
            prompt=self.prompt,
            aspect_ratio=None,
            resolution=None,
            first_size=size or images[0].size,
            inputs=len(images),
            masked=masked,
        )
        if size is None or entry.constraints.aspectRatios:
            return params
        divisor = entry.constraints.widthHeightDivisor
        if size[0] % divisor or size[1] % divisor:
            raise InvalidRequest(
                "size", f"size must be divisible by {divisor} for model '{entry.id}'."
            )
        return dataclasses.replace(params, width=size[0], height=size[1])


def output_format(asked: str | None, resolution: str) -> ImageFormat:
    """Venice's rule: the asked format (`jpg` = jpeg); if none, PNG at 1K, JPEG above."""
    if asked is None:
        return "png" if resolution.upper() == "1K" else "jpeg"
    return "jpeg" if asked == "jpg" else asked  # type: ignore[return-value]


Model = TypeVar("Model", bound=BaseModel)

# Form fields that hold files (several parts allowed) and those that hold typed values.
_LIST_FIELDS = {"images", "image"}
_BOOLS = {"safe_mode", "enhance_prompt", "disable_prompt_optimization_thinking", "stream"}
_INTS = {"n", "output_compression", "partial_images"}


async def parse_body(request: Request, model: type[Model]) -> Model:
    """The request body (JSON or multipart) as `model`; pydantic's errors become the same
    400 `DetailedError` as the other endpoints'."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data = await _form_data(request, model)
    else:
        try:
            data = await request.json()
        except ValueError:
            raise InvalidRequest("body", "Malformed JSON in the request body") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None


async def _form_data(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    try:
        form = await request.form(max_files=64, max_fields=64)
    except Exception:  # malformed multipart bodies raise several starlette/multipart types
        raise InvalidRequest("body", "Malformed multipart/form-data body") from None
    data: dict[str, Any] = {}
    try:
        for raw_key, value in form.multi_items():
            key = raw_key[:-2] if raw_key.endswith("[]") else raw_key
            item = await value.read() if isinstance(value, UploadFile) else value
            if key in _LIST_FIELDS and key in model.model_fields:
                data.setdefault(key, []).append(item)
            elif key in data:
                raise InvalidRequest(key, f"{key} is given more than once.")
            else:
                data[key] = _typed(key, item)
    finally:
        await form.close()
    if model is EditImageRequest and isinstance(data.get("image"), list):
        images = data["image"]
        data["image"] = images[0] if len(images) == 1 else images
    return data


def _typed(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if key in _BOOLS:
        lowered = value.strip().lower()
        if lowered in {"true", "1"}:
            return True
        if lowered in {"false", "0"}:
            return False
        raise InvalidRequest(key, f"{key} must be true or false.")
    if key in _INTS:
        try:
            return int(value)
        except ValueError:
            raise InvalidRequest(key, f"{key} must be an integer.") from None
    return value
