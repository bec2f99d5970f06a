"""What happens to each generated image between the device and the response, in order:
safety blur (when flagged), watermark, metadata, encoding, and base64 for JSON responses.
Runs on the post-processing thread pool; pure apart from the CPU time it takes."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from PIL.Image import Image

from murano.imaging.blur import blur
from murano.imaging.encode import ImageFormat, encode
from murano.imaging.metadata import ImageMetadata
from murano.imaging.watermark import apply_visible_mark, apply_watermark

__all__ = ["OutputOptions", "Rendered", "render"]


@dataclass(frozen=True, slots=True)
class OutputOptions:
    fmt: ImageFormat
    watermark: bool
    visible_mark: str | None = None
    # The first image's metadata; image i gets seed + i.
    metadata: ImageMetadata | None = None
    # Also give each image as base64 text (for JSON bodies), so the event loop need not.
    as_base64: bool = False


@dataclass(frozen=True, slots=True)
class Rendered:
    images: list[bytes]
    blurred: bool
    # `images` as base64 text, when the options asked for it.
    b64: list[str] | None = None

    def base64_images(self) -> list[str]:
        """The images as base64 text (computed here when post-processing did not)."""
        if self.b64 is not None:
            return self.b64
        return [base64.b64encode(image).decode() for image in self.images]


def render(
    images: Sequence[Image], flags: Sequence[bool] | None, options: OutputOptions
) -> Rendered:
    out: list[bytes] = []
    blurred = False
    for i, image in enumerate(images):
        flagged = bool(flags and flags[i])
        if flagged:
            image, blurred = blur(image), True
        elif options.watermark:
            # Like Venice, images classified as adult content are not watermarked.
            image = apply_watermark(image)
        if options.visible_mark and not flagged:
            image = apply_visible_mark(image, options.visible_mark)
        metadata = options.metadata
        if metadata is not None:
            metadata = dataclasses.replace(metadata, seed=metadata.seed + i)
        out.append(encode(image, options.fmt, metadata=metadata))
    b64 = [base64.b64encode(data).decode() for data in out] if options.as_base64 else None
    return Rendered(out, blurred, b64=b64)
