"""Generation metadata (`embed_exif_metadata`) in AUTOMATIC1111's "infotext" layout, the one
that A1111, Forge, ComfyUI importers, Civitai and most image browsers already read:

    a lighthouse at dusk
    Negative prompt: blurry
    Steps: 8, CFG scale: 7.5, Seed: 123, Size: 1024x1024, Model: flux-dev, Version: murano 0.1.0

As in A1111, the negative-prompt line is left out when there is none, a value holding a
comma, colon or newline is written as a JSON string, and the text is stored in a PNG
`parameters` text chunk (tEXt, or iTXt when it is not Latin-1) or, in JPEG and WebP, in the
EXIF UserComment with the "UNICODE" character code. `murano.imaging.encode.encode` writes
it; `read_metadata` reads it back from any of the three formats.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Final

from PIL import Image, UnidentifiedImageError

from murano import __version__
from murano.imaging._exif import read_user_comment

__all__ = [
    "INFOTEXT_KEY",
    "ImageMetadata",
    "parse_infotext",
    "read_infotext",
    "read_metadata",
]

INFOTEXT_KEY: Final = "parameters"  # A1111's PNG text-chunk keyword

_NEGATIVE: Final = "Negative prompt:"
_GENERATOR: Final = "murano "
# A1111's own pattern for "Key: value" pairs, values optionally JSON-quoted.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")


@dataclass(frozen=True, slots=True)
class ImageMetadata:
    """What made one image. `version` is the murano release (written "murano <version>");
    an infotext from another tool keeps its own Version value. An empty negative prompt is
    written like a missing one and reads back as None."""

    prompt: str
    negative_prompt: str | None
    model: str
    seed: int
    steps: int
    cfg_scale: float
    width: int
    height: int
    style_preset: str | None = None
    version: str = __version__

    def to_infotext(self) -> str:
        params: list[tuple[str, object]] = [
            ("Steps", self.steps),
            ("CFG scale", self.cfg_scale),
            ("Seed", self.seed),
            ("Size", f"{self.width}x{self.height}"),
            ("Model", self.model),
            ("Style preset", self.style_preset),
            ("Version", _GENERATOR + self.version),
        ]
        line = ", ".join(
            f"{key}: {_quote(str(value))}" for key, value in params if value is not None
        )
        negative = f"\n{_NEGATIVE} {self.negative_prompt}" if self.negative_prompt else ""
        return f"{self.prompt}{negative}\n{line}"


def parse_infotext(text: str) -> ImageMetadata:
    """The metadata in an infotext. Steps, CFG scale, Seed, Size and Model are required;
    a ValueError names the first one missing or malformed. As in A1111, a prompt line that
    starts with "Negative prompt:" begins the negative prompt."""
    *lines, last = text.rstrip("\n").split("\n")
    params = dict(_PARAM.findall(last))
    if len(params) < 3:
        raise ValueError("infotext has no parameter line (Steps: ..., Seed: ..., ...)")
    prompt_lines: list[str] = []
    negative_lines: list[str] | None = None
    for line in lines:
        if negative_lines is None and line.startswith(_NEGATIVE):
            # A1111 writes one space after the colon; anything more belongs to the prompt.
            negative_lines = [line[len(_NEGATIVE) :].removeprefix(" ")]
        elif negative_lines is not None:
            negative_lines.append(line)
        else:
            prompt_lines.append(line)
    values = {key.strip(): _unquote(value.strip()) for key, value in params.items()}
    width, height = _size(_required(values, "Size"))
    version = values.get("Version", "")
    return ImageMetadata(
        prompt="\n".join(prompt_lines),
        negative_prompt="\n".join(negative_lines) if negative_lines else None,
        model=_required(values, "Model"),
        seed=_int(values, "Seed"),
        steps=_int(values, "Steps"),
        cfg_scale=_float(values, "CFG scale"),
        width=width,
        height=height,
        style_preset=values.get("Style preset"),
        version=version.removeprefix(_GENERATOR),
    )


def read_infotext(data: bytes) -> str | None:
    """The infotext embedded in encoded image bytes (PNG text chunk or EXIF UserComment),
    or None when there is none. Raises ValueError when `data` is not an image Pillow reads."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            text = image.info.get(INFOTEXT_KEY)
            if isinstance(text, str) and text:
                return text
            return read_user_comment(image)
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"not a readable image: {exc}") from exc


def read_metadata(data: bytes) -> ImageMetadata | None:
    """The metadata embedded in encoded image bytes, or None when there is no infotext.
    An infotext that is not murano's layout raises ValueError (see `parse_infotext`)."""
    text = read_infotext(data)
    return None if text is None else parse_infotext(text)


def _quote(value: str) -> str:
    if "," not in value and "\n" not in value and ":" not in value and '"' not in value[:1]:
        return value
    return json.dumps(value, ensure_ascii=False)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            result = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(result, str):
            return result
    return value


def _required(values: dict[str, str], key: str) -> str:
    value = values.get(key)
    if value is None or value == "":
        raise ValueError(f"infotext has no {key!r} parameter")
    return value


def _int(values: dict[str, str], key: str) -> int:
    raw = _required(values, key)
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"infotext parameter {key!r} is not an integer: {raw!r}") from None


def _float(values: dict[str, str], key: str) -> float:
    raw = _required(values, key)
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"infotext parameter {key!r} is not a number: {raw!r}") from None


def _size(raw: str) -> tuple[int, int]:
    match = _SIZE.match(raw)
    if match is None:
        raise ValueError(f"infotext parameter 'Size' is not WIDTHxHEIGHT: {raw!r}")
    return int(match.group(1)), int(match.group(2))
