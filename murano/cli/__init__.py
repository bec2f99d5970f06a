"""The `murano` command. Each subcommand lives in its own module with
`register(subparsers) -> None`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

__all__ = ["build_parser", "main"]

# Modules under murano.cli, in the order `murano --help` lists them.
_COMMANDS = ("serve", "models", "keys", "usage", "watermark", "metadata")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="murano", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"murano.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"murano.cli.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
