"""`KeyStore` on SQLAlchemy's asyncio engine: SQLite (aiosqlite) by default, PostgreSQL
(asyncpg) when a database URL is configured.

Overspending is impossible by construction: a reservation is one conditional
`UPDATE api_keys SET reserved = reserved + :amount WHERE id = :id AND
(balance IS NULL OR balance - reserved >= :amount)`. PostgreSQL re-checks the condition
on the latest row version after waiting for a concurrent writer's row lock; SQLite runs
one writer at a time (waiting up to `busy_timeout` for another process, and behind an
in-process lock so that a server's own writers queue instead of polling). Settling is
`UPDATE reservations SET state = ... WHERE id = :id AND state = 'pending'`, so only the
first settle of a reservation moves any money.

Reservations carry the server instance that made them (`instances`, with a heartbeat).
`reclaim` releases the pending reservations of instances that are gone into state
`reclaimed`, with a `released` usage record saying why; a delivery that was decided before
the reclaim and reaches the database after it (from a journal, see `outbox`) still
commits: `reclaimed` → `committed`, charged once.

Every call runs under `Dependencies.guard("database")`: an unreachable database is
`DependencyUnavailable`, never a raw driver error.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, nullcontext
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

from sqlalchemy import ColumnElement, Row, Table, event, func, insert, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from murano.accounts import migrate
from murano.accounts._keygen import generate_key, hash_key, key_prefix, verify
from murano.accounts._money import from_micros, to_micros
from murano.accounts._tables import (
    api_keys,
    instances,
    reservations,
    usage_records,
    x402_payments,
)
from murano.accounts._wallets import WalletAccount, check_payment
from murano.accounts.base import Outcome
from murano.accounts.dependencies import Dependencies
from murano.accounts.records import (
    AmbiguousKey,
    ApiKey,
    CreatedKey,
    KeyNotFound,
    Reservation,
    UsageRecord,
)
from murano.accounts.store import check_new_key, check_top_up, utcnow

__all__ = ["SqlStore", "normalize_url", "sqlite_url"]

_ASYNC_DRIVERS = (
    ("postgresql://", "postgresql+asyncpg://"),
    ("postgres://", "postgresql+asyncpg://"),
    ("sqlite://", "sqlite+aiosqlite://"),
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_SQLITE_BUSY_TIMEOUT_MS = 10_000
# Every column but the hash, which leaves the database only to be compared.
_KEY_COLUMNS = [c for c in api_keys.c if c.name != "key_hash"]
_IS_KEY = api_keys.c.wallet_address.is_(None)


def normalize_url(url: str) -> str:
    """The asyncio driver for plain `postgresql://` / `postgres://` / `sqlite://` URLs;
    URLs naming a driver are kept as given."""
    for plain, async_url in _ASYNC_DRIVERS:
        if url.startswith(plain):
            return async_url + url[len(plain) :]
    return url


def sqlite_url(data_dir: Path) -> str:
    """The default database: `<data_dir>/murano.db`."""
    return f"sqlite+aiosqlite:///{data_dir.expanduser() / 'murano.db'}"


class SqlStore:
    """Keys and the ledger in a SQL database. `schema` (PostgreSQL only) puts murano's
    tables in that schema instead of the user's default one."""

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        dependencies: Dependencies | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.url: URL = make_url(normalize_url(url))
        self._sqlite = self.url.get_backend_name() == "sqlite"
        self.dependencies = dependencies or Dependencies()
        self.dependencies.watch("database")
        self._timeout_s = timeout_s
        self._engine = self._create_engine(schema)
        # SQLite has a single writer anyway; queueing here beats polling its file lock.
        self._write_lock = asyncio.Lock() if self._sqlite else None

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    async def start(self) -> None:
        if self._sqlite and self.url.database not in (None, "", ":memory:"):
            Path(self.url.database).parent.mkdir(parents=True, exist_ok=True)
        async with self.dependencies.guard("database"):
            await migrate.upgrade(self._engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def create_key(
        self,
        *,
        name: str,
        is_admin: bool = False,
        balance_usd: Decimal | None = None,
        rpm: int | None = None,
        expires_at: datetime | None = None,
        secret: str | None = None,
    ) -> CreatedKey:
        now = utcnow()
        check_new_key(name, balance_usd, rpm, expires_at, now)
        secret = secret or generate_key()
        values = {
            "id": str(uuid4()),
            "name": name,
            "prefix": key_prefix(secret),
            "key_hash": hash_key(secret),
            "is_admin": is_admin,
            "balance_micros": None if balance_usd is None else to_micros(balance_usd),
            "reserved_micros": 0,
            "rpm": rpm,
            "expires_at": expires_at,
            "created_at": now,
        }
        try:
            async with self._writing() as conn:
                row = (
                    await conn.execute(insert(api_keys).values(values).returning(*_KEY_COLUMNS))
                ).one()
        except IntegrityError:
            raise ValueError("a key with this secret already exists") from None
        return CreatedKey(_to_key(row), secret)

    async def find_by_secret(self, secret: str) -> ApiKey | None:
        if "\x00" in secret:
            return None  # no stored key has one, and PostgreSQL refuses NUL in text
        query = select(api_keys).where(api_keys.c.prefix == key_prefix(secret))
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            if verify(secret, row.key_hash):
                return _to_key(row)
        return None

    async def get_key(self, ref: str) -> ApiKey:
        async with self._reading() as conn:
            return await _resolve(conn, ref)

    async def list_keys(self) -> list[ApiKey]:
        query = select(*_KEY_COLUMNS).where(_IS_KEY).order_by(api_keys.c.created_at, api_keys.c.id)
        async with self._reading() as conn:
            return [_to_key(row) for row in await conn.execute(query)]

    async def count_keys(self) -> int:
        async with self._reading() as conn:
            count = await conn.scalar(select(func.count()).select_from(api_keys).where(_IS_KEY))
        return int(count or 0)

    async def revoke_key(self, ref: str) -> ApiKey:
        async with self._writing() as conn:
            key = await _resolve(conn, ref)
            query = (
                update(api_keys)
                .where(api_keys.c.id == key.id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
            await conn.execute(query)
            return await _resolve(conn, key.id)

    async def top_up(self, ref: str, usd: Decimal) -> ApiKey:
        micros = check_top_up(usd)
        async with self._writing() as conn:
            key = await _resolve(conn, ref)
            if key.revoked_at is not None:
                raise ValueError(f"key {key.prefix} is revoked")
            if key.balance_usd is None:
                raise ValueError(f"key {key.prefix} has an unlimited balance")
            query = (
                update(api_keys)
                .where(api_keys.c.id == key.id)
                .values(balance_micros=api_keys.c.balance_micros + micros)
                .returning(*_KEY_COLUMNS)
            )
            return _to_key((await conn.execute(query)).one())

    async def reserve(
        self,
        key_id: str,
        model: str,
        images: int,
        amount_usd: Decimal,
        *,
        reservation_id: str | None = None,
        instance_id: str | None = None,
    ) -> Reservation:
        amount = to_micros(amount_usd, round_up=True)
        now = utcnow()
        balance, reserved = api_keys.c.balance_micros, api_keys.c.reserved_micros
        hold = (
            update(api_keys)
            .where(
                api_keys.c.id == key_id,
                api_keys.c.revoked_at.is_(None),
                or_(balance.is_(None), balance - reserved >= amount),
            )
            .values(reserved_micros=reserved + amount, last_used_at=now)
            .returning(balance, reserved)
        )
        async with self._writing() as conn:
            held = (await conn.execute(hold)).first()
            if held is None:
                return await _refusal(conn, key_id)
            reservation_id = reservation_id or str(uuid4())
            row = {
                "id": reservation_id,
                "instance_id": instance_id,
                "key_id": key_id,
                "amount_micros": amount,
                "model": model,
                "images": images,
                "state": "pending",
                "created_at": now,
            }
            await conn.execute(insert(reservations).values(row))
        before = (
            None
            if held.balance_micros is None
            else held.balance_micros - held.reserved_micros + amount
        )
        return Reservation(reservation_id, None if before is None else from_micros(before))

    async def settle(
        self, reservation_id: str, outcome: Outcome, timings_ms: Mapping[str, float] | None
    ) -> bool:
        commit = outcome is Outcome.DELIVERED
        now = utcnow()
        returning = (
            reservations.c.key_id,
            reservations.c.amount_micros,
            reservations.c.model,
            reservations.c.images,
        )
        close = (
            update(reservations)
            .where(reservations.c.id == reservation_id, reservations.c.state == "pending")
            .values(state="committed" if commit else "released", settled_at=now)
            .returning(*returning)
        )
        record: dict[str, Any] = {
            "reservation_id": reservation_id,
            "outcome": outcome.value,
            "timings_ms": dict(timings_ms) if timings_ms else None,
            "created_at": now,
        }
        async with self._writing() as conn:
            held = (await conn.execute(close)).first()
            if held is None:
                return commit and await _commit_reclaimed(conn, reservation_id, record, returning)
            amount = held.amount_micros
            values: dict[str, Any] = {"reserved_micros": api_keys.c.reserved_micros - amount}
            if commit:
                # NULL (unlimited) stays NULL: NULL - x is NULL.
                values["balance_micros"] = api_keys.c.balance_micros - amount
            await conn.execute(update(api_keys).where(api_keys.c.id == held.key_id).values(values))
            record |= {
                "key_id": held.key_id,
                "model": held.model,
                "images": held.images,
                "charged_micros": amount if commit else 0,
            }
            await conn.execute(insert(usage_records).values(record))
        return True

    async def release_pending(
        self, *, older_than: datetime | None = None, key_id: str | None = None
    ) -> int:
        conditions = []
        if older_than is not None:
            conditions.append(reservations.c.created_at < older_than)
        if key_id is not None:
            conditions.append(reservations.c.key_id == key_id)
        return await self._reclaim(conditions, "released by an administrator")

    async def reclaim(
        self,
        *,
        instance_ids: Sequence[str] = (),
        lease_cutoff: datetime | None = None,
        exclude: str | None = None,
        legacy_before: datetime | None = None,
        reason: str,
    ) -> int:
        """Release the pending reservations of `instance_ids`, of instances whose heartbeat
        is older than `lease_cutoff` or that stopped (but never those of `exclude`), and
        those without an instance made before `legacy_before`; the number released. Each
        gets a `released` usage record with `reason`."""
        who: list[ColumnElement[bool]] = []
        if instance_ids:
            who.append(reservations.c.instance_id.in_(list(instance_ids)))
        if lease_cutoff is not None:
            gone = select(instances.c.id).where(
                or_(instances.c.heartbeat_at < lease_cutoff, instances.c.stopped_at.is_not(None))
            )
            if exclude is not None:
                gone = gone.where(instances.c.id != exclude)
            who.append(reservations.c.instance_id.in_(gone))
        if legacy_before is not None:
            who.append(
                reservations.c.instance_id.is_(None) & (reservations.c.created_at < legacy_before)
            )
        if not who:
            return 0
        return await self._reclaim([or_(*who)], reason)

    async def _reclaim(self, conditions: list[Any], reason: str) -> int:
        now = utcnow()
        release = (
            update(reservations)
            .where(reservations.c.state == "pending", *conditions)
            .values(state="reclaimed", settled_at=now)
            .returning(
                reservations.c.id,
                reservations.c.key_id,
                reservations.c.amount_micros,
                reservations.c.model,
                reservations.c.images,
            )
        )
        async with self._writing() as conn:
            rows = (await conn.execute(release)).all()
            for held_by, amount in sorted(_totals(rows).items()):
                unhold = (
                    update(api_keys)
                    .where(api_keys.c.id == held_by)
                    .values(reserved_micros=api_keys.c.reserved_micros - amount)
                )
                await conn.execute(unhold)
            if rows:
                records = [
                    {
                        "key_id": row.key_id,
                        "reservation_id": row.id,
                        "model": row.model,
                        "images": row.images,
                        "charged_micros": 0,
                        "outcome": "released",
                        "reason": reason[:200],
                        "timings_ms": None,
                        "created_at": now,
                    }
                    for row in rows
                ]
                await conn.execute(insert(usage_records), records)
        return len(rows)

    async def register_instance(self, instance_id: str) -> None:
        now = utcnow()
        row = {
            "id": instance_id,
            "host": socket.gethostname()[:255],
            "pid": os.getpid(),
            "started_at": now,
            "heartbeat_at": now,
        }
        async with self._writing() as conn:
            await conn.execute(insert(instances).values(row))

    async def heartbeat(self, instance_id: str) -> None:
        beat = update(instances).where(instances.c.id == instance_id).values(heartbeat_at=utcnow())
        async with self._writing() as conn:
            await conn.execute(beat)

    async def stop_instance(self, instance_id: str) -> None:
        stop = (
            update(instances)
            .where(instances.c.id == instance_id, instances.c.stopped_at.is_(None))
            .values(stopped_at=utcnow())
        )
        async with self._writing() as conn:
            await conn.execute(stop)

    async def ping(self) -> None:
        """Raise DependencyUnavailable unless the database answers."""
        async with self._reading() as conn:
            await conn.execute(text("SELECT 1"))

    async def list_usage(self, *, key_id: str | None = None, limit: int = 100) -> list[UsageRecord]:
        query = (
            select(usage_records, api_keys.c.name, api_keys.c.prefix)
            .join(api_keys, api_keys.c.id == usage_records.c.key_id)
            .order_by(usage_records.c.id.desc())
            .limit(limit)
        )
        if key_id is not None:
            query = query.where(usage_records.c.key_id == key_id)
        async with self._reading() as conn:
            return [_to_usage(row) for row in await conn.execute(query)]

    def wallet_id(self, address: str) -> str:
        return WalletAccount.of(address).id

    async def find_wallet(self, address: str) -> ApiKey | None:
        query = select(*_KEY_COLUMNS).where(api_keys.c.id == WalletAccount.of(address).id)
        async with self._reading() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_key(row)

    async def credit_wallet(
        self, address: str, usd: Decimal, *, payment_id: str, tx: str | None = None
    ) -> Decimal:
        wallet = WalletAccount.of(address)
        micros = check_top_up(usd)
        check_payment(payment_id, tx)
        now = utcnow()
        payment = {
            "payment_id": payment_id,
            "address": wallet.address,
            "micros": micros,
            "tx": tx,
            "created_at": now,
        }
        # A concurrent insert of the same payment waits for the first one's transaction
        # and then inserts nothing, so only one of them reaches the balance.
        record = (
            self._insert(x402_payments)
            .values(payment)
            .on_conflict_do_nothing(index_elements=[x402_payments.c.payment_id])
            .returning(x402_payments.c.payment_id)
        )
        add = self._insert(api_keys).values(wallet.row(micros, now))
        add = add.on_conflict_do_update(
            index_elements=[api_keys.c.id],
            set_={"balance_micros": api_keys.c.balance_micros + add.excluded.balance_micros},
        )
        balance = select(api_keys.c.balance_micros).where(api_keys.c.id == wallet.id)
        for attempt in range(3):
            try:
                async with self._writing() as conn:
                    if (await conn.execute(record)).first() is not None:
                        await conn.execute(add)
                    micros_after = await conn.scalar(balance)
                return from_micros(micros_after or 0)
            except IntegrityError:
                # Two first top-ups of a new wallet at once: PostgreSQL may report the other
                # unique index (key_hash) before the ON CONFLICT target; the whole
                # transaction rolled back, and a retry finds the row and adds to it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT that can say ON CONFLICT, in this database's dialect."""
        return sqlite.insert(table) if self._sqlite else postgresql.insert(table)

    def _create_engine(self, schema: str | None) -> AsyncEngine:
        options: dict[str, Any] = {}
        if schema is not None:
            if self.url.get_backend_name() != "postgresql":
                raise ValueError("a schema can only be given for a PostgreSQL database")
            if not _IDENTIFIER.fullmatch(schema):
                raise ValueError(f"schema must be a plain SQL identifier, got {schema!r}")
            options["connect_args"] = {"server_settings": {"search_path": schema}}
        if self._sqlite and self.url.database in (None, "", ":memory:"):
            # One shared connection, or every connection would see its own empty database.
            options["poolclass"] = StaticPool
        if not self._sqlite:
            # Bounded waits: an unreachable database is an outage to report, not a hang.
            args = options.setdefault("connect_args", {})
            args |= {"timeout": self._timeout_s, "command_timeout": self._timeout_s}
            options["pool_timeout"] = self._timeout_s
        engine = create_async_engine(self.url, pool_pre_ping=not self._sqlite, **options)
        if self._sqlite:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        async with (
            self.dependencies.guard("database"),
            self._write_lock or nullcontext(),
            self._engine.begin() as conn,
        ):
            yield conn

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.dependencies.guard("database"), self._engine.connect() as conn:
            yield conn


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (and a CLI run) go on while the server writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


async def _resolve(conn: AsyncConnection, ref: str) -> ApiKey:
    if "\x00" in ref:
        raise KeyNotFound(ref)  # PostgreSQL refuses NUL in text; no id or prefix has one
    query = select(*_KEY_COLUMNS).where(or_(api_keys.c.id == ref, api_keys.c.prefix == ref))
    rows = (await conn.execute(query)).all()
    exact = [row for row in rows if row.id == ref]
    if exact:
        return _to_key(exact[0])
    if len(rows) > 1:
        raise AmbiguousKey(ref)
    if not rows or not ref:
        raise KeyNotFound(ref)
    return _to_key(rows[0])


async def _refusal(conn: AsyncConnection, key_id: str) -> Reservation:
    """Why a reservation was refused: the key is gone (KeyNotFound) or its balance is
    short (a Reservation without id, carrying what it could spend)."""
    query = select(
        api_keys.c.balance_micros, api_keys.c.reserved_micros, api_keys.c.revoked_at
    ).where(api_keys.c.id == key_id)
    row = (await conn.execute(query)).first()
    if row is None or row.revoked_at is not None or row.balance_micros is None:
        raise KeyNotFound(key_id)
    return Reservation(None, from_micros(row.balance_micros - row.reserved_micros))


async def _commit_reclaimed(
    conn: AsyncConnection, reservation_id: str, record: dict[str, Any], returning: Any
) -> bool:
    """Charge a delivery whose reservation was reclaimed before its outcome arrived: its
    money was already released, so only the balance moves, and the reclaim's usage record
    becomes the delivery's."""
    late = (
        update(reservations)
        .where(reservations.c.id == reservation_id, reservations.c.state == "reclaimed")
        .values(state="committed", settled_at=record["created_at"])
        .returning(*returning)
    )
    held = (await conn.execute(late)).first()
    if held is None:
        return False
    charge = update(api_keys).where(api_keys.c.id == held.key_id)
    await conn.execute(charge.values(balance_micros=api_keys.c.balance_micros - held.amount_micros))
    fix = (
        update(usage_records)
        .where(usage_records.c.reservation_id == reservation_id)
        .values(
            outcome=record["outcome"],
            charged_micros=held.amount_micros,
            reason="delivered after its reservation was reclaimed",
            timings_ms=record["timings_ms"],
        )
    )
    await conn.execute(fix)
    return True


def _totals(rows: Sequence[Row[Any]]) -> dict[str, int]:
    totals: dict[str, int] = {}
    for row in rows:
        totals[row.key_id] = totals.get(row.key_id, 0) + row.amount_micros
    return totals


def _to_key(row: Row[Any]) -> ApiKey:
    balance = row.balance_micros
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        is_admin=bool(row.is_admin),
        balance_usd=None if balance is None else from_micros(balance),
        reserved_usd=from_micros(row.reserved_micros),
        rpm=row.rpm,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _to_usage(row: Row[Any]) -> UsageRecord:
    return UsageRecord(
        id=row.id,
        key_id=row.key_id,
        key_name=row.name,
        key_prefix=row.prefix,
        model=row.model,
        images=row.images,
        charged_usd=from_micros(row.charged_micros),
        outcome=row.outcome,
        created_at=row.created_at,
        timings_ms=dict(row.timings_ms or {}),
        reason=row.reason,
        reservation_id=row.reservation_id,
    )
