"""Per-image cost of murano's post-processing on 1024×1024 images, in one run:

* encoding each format at the settings murano ships (`murano.imaging.encode`) against
  Pillow's defaults (`image.save(buf, FORMAT)` with no options): milliseconds, file size,
  and the ratios between them;
* the invisible watermark (embed, and check), the safe-mode blur, the visible mark, and
  the metadata (building the infotext + EXIF block, encoding with it, reading it back).

Two images: a synthetic photo (sky, shapes, 1/f texture, grain) and uniform noise (what the
tiny test model produces, the worst case for every encoder). Medians of `--repeat` runs
after one warm-up. Writes benchmarks/results/encode.md.

    .venv/bin/python benchmarks/encode.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import RESULTS_DIR, Table, median, write_result

from murano.imaging._exif import user_comment_exif
from murano.imaging.blur import blur
from murano.imaging.encode import ENCODE_SETTINGS, FORMATS, ImageFormat, encode
from murano.imaging.metadata import ImageMetadata, read_metadata
from murano.imaging.samples import noise_image, synthetic_photo
from murano.imaging.watermark import apply_visible_mark, apply_watermark, has_watermark

SIZE = 1024
PIL_NAMES: dict[ImageFormat, str] = {"webp": "WEBP", "png": "PNG", "jpeg": "JPEG"}
METADATA = ImageMetadata(
    prompt="a lighthouse on a cliff at dusk, dramatic sky, volumetric light, 35mm photo",
    negative_prompt="blurry, low quality, watermark, text",
    model="venice-sd35",
    seed=123456789,
    steps=8,
    cfg_scale=7.5,
    width=SIZE,
    height=SIZE,
    style_preset="Analog Film",
)


def timed(step: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of `step` over `repeat` runs, after one warm-up run."""
    step()
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        step()
        samples.append((time.perf_counter() - began) * 1000)
    return median(samples)


def pillow_default(image: Image.Image, fmt: ImageFormat) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, PIL_NAMES[fmt])
    return buffer.getvalue()


def encode_table(images: dict[str, Image.Image], repeat: int) -> Table:
    rows = []
    for name, image in images.items():
        for fmt in FORMATS:
            ours_ms = timed(partial(encode, image, fmt), repeat)
            base_ms = timed(partial(pillow_default, image, fmt), repeat)
            ours_kib = len(encode(image, fmt)) / 1024
            base_kib = len(pillow_default(image, fmt)) / 1024
            rows.append(
                [
                    name,
                    fmt,
                    f"{ours_ms:.1f}",
                    f"{ours_kib:.0f}",
                    f"{base_ms:.1f}",
                    f"{base_kib:.0f}",
                    f"{ours_ms / base_ms:.2f}",
                    f"{ours_kib / base_kib:.2f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    headers = ["image", "format", "murano ms", "murano KiB", "Pillow default ms"]
    headers += ["Pillow default KiB", "time × default", "size × default"]
    return Table(headers, rows)


def metadata_block() -> bytes:
    return user_comment_exif(METADATA.to_infotext())


def marked_webp_bytes(image: Image.Image) -> bytes:
    return encode(apply_watermark(image), "webp")


def step_table(images: dict[str, Image.Image], repeat: int) -> Table:
    rows = []
    for name, image in images.items():
        marked = apply_watermark(image)
        marked_webp = encode(marked, "webp")
        with_meta = encode(image, "webp", metadata=METADATA)
        plain_webp_ms = timed(partial(encode, image, "webp"), repeat)
        steps: list[tuple[str, Callable[[], object]]] = [
            ("watermark: embed", partial(apply_watermark, image)),
            ("watermark: check (decode WebP + read)", partial(has_watermark, marked_webp)),
            ("safe-mode blur", partial(blur, image)),
            ("visible mark", partial(apply_visible_mark, image, "murano")),
            ("metadata: infotext + EXIF block", metadata_block),
            ("metadata: encode WebP with it", partial(encode, image, "webp", metadata=METADATA)),
            ("metadata: read back", partial(read_metadata, with_meta)),
            ("watermark + encode WebP (the usual path)", partial(marked_webp_bytes, image)),
        ]
        for label, step in steps:
            ms = timed(step, repeat)
            rows.append([name, label, f"{ms:.3f}", f"{ms / plain_webp_ms:.3f}"])
            print(" | ".join(rows[-1]), flush=True)
    return Table(["image", "step", "ms per image", "× encoding WebP"], rows)


def settings_text() -> str:
    lines = [
        f"- {fmt}: " + ", ".join(f"{key}={value!r}" for key, value in options.items())
        for fmt, options in ENCODE_SETTINGS.items()
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per step (default 7)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args()
    images = {
        "photo": synthetic_photo(SIZE, SIZE, seed=1),
        "noise": noise_image(SIZE, SIZE, seed=1),
    }
    print("encoding, murano vs Pillow defaults", flush=True)
    encoding = encode_table(images, args.repeat)
    print("\nother post-processing steps", flush=True)
    steps = step_table(images, args.repeat)
    body = f"""
{SIZE}×{SIZE} images, median of {args.repeat} runs after a warm-up, one thread.
"× default" < 1 means murano is faster / smaller than Pillow's defaults.

Settings murano ships:

{settings_text()}

## Encoding

{encoding.markdown()}

## Other post-processing steps

"× encoding WebP" compares each step with encoding the same image as WebP at murano's
settings.

{steps.markdown()}
"""
    path = write_result(args.out, "encode", "Post-processing cost per 1024² image", body)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
