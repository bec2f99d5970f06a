"""`murano watermark check FILE`: whether an image carries murano's invisible watermark.
Exit status 0 when it does, 1 when it does not (images under 256 px on a side are never
marked), 2 when FILE is not a readable image. Survives WebP/JPEG re-encoding, not cropping
or resizing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from murano.imaging.watermark import MAX_BIT_ERRORS, MIN_SIDE, PAYLOAD, watermark_bit_errors

__all__ = ["register"]

_BITS = len(PAYLOAD) * 8


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "watermark", help="check images for murano's invisible watermark", description=__doc__
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="say whether FILE carries murano's mark", description=__doc__
    )
    check.add_argument("file", type=Path, metavar="FILE", help="a PNG, JPEG or WebP image")
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
    except UnidentifiedImageError:
        print(f"murano: cannot read {path}: not a PNG, JPEG or WebP image", file=sys.stderr)
        return 2
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        print(f"murano: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    errors = watermark_bit_errors(image)
    if errors is None:
        print(f"{path}: no murano watermark (under {MIN_SIDE} px on a side: never marked)")
        return 1
    matching = f"{_BITS - errors}/{_BITS} payload bits match"
    if errors <= MAX_BIT_ERRORS:
        print(f"{path}: murano watermark found ({matching})")
        return 0
    print(f"{path}: no murano watermark ({matching}; {_BITS - MAX_BIT_ERRORS} needed)")
    return 1
