"""`murano models`: build tiny random-weight models, offline.

`murano models tiny --family NAME --out DIR` writes a tiny random-weight diffusers
pipeline of a model family (the architecture of the real one, a few channels wide), which
`DiffusionPipeline.from_pretrained(DIR)` loads with no hub access: for tests, demos and
trying a family's serving path without its weights. The families `swin2sr` and `spandrel`
are upscalers (a transformers Swin2SR folder; a Real-ESRGAN Compact `model.safetensors`) and
`onnx` a background remover (`model.onnx` and its `preprocessor_config.json`), for entries of
`type = "upscale"` and `type = "background-remove"`. `murano models tiny-lora` writes a
random LoRA for such a pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from murano.engine.tiny import EDIT_FAMILIES, FAMILIES, POSTOP_FAMILIES

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "models", help="build tiny random-weight models", description=__doc__
    )
    actions = parser.add_subparsers(dest="models_command", required=True, metavar="COMMAND")

    tiny = actions.add_parser(
        "tiny", help="build a tiny random-weight pipeline of a family", description=__doc__
    )
    _add_family(tiny, (*FAMILIES, *EDIT_FAMILIES, *POSTOP_FAMILIES))
    tiny.add_argument("--out", type=Path, required=True, metavar="DIR", help="an empty folder")
    _add_seed(tiny)
    tiny.set_defaults(func=_tiny)

    lora = actions.add_parser(
        "tiny-lora", help="build a random LoRA for a tiny pipeline", description=__doc__
    )
    _add_family(lora)
    lora.add_argument(
        "--model", type=Path, required=True, metavar="DIR", help="a tiny pipeline of FAMILY"
    )
    lora.add_argument("--out", type=Path, required=True, metavar="DIR", help="an empty folder")
    _add_seed(lora)
    lora.add_argument("--rank", type=_positive_int, default=4, help="LoRA rank (default: 4)")
    lora.set_defaults(func=_tiny_lora)


def _add_family(parser: argparse.ArgumentParser, families: tuple[str, ...] = FAMILIES) -> None:
    parser.add_argument(
        "--family",
        required=True,
        choices=families,
        metavar="NAME",
        help=f"model family: {', '.join(families)}",
    )


def _add_seed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seed", type=int, default=0, help="weights seed; the same seed gives the same model"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _tiny(args: argparse.Namespace) -> int:
    from murano.engine.tiny import build_tiny

    if not _is_empty_or_missing(args.out):
        return 1
    out = build_tiny(args.family, args.out, seed=args.seed)
    kind = "model" if args.family in POSTOP_FAMILIES else "pipeline"
    print(f"tiny {args.family} {kind} written to {out}")
    return 0


def _tiny_lora(args: argparse.Namespace) -> int:
    from murano.engine.tiny.lora import build_tiny_lora

    if not _is_empty_or_missing(args.out):
        return 1
    try:
        out = build_tiny_lora(args.family, args.model, args.out, seed=args.seed, rank=args.rank)
    except (FileNotFoundError, ValueError) as exc:  # --model is not a FAMILY pipeline
        print(f"murano: {exc}", file=sys.stderr)
        return 2
    print(f"tiny {args.family} LoRA written to {out}")
    return 0


def _is_empty_or_missing(out: Path) -> bool:
    # Writing over another model's files would leave a mix of the two.
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"murano: {out} exists and is not an empty folder", file=sys.stderr)
        return False
    return True
