"""Upscalers and background removers in the catalog: their entries, engines and options, and
the request rules of their endpoints that need no pixels (Venice's output pixel cap).

    [[models]]
    id = "upscaler"
    type = "upscale"                       # serves POST /image/upscale
    source = "caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr"
    family = "swin2sr"                     # optional: detected from the source
    options = { tile = 512, tile_overlap = 32 }
    [models.model_spec]
    name = "Swin2SR x4"
    pricing.upscale = { "2x" = { usd = 0.02 }, "4x" = { usd = 0.08 } }   # Venice's, when omitted

    [[models]]
    id = "bria-bg-remover"
    type = "background-remove"             # serves POST /image/background-remove
    source = "briaai/RMBG-1.4"
    weight_name = "onnx/model.onnx"
    options = { activation = "none" }

Engines (`family`), each detected from `source` when not given:

    type               family    source                                   loaded by
    upscale            swin2sr   a folder or repo with a Swin2SR config   transformers
    upscale            spandrel  one .pth/.pt/.ckpt/.safetensors file     spandrel (optional extra)
    background-remove  onnx      a .onnx file, or a folder/repo with one  ONNX Runtime
"""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from murano.catalog.entries import ModelEntry, ModelType
from murano.catalog.spec import ModelSpec, Price

__all__ = [
    "MAX_UPSCALE_PIXELS",
    "POSTOP_FAMILIES",
    "POSTOP_TYPES",
    "SegmentOptions",
    "UpscaleOptions",
    "build_postop_entry",
    "check_references",
    "is_postop",
    "segment_options",
    "tiny_entry",
    "upscale_options",
    "upscale_size",
    "upscale_tier",
]

POSTOP_TYPES: Final[tuple[ModelType, ...]] = ("upscale", "background-remove")
POSTOP_FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "upscale": ("swin2sr", "spandrel"),
    "background-remove": ("onnx",),
}
# Venice's cap on an upscale's output: 16,777,216 pixels (4096²).
MAX_UPSCALE_PIXELS: Final = 16_777_216
_SPANDREL_SUFFIXES: Final = (".pth", ".pt", ".ckpt", ".safetensors")

# Venice's prices: an upscale is $0.02 at 2x and $0.08 at 4x, a background removal $0.03.
_UPSCALE_PRICES: Final = {
    "2x": Price(usd=Decimal("0.02"), diem=Decimal("0.02")),
    "4x": Price(usd=Decimal("0.08"), diem=Decimal("0.08")),
}
_BACKGROUND_PRICE: Final = Price(usd=Decimal("0.03"), diem=Decimal("0.03"))


class UpscaleOptions(BaseModel):
    """`options` of an upscaler entry."""

    model_config = ConfigDict(extra="forbid")

    # Input tiles of at most this many pixels a side go through the model one at a time,
    # so that memory stays bounded for large images; neighbours overlap and are blended.
    tile: int = Field(default=512, ge=32)
    tile_overlap: int = Field(default=32, ge=0)
    # `creativity` > 0 adds an image-to-image pass at strength creativity × 10 on this image
    # model (None: the catalog's default model); False: creativity is accepted and unused.
    creativity: bool = True
    creativity_model: str | None = None


class SegmentOptions(BaseModel):
    """`options` of a background remover entry."""

    model_config = ConfigDict(extra="forbid")

    # How the model's first output becomes alpha: "sigmoid" for logits (BiRefNet),
    # "none" for probabilities (RMBG-1.4), "minmax" to stretch to 0–1 (U²-Net), "auto":
    # sigmoid when the output leaves 0–1, else none.
    activation: Literal["auto", "sigmoid", "none", "minmax"] = "auto"
    # Input side for models with dynamic input shapes and no preprocessor_config.json.
    size: int | None = Field(default=None, ge=8)


def is_postop(raw: dict[str, Any]) -> bool:
    return raw.get("type") in POSTOP_TYPES


