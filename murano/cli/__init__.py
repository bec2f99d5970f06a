"""The `murano` command. Each subcommand lives in its own module with
`register(subparsers) -> None`, which adds its parser and sets `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from murano import __version__

__all__ = ["build_parser", "main"]

# Modules under murano.cli, in the order `murano --help` lists them.
_COMMANDS = ("serve", "generate", "models", "keys", "usage", "watermark", "metadata")

_DESCRIPTION = """\
murano: a self-hosted image-generation server that speaks Venice's image API (and OpenAI's).
Start it with `murano serve`; open http://127.0.0.1:8000/ for the playground."""

_EPILOG = """\
examples:
  murano serve --no-auth                      serve the embedded tiny model, no keys
  murano generate "a lighthouse at dusk" -o lighthouse.webp
  murano keys create --name laptop            make an API key (printed once)
  murano COMMAND --help                       the options of one command

Every setting is also a MURANO_* environment variable (see the README)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="murano",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"murano {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
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
    try:
        result: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return result
