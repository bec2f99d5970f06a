"""`murano keys`: create, list, revoke and top up API keys.

Works on the database directly (the one the server uses: `--database-url`, else
`MURANO_DATABASE_URL`, else `<data dir>/murano.db`), so it needs neither a running server
nor an admin key, and can run while the server does. A new key is printed once; the
database keeps only its hash.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError

from murano.accounts._money import format_usd, parse_usd
from murano.accounts.records import AmbiguousKey, ApiKey, KeyNotFound
from murano.accounts.sql import SqlStore, sqlite_url
from murano.accounts.store import utcnow
from murano.errors import DependencyUnavailable
from murano.settings import Settings

__all__ = ["add_store_options", "open_store", "print_table", "register", "run_with_store"]

Action = Callable[[SqlStore, argparse.Namespace], Awaitable[int]]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "keys", help="create, list, revoke and top up API keys", description=__doc__
    )
    commands = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    create = commands.add_parser("create", help="create a key and print it (only this once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--balance-usd", type=_usd, help="prepaid balance in USD (default: unlimited)"
    )
    create.add_argument(
        "--rpm", type=_positive_int, help="requests per minute per model (default: the model's)"
    )
    create.add_argument("--admin", action="store_true", help="may use the admin API")
    create.add_argument(
        "--expires", type=parse_expiry, help="ISO date or time, UTC unless given: 2027-01-01"
    )
    _finish(create, _create, json_flag=True)

    listing = commands.add_parser("list", help="list every key, revoked ones included")
    _finish(listing, _list, json_flag=True)

    revoke = commands.add_parser("revoke", help="revoke a key: it stops working at once")
    revoke.add_argument("key", metavar="ID_OR_PREFIX")
    _finish(revoke, _revoke)

    top_up = commands.add_parser("top-up", help="add to a key's balance")
    top_up.add_argument("key", metavar="ID_OR_PREFIX")
    top_up.add_argument("--usd", type=_usd, required=True, help="amount to add")
    _finish(top_up, _top_up)


def add_store_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir", type=Path, help="where murano.db lives (default: MURANO_DATA_DIR)"
    )
    parser.add_argument(
        "--database-url", help="SQLAlchemy URL, e.g. postgresql://user@host/db (overrides it)"
    )


def open_store(args: argparse.Namespace) -> SqlStore:
    settings = Settings()
    url = args.database_url or settings.database_url
    return SqlStore(url or sqlite_url(args.data_dir or settings.data_dir))


def run_with_store(args: argparse.Namespace, action: Action) -> int:
    """Run `action` on a started store; lookup and value errors, and a database that cannot
    be opened, become one line on stderr and exit status 1."""
    try:
        return asyncio.run(_with_store(args, action))
    except (KeyNotFound, AmbiguousKey, ValueError) as exc:
        print(f"murano {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except DependencyUnavailable as exc:
        cause = exc.__cause__ or exc
        reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
        print(
            f"murano {args.command}: error: cannot open the {exc.dependency}: {reason}",
            file=sys.stderr,
        )
        return 1
    except (OSError, DBAPIError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"murano {args.command}: error: cannot open the database: {reason}", file=sys.stderr)
        return 1


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )


def parse_expiry(text: str) -> datetime:
    """An ISO date (its midnight, UTC) or date-time (UTC unless it names a zone)."""
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2027-01-01 or 2027-01-01T12:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _with_store(args: argparse.Namespace, action: Action) -> int:
    store = open_store(args)
    try:
        await store.start()
        return await action(store, args)
    finally:
        await store.close()


async def _create(store: SqlStore, args: argparse.Namespace) -> int:
    created = await store.create_key(
        name=args.name,
        is_admin=args.admin,
        balance_usd=args.balance_usd,
        rpm=args.rpm,
        expires_at=args.expires,
    )
    if args.json:
        print(json.dumps({"key": created.secret, **created.key.to_dict()}))
        return 0
    key = created.key
    print(
        f"Created {'admin ' if key.is_admin else ''}key {key.name!r}: id {key.id}, {_limits(key)}"
    )
    print("Store it now; it is not shown again:\n")
    print(created.secret)
    return 0


async def _list(store: SqlStore, args: argparse.Namespace) -> int:
    keys = await store.list_keys()
    if args.json:
        print(json.dumps([key.to_dict() for key in keys]))
        return 0
    now = utcnow()
    header = ("ID", "PREFIX", "NAME", "ADMIN", "BALANCE", "RESERVED", "RPM", "STATE", "EXPIRES")
    print_table(header, [_row(key, now) for key in keys])
    return 0


async def _revoke(store: SqlStore, args: argparse.Namespace) -> int:
    if (await store.get_key(args.key)).revoked_at is not None:
        raise ValueError(f"key {args.key} is already revoked")
    key = await store.revoke_key(args.key)
    print(f"Revoked key {key.prefix} ({key.name!r}, id {key.id}).")
    return 0


async def _top_up(store: SqlStore, args: argparse.Namespace) -> int:
    key = await store.top_up(args.key, args.usd)
    balance = format_usd(key.balance_usd or Decimal(0))
    added = format_usd(args.usd)
    print(f"Added {added} USD to key {key.prefix} ({key.name!r}): balance {balance} USD.")
    return 0


def _finish(
    parser: argparse.ArgumentParser,
    action: Action,
    *,
    json_flag: bool = False,
) -> None:
    add_store_options(parser)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")

    def run(args: argparse.Namespace) -> int:
        return run_with_store(args, action)

    parser.set_defaults(func=run)


def _row(key: ApiKey, now: datetime) -> list[str]:
    return [
        key.id,
        key.prefix,
        key.name,
        "yes" if key.is_admin else "no",
        "unlimited" if key.balance_usd is None else format_usd(key.balance_usd),
        format_usd(key.reserved_usd),
        "default" if key.rpm is None else str(key.rpm),
        key.state(now),
        "never" if key.expires_at is None else _when(key.expires_at),
    ]


def _limits(key: ApiKey) -> str:
    parts: list[Any] = [
        f"prefix {key.prefix}",
        "unlimited balance"
        if key.balance_usd is None
        else f"balance {format_usd(key.balance_usd)} USD",
        "default rate limits" if key.rpm is None else f"{key.rpm} requests/min per model",
    ]
    if key.expires_at is not None:
        parts.append(f"expires {_when(key.expires_at)}")
    return ", ".join(parts) + "."


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _usd(text: str) -> Decimal:
    # argparse words a ValueError as "invalid parse_usd value"; this keeps our message.
    try:
        return parse_usd(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value