def _detect_family(kind: str, source: str, weight_name: str | None) -> str:
    if kind == "background-remove":
        return "onnx"
    name = weight_name or source
    return "spandrel" if name.endswith(_SPANDREL_SUFFIXES) else "swin2sr"


def _default_spec(kind: str, name: str) -> dict[str, Any]:
    prices = {key: price.model_dump() for key, price in _UPSCALE_PRICES.items()}
    pricing: dict[str, Any] = {"upscale": prices}
    if kind == "background-remove":
        pricing["generation"] = _BACKGROUND_PRICE.model_dump()
    return {"name": name, "pricing": pricing}


def build_postop_entry(raw: dict[str, Any]) -> ModelEntry:
    """A validated upscaler or background remover entry; Venice's prices where the file
    gives none, its options checked against the type's."""
    kind = str(raw["type"])
    model_id = raw.get("id")
    family = raw.get("family") or _detect_family(
        kind, str(raw.get("source", "")), raw.get("weight_name")
    )
    if family not in POSTOP_FAMILIES[kind]:
        allowed = ", ".join(POSTOP_FAMILIES[kind])
        raise ValueError(f"model entry {model_id!r}: a {kind} model's family is one of {allowed}")
    spec = {**_default_spec(kind, str(raw.get("id", ""))), **(raw.get("model_spec") or {})}
    try:
        entry = ModelEntry.model_validate({**raw, "family": family, "model_spec": spec})
        if kind == "upscale":
            upscale_options(entry)
        else:
            segment_options(entry)
    except ValidationError as exc:
        raise ValueError(f"model entry {model_id!r}: {exc}") from exc
    return entry


def check_references(entries: list[ModelEntry]) -> None:
    """Each upscaler's `creativity_model` is an image model of the catalog."""
    images = {entry.id for entry in entries if entry.type == "image"}
    for entry in entries:
        if entry.type != "upscale":
            continue
        target = upscale_options(entry).creativity_model
        if target is not None and target not in images:
            raise ValueError(
                f"model entry {entry.id!r}: creativity_model {target!r} is not an image model"
                " of this catalog"
            )


def upscale_options(entry: ModelEntry) -> UpscaleOptions:
    return UpscaleOptions.model_validate(entry.options)


def segment_options(entry: ModelEntry) -> SegmentOptions:
    return SegmentOptions.model_validate(entry.options)


def tiny_entry(kind: ModelType, model_id: str, source: Path, family: str) -> ModelEntry:
    """An embedded tiny model's entry (random weights: its output is noise)."""
    what = "upscaler" if kind == "upscale" else "background remover"
    spec = ModelSpec.model_validate(
        _default_spec(kind, f"murano tiny {what} (random weights: output is noise)")
    )
    # Loaded on first use: a server that never upscales never spends the time.
    return ModelEntry(
        id=model_id,
        source=str(source),
        family=family,
        type=kind,
        device="cpu",
        load="first-use",
        model_spec=spec,
    )


def upscale_size(width: int, height: int, scale: int) -> tuple[int, int]:
    """The output size of an upscale by `scale`: reduced, as on Venice, so that the output
    has at most MAX_UPSCALE_PIXELS pixels. Raises ValueError when even the input is larger."""
    factor = min(float(scale), math.sqrt(MAX_UPSCALE_PIXELS / (width * height)))
    if factor < 1:
        raise ValueError(
            f"the image is {width}x{height} ({width * height:,} pixels); an upscale's output"
            f" has at most {MAX_UPSCALE_PIXELS:,} pixels, so it must be smaller"
        )
    out_w, out_h = int(width * factor), int(height * factor)
    while out_w * out_h > MAX_UPSCALE_PIXELS:  # float rounding at the cap
        out_w, out_h = out_w - 1, out_h - 1
    return out_w, out_h


def upscale_tier(width: int, out_width: int) -> str:
    """The price tier of an upscale: "4x" when it enlarges more than twice, else "2x"."""
    return "4x" if out_width > 2 * width else "2x"
