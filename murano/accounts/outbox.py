"""Where a server writes down each reservation's outcome before it tells the database.

A settlement (reservation id, outcome, timings) is appended to this server instance's
journal and flushed to disk (`fsync`) first; only then is the database asked to commit or
release. When the database cannot be reached the entry stays in the journal and the server
retries it in the background until the database takes it; when the server is killed the
next server to start on the same data directory finds the journal and settles what it
holds. Settling is idempotent by reservation id, so replaying an entry twice moves money
once.

Layout: `<dir>/<instance id>.jsonl`, one JSON object a line: `{"id", "outcome", "timings"}`
for a settlement, `{"done": id}` once the database has it. A live server holds an
exclusive `flock` on its own journal for its whole life; the kernel drops it when the
process dies, however it dies, so a journal that can be locked belongs to a dead instance
(`Outbox.orphans`). A cleanly closed server with nothing left to settle deletes its journal.

`MemoryOutbox` keeps entries in memory only (retried, but not across a crash): for tests of
other layers and for servers without a data directory.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

__all__ = ["FileOutbox", "MemoryOutbox", "Orphan", "Outbox", "Settlement"]

log = logging.getLogger("murano.accounts")

_SUFFIX = ".jsonl"
# Rewrite a journal once it is this long and everything in it is done.
_COMPACT_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Settlement:
    reservation_id: str
    outcome: str
    timings_ms: dict[str, float] | None = None

    def line(self) -> dict[str, Any]:
        return {"id": self.reservation_id, "outcome": self.outcome, "timings": self.timings_ms}


class Outbox(Protocol):
    def pending(self) -> list[Settlement]:
        """Entries recorded and not yet done, oldest first."""

    async def record(self, entry: Settlement) -> None:
        """Keep `entry` durably before returning."""

    async def done(self, reservation_id: str) -> None: ...

    def close(self) -> None: ...


@dataclass
class MemoryOutbox:
    entries: dict[str, Settlement] = field(default_factory=dict)

    def pending(self) -> list[Settlement]:
        return list(self.entries.values())

    async def record(self, entry: Settlement) -> None:
        self.entries[entry.reservation_id] = entry

    async def done(self, reservation_id: str) -> None:
        self.entries.pop(reservation_id, None)

    def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class Orphan:
    """The journal of a dead instance, locked by us until `discard`."""

    instance_id: str
    path: Path
    entries: list[Settlement]
    handle: IO[str]

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.handle.close()


class FileOutbox:
    """The journal of instance `instance_id` in `directory` (see the module docstring)."""

    def __init__(self, directory: Path, instance_id: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{instance_id}{_SUFFIX}"
        self._handle: IO[str] = self.path.open("a+", encoding="utf-8")
        fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._entries: dict[str, Settlement] = {}
        self._lock = threading.Lock()

    def pending(self) -> list[Settlement]:
        return list(self._entries.values())

    async def record(self, entry: Settlement) -> None:
        self._entries[entry.reservation_id] = entry
        # fsync off the event loop; the lock keeps lines whole and in order.
        await asyncio.to_thread(self._append, entry.line(), True)

    async def done(self, reservation_id: str) -> None:
        if self._entries.pop(reservation_id, None) is None:
            return
        # No fsync: a lost "done" only replays an idempotent settlement.
        await asyncio.to_thread(self._append, {"done": reservation_id}, False)

    def close(self) -> None:
        """Release the journal; delete it when nothing in it is left to settle."""
        if self._handle.closed:
            return
        if not self._entries:
            self.path.unlink(missing_ok=True)
        else:
            log.warning(
                "%d settlement(s) not yet in the database stay in %s for the next start",
                len(self._entries),
                self.path,
            )
        self._handle.close()

    def abandon(self) -> None:
        """Let go of the journal as a killed process would: kept on disk, unlocked."""
        self._handle.close()

    def _append(self, line: dict[str, Any], sync: bool) -> None:
        with self._lock:
            if self._handle.closed:
                return
            if not self._entries and self._handle.tell() > _COMPACT_BYTES:
                self._handle.truncate(0)
            self._handle.write(json.dumps(line, separators=(",", ":")) + "\n")
            self._handle.flush()
            if sync:
                os.fsync(self._handle.fileno())

    @staticmethod
    def orphans(directory: Path, *, own: str | None = None) -> list[Orphan]:
        """The journals in `directory` whose instance is dead (no lock held on them)."""
        if not directory.is_dir():
            return []
        found = []
        for path in sorted(directory.glob(f"*{_SUFFIX}")):
            instance_id = path.name.removesuffix(_SUFFIX)
            if instance_id == own:
                continue
            handle = path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # alive: another server holds it
                continue
            handle.seek(0)
            found.append(Orphan(instance_id, path, _read(handle.read()), handle))
        return found


def _read(text: str) -> list[Settlement]:
    entries: dict[str, Settlement] = {}
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue  # a line torn by the crash was never acknowledged to anyone
        if "done" in line:
            entries.pop(str(line["done"]), None)
        elif "id" in line and "outcome" in line:
            entries[str(line["id"])] = Settlement(
                str(line["id"]), str(line["outcome"]), line.get("timings")
            )
    return list(entries.values())
