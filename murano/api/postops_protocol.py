"""Request models of `POST /image/upscale` and `POST /image/background-remove`, as in
Venice's OpenAPI spec (`UpscaleImageRequest`, `BackgroundRemoveImageRequest`), and the one
reader that takes either endpoint's body as JSON or as `multipart/form-data`.

Types are strict as Zod's are (`"2"` is not a number in JSON); in a multipart form every
value is text, so the numeric fields are read as numbers there first. `image` is a string
(base64, data URL or URL) in JSON, and a file part or such a string in a form.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Annotated, Any, Final, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from PIL.Image import Image
from pydantic import BaseModel, ConfigDict, Field, StrictBytes, StrictFloat, StrictStr
from pydantic import ValidationError as PydanticValidationError
from starlette.datastructures import UploadFile

from murano.api.job_spec import JobSpec, OutputRequest
from murano.catalog.check import random_seed
from murano.catalog.entries import ModelEntry
from murano.catalog.postops import upscale_options, upscale_size, upscale_tier
from murano.engine.params import GenerationParams, Task
from murano.engine.upscale import CREATIVITY_TO_STRENGTH
from murano.errors import InvalidRequest, MuranoError

__all__ = [
    "MAX_CREATIVITY",
    "BackgroundRemoveImageRequest",
    "UpscaleImageRequest",
    "read_body",
]

# One number type, so that a wrong type reads "Expected number" (ints are accepted).
_Number = StrictFloat
# Venice clamps creativity to this range.
MAX_CREATIVITY: Final = 0.02


class UpscaleImageRequest(BaseModel):
    """`POST /api/v1/image/upscale`. The spec does not close this object
    (no `additionalProperties: false`), so unknown keys are ignored, as Venice does."""

    model_config = ConfigDict(extra="ignore", strict=True)

    image: StrictBytes | StrictStr
    scale: Annotated[_Number, Field(ge=2, le=4)] = 2
    creativity: _Number | None = 0.01

    def checked_scale(self) -> int:
        if self.scale not in (2, 4):
            raise InvalidRequest("scale", f"scale must be either 2 or 4 (got {self.scale}).")
        return int(self.scale)

    def clamped_creativity(self) -> float:
        """`creativity` clamped to 0–0.02 as Venice does; null is the default, 0.01."""
        value = 0.01 if self.creativity is None else float(self.creativity)
        if not math.isfinite(value):
            raise InvalidRequest("creativity", "creativity must be a finite number.")
        return min(max(value, 0.0), MAX_CREATIVITY)

    def to_job(self, entry: ModelEntry, image: Image) -> JobSpec:
        """The upscale of `image` this request asks of `entry` (an upscaler): its output
        size and price tier, and the creativity pass's strength where the entry has one."""
        try:
            size = upscale_size(image.width, image.height, self.checked_scale())
        except ValueError as exc:
            raise InvalidRequest("image", f"image: {exc}.") from None
        creativity = self.clamped_creativity()
        strength = creativity * CREATIVITY_TO_STRENGTH if upscale_options(entry).creativity else 0
        tier = upscale_tier(image.width, size[0])
        return _job(entry, "upscale", image, size, resolution=tier, strength=strength or None)


class BackgroundRemoveImageRequest(BaseModel):
    """`POST /api/v1/image/background-remove`: exactly one of `image` and `image_url`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    image: StrictBytes | StrictStr | None = None
    image_url: StrictStr | None = None

    def source(self) -> tuple[str, bytes | str]:
        """(field name, value) of the one input given."""
        given = [
            (name, value)
            for name, value in (("image", self.image), ("image_url", self.image_url))
            if value is not None
        ]
        if len(given) != 1:
            raise InvalidRequest(
                "image", "Provide exactly one of image (a file or base64) and image_url."
            )
        name, value = given[0]
        if name == "image_url" and not (
            isinstance(value, str) and value.strip()[:8].lower().startswith(("http://", "https://"))
        ):
            raise InvalidRequest("image_url", "image_url must be an http(s) URL.")
        return name, value

    def to_job(self, entry: ModelEntry, image: Image) -> JobSpec:
        """The cut-out of `image` this request asks of `entry` (a background remover)."""
        return _job(entry, "background-remove", image, image.size)


# Safe mode does not apply (neither request has `safe_mode`; the image is the caller's own),
# nor metadata (neither has `embed_exif_metadata`): a plain PNG.
_PNG = OutputRequest(fmt="png", safe_mode=False, hide_watermark=False, embed_metadata=False)


def _job(
    entry: ModelEntry,
    task: Task,
    image: Image,
    size: tuple[int, int],
    *,
    resolution: str | None = None,
    strength: float | None = None,
) -> JobSpec:
    """One post-processing job: `image` in, one PNG of `size` out."""
    params = GenerationParams(
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
        resolution=resolution,
        task=task,
        init_images=(image,),
        strength=strength,
    )
    return JobSpec(params, _PNG)


Model = TypeVar("Model", bound=BaseModel)

# Form fields read as numbers (every form value is text).
_NUMERIC: Final = frozenset({"scale", "creativity"})
# A text part may carry a base64 image of up to 25 MB (Starlette's default stops at 1 MB).
_MAX_TEXT_PART: Final = 36 * 1024 * 1024


def _json_error(message: str) -> RequestValidationError:
    return RequestValidationError([{"type": "json_invalid", "loc": ("body",), "msg": message}])


def _form_number(text: str) -> float | int | str:
    try:
        number = float(text)
    except ValueError:
        return text  # the model refuses it as "Expected number, received string"
    return int(number) if number.is_integer() else number


async def _form_values(request: Request) -> dict[str, Any]:
    values: dict[str, Any] = {}
    try:
        async with request.form(max_part_size=_MAX_TEXT_PART) as form:
            for name, value in form.multi_items():
                if name in values:
                    raise InvalidRequest(name, f"{name} must be given once.")
                if isinstance(value, UploadFile):
                    values[name] = await value.read()
                elif name in _NUMERIC:
                    values[name] = _form_number(value)
                else:
                    values[name] = value
    except MuranoError:
        raise
    except Exception as exc:  # python-multipart's parse errors have no common base
        raise InvalidRequest("body", f"Malformed multipart/form-data body: {exc}") from None
    return values


async def read_body(request: Request, model: type[Model]) -> Model:
    """The request body as `model`, from JSON or a multipart form; a malformed body or a
    field of the wrong shape is a 400 with Venice's DetailedError (raised for the app's
    validation handler)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        data: Any = await _form_values(request)
    else:
        raw = await request.body()
        try:
            # Bodies carry base64 images of up to 25 MB: parse them off the event loop.
            data = (
                await asyncio.to_thread(json.loads, raw) if len(raw) > 65_536 else json.loads(raw)
            )
        except (ValueError, UnicodeDecodeError):
            raise _json_error("Malformed JSON in the request body") from None
    if not isinstance(data, dict):
        raise RequestValidationError(
            [{"type": "model_type", "loc": ("body",), "msg": "Expected object", "input": data}]
        )
    try:
        return model.model_validate(data)
    except PydanticValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
