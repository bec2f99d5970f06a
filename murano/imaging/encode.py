"""Encoding generated images into the bytes murano sends: WebP, PNG or JPEG.

The settings were chosen with `benchmarks/encode.py` on 1024² images (see
`benchmarks/results/encode.md`):

* WebP: quality 90, method 2. On photo-like images method 2 makes files as small as
  Pillow's default method 4 at the same quality in about half the time (method 1 is 10%
  faster and 7% larger); quality 90 keeps the fine texture that Pillow's default 80 smears,
  at about twice the bytes. (On pure noise, method 2 happens to make files twice as large
  as method 4; generated images are not noise.)
* PNG: zlib level 3, the strongest of zlib's fast levels (1–3 share the fast deflate
  strategy): about 2.5x faster than Pillow's default level 6 for files about 10% larger.
* JPEG: quality 92 with 4:2:0 chroma subsampling; Huffman optimisation is left off (2% smaller
  files for twice the time).

Without `metadata` the output carries no metadata at all — no EXIF, XMP, ICC profile or PNG
text chunk — whatever the input image's `info` holds, so that nothing (a prompt above all)
leaks from an image opened elsewhere. With it, the prompt and settings are embedded the way
AUTOMATIC1111 does (see `murano.imaging.metadata`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

from PIL import Image, PngImagePlugin

from murano.imaging._exif import user_comment_exif
from murano.imaging.metadata import INFOTEXT_KEY, ImageMetadata

__all__ = ["ENCODE_SETTINGS", "FORMATS", "MIME_TYPES", "ImageFormat", "encode", "sniff_format"]

ImageFormat = Literal["webp", "png", "jpeg"]

FORMATS: Final[tuple[ImageFormat, ...]] = get_args(ImageFormat)

MIME_TYPES: Final[Mapping[ImageFormat, str]] = MappingProxyType(
    {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg"}
)

# Pillow save() options murano ships; the module docstring says why.
ENCODE_SETTINGS: Final[Mapping[ImageFormat, Mapping[str, Any]]] = MappingProxyType(
    {
        "webp": MappingProxyType({"quality": 90, "method": 2}),
        "png": MappingProxyType({"compress_level": 3}),
        "jpeg": MappingProxyType({"quality": 92, "subsampling": "4:2:0"}),
    }
)

_PIL_NAMES: Final[Mapping[ImageFormat, str]] = {"webp": "WEBP", "png": "PNG", "jpeg": "JPEG"}
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
# A JPEG APP1 segment holds at most 65,533 bytes, "Exif\0\0" included.
_MAX_JPEG_EXIF = 65_533


def encode(image: Image.Image, fmt: ImageFormat, *, metadata: ImageMetadata | None = None) -> bytes:
    """`image` encoded as `fmt` at its own size with `ENCODE_SETTINGS`; `metadata`, when
    given, is embedded (PNG `parameters` text chunk, or EXIF UserComment for WebP/JPEG)."""
    if fmt not in _PIL_NAMES:
        raise ValueError(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")
    options = dict(ENCODE_SETTINGS[fmt])
    if metadata is not None:
        options.update(_metadata_options(fmt, metadata.to_infotext()))
    buffer = io.BytesIO()
    _bare(image, fmt).save(buffer, _PIL_NAMES[fmt], **options)
    return buffer.getvalue()


def sniff_format(data: bytes) -> ImageFormat | None:
    """The format of encoded image bytes, from their magic number; None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _metadata_options(fmt: ImageFormat, infotext: str) -> dict[str, Any]:
    if fmt == "png":
        chunks = PngImagePlugin.PngInfo()
        # add_text writes tEXt when the text is Latin-1 and iTXt (UTF-8) otherwise.
        chunks.add_text(INFOTEXT_KEY, infotext)
        return {"pnginfo": chunks}
    exif = user_comment_exif(infotext)
    if fmt == "jpeg" and len(exif) > _MAX_JPEG_EXIF:
        raise ValueError(
            f"metadata needs {len(exif)} bytes of EXIF but JPEG holds at most "
            f"{_MAX_JPEG_EXIF}; shorten the prompts or use png or webp"
        )
    return {"exif": exif}


def _bare(image: Image.Image, fmt: ImageFormat) -> Image.Image:
    """`image` in a mode `fmt` can store, with an empty `info`: Pillow copies ICC profiles,
    XMP and the like from `info` into the file, and murano must not pass them on."""
    if "transparency" in image.info:
        # Palette or single-colour transparency lives in `info`; keep it as real alpha.
        image = image.convert("RGBA")
    target = _target_mode(image.mode, fmt)
    converted = image.convert(target) if target != image.mode else image
    if converted.info:
        if converted is image:
            converted = image.copy()
        converted.info = {}
    return converted


def _target_mode(mode: str, fmt: ImageFormat) -> str:
    alpha = "A" in mode or mode == "PA"
    if fmt == "jpeg":
        return mode if mode in ("RGB", "L") else "RGB"
    if fmt == "webp":
        return "RGBA" if alpha else "RGB"
    return mode if mode in _PNG_MODES else ("RGBA" if alpha else "RGB")
