"""`murano metadata FILE [--json]`: the generation metadata embedded in an image
(`embed_exif_metadata`), as AUTOMATIC1111 infotext or, with --json, one JSON object.
Exit status 0 when there is some, 1 when there is none (or, with --json, when it is not
murano's layout), 2 when FILE is not a readable image."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from PIL import UnidentifiedImageError

from murano.imaging.metadata import parse_infotext, read_infotext

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "metadata", help="show the generation metadata embedded in an image", description=__doc__
    )
    parser.add_argument("file", type=Path, metavar="FILE", help="a PNG, JPEG or WebP image")
    parser.add_argument("--json", action="store_true", help="print the fields as JSON")
    parser.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = read_infotext(path.read_bytes())
    except (OSError, ValueError) as exc:
        unidentified = isinstance(exc.__cause__ or exc, UnidentifiedImageError)
        reason = "not a PNG, JPEG or WebP image" if unidentified else str(exc)
        print(f"murano: cannot read {path}: {reason}", file=sys.stderr)
        return 2
    if text is None:
        print(f"{path}: no embedded metadata", file=sys.stderr)
        return 1
    if not args.json:
        print(text)
        return 0
    try:
        metadata = parse_infotext(text)
    except ValueError as exc:
        print(f"{path}: the embedded metadata is not murano's layout: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(dataclasses.asdict(metadata), ensure_ascii=False))
    return 0
