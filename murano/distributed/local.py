"""`InProcessHandle`: a `ModelHandle` on a `ModelReplica` in the same event loop, the twin
of a Serve deployment handle for tests. As with Serve, cancelling a call cancels the
replica's `generate` where it waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from murano.distributed._wire import Event, RemoteJob
from murano.distributed.replica import ModelReplica

__all__ = ["InProcessHandle"]


class InProcessHandle:
    def __init__(self, replica: ModelReplica) -> None:
        self.replica = replica

    def generate(self, request: RemoteJob) -> _InProcessCall:
        return _InProcessCall(self.replica.generate(request))


class _InProcessCall:
    def __init__(self, events: AsyncIterator[Event]) -> None:
        self._queue: asyncio.Queue[Event | BaseException | None] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._pump(events))

    async def _pump(self, events: AsyncIterator[Event]) -> None:
        try:
            async for event in events:
                self._queue.put_nowait(event)
        except Exception as exc:
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)

    async def _iterate(self) -> AsyncIterator[Event]:
        while (item := await self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    def cancel(self) -> None:
        self._task.cancel()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
