"""`murano usage`: the settled requests, newest first: key, model, images, what was
charged (nothing unless the images were delivered) and the outcome."""

from __future__ import annotations

import argparse
import json

from murano.accounts._money import format_usd
from murano.accounts.records import UsageRecord
from murano.accounts.sql import SqlStore
from murano.cli.keys import add_store_options, print_table, run_with_store

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("usage", help="show settled requests", description=__doc__)
    parser.add_argument("--key", metavar="ID_OR_PREFIX", help="only this key's requests")
    parser.add_argument("--limit", type=_limit, default=50, help="how many (default 50)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_store_options(parser)
    parser.set_defaults(func=lambda args: run_with_store(args, _usage))


async def _usage(store: SqlStore, args: argparse.Namespace) -> int:
    key_id = None if args.key is None else (await store.get_key(args.key)).id
    records = await store.list_usage(key_id=key_id, limit=args.limit)
    if args.json:
        print(json.dumps([record.to_dict() for record in records]))
        return 0
    header = ("TIME", "KEY", "MODEL", "IMAGES", "CHARGED", "OUTCOME", "TOTAL MS")
    print_table(header, [_row(record) for record in records])
    return 0


def _row(record: UsageRecord) -> list[str]:
    total = record.timings_ms.get("total")
    return [
        record.created_at.strftime("%Y-%m-%d %H:%M:%SZ"),
        record.key_prefix,
        record.model,
        str(record.images),
        format_usd(record.charged_usd),
        record.outcome if record.reason is None else f"{record.outcome} ({record.reason})",
        "" if total is None else f"{total:.0f}",
    ]


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 10000")
    return int(text)
