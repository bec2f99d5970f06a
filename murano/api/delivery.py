"""Charge on delivery: a request's connection, watched for a disconnect in every state, and
the settlements that wait for its response to be sent.

`DeliveryGuard` (pure ASGI, between the server and everything else) gives each request a
`Delivery`. The generation service attaches a `Settlement` to it once a job's result is
ready; the guard settles it when the response ends: *delivered* when the last byte of the
body was handed to the server and no disconnect had been seen, *not delivered* otherwise (a
disconnect, an error while building or sending the response). This is vLLM's
`with_cancellation`, carried through the body. A settlement that must put a header on the
response (x402's `PAYMENT-RESPONSE`) settles when the response starts instead, and may turn
it into an error response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from starlette.requests import Request

__all__ = ["Delivery", "DeliveryGuard", "Settlement"]

log = logging.getLogger("murano.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Settlement(Protocol):
    async def before_start(self, message: Message) -> tuple[Message, bytes] | None:
        """The response is about to start (`message` is its start, headers mutable). A
        replacement (start, body) to send instead, or None to go on."""

    def gone(self) -> None:
        """The client went away; called on the event loop as soon as it is noticed."""

    async def finish(self, delivered: bool) -> str:
        """The response ended; `delivered` as the module docstring defines it. Returns how
        it ended (the job's final state), for the access log."""


class Delivery:
    """One request's connection and the settlements waiting on its response."""

    def __init__(self, receive: Receive, *, guarded: bool = True) -> None:
        self._receive = receive
        # False for a request that no `DeliveryGuard` watches (the caller settles itself).
        self.guarded = guarded
        self.gone = asyncio.Event()
        self.complete = False
        self.delivered = False
        self._settlements: list[Settlement] = []
        self._watcher: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, request: Request) -> Delivery:
        delivery = request.scope.get("state", {}).get("delivery")
        if isinstance(delivery, Delivery):
            return delivery
        return cls(request.receive, guarded=False)

    def watch(self) -> None:
        """Start listening for a disconnect; call once the request body has been read."""
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._listen())

    def attach(self, settlement: Settlement) -> None:
        self._settlements.append(settlement)
        if self.gone.is_set():
            settlement.gone()

    async def _listen(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                # After the last byte a server reports every connection as gone.
                if not self.complete:
                    self.gone.set()
                    for settlement in list(self._settlements):
                        settlement.gone()
                return

    async def before_start(self, message: Message) -> tuple[Message, bytes] | None:
        for settlement in self._settlements:
            replacement = await settlement.before_start(message)
            if replacement is not None:
                return replacement
        return None

    async def close(self) -> list[str]:
        """Stop watching and settle; how each settlement ended."""
        ended: list[str] = []
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watcher
        settlements, self._settlements = self._settlements, []
        for settlement in settlements:
            try:
                ended.append(await asyncio.shield(settlement.finish(self.delivered)))
            except Exception:
                log.exception("settling a request failed")
        return ended


class DeliveryGuard:
    """Gives each HTTP request a `Delivery` (in `scope["state"]["delivery"]`), tells it
    whether the response's last byte went out before any disconnect, and settles what was
    attached to it when the response ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        delivery = Delivery(receive)
        state = scope.setdefault("state", {})
        state["delivery"] = delivery
        replaced = False

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return  # the original response's body, after a replacement was sent
            if message["type"] == "http.response.start":
                replacement = await delivery.before_start(message)
                if replacement is not None:
                    replaced = True
                    start, body = replacement
                    await send(start)
                    await send({"type": "http.response.body", "body": body})
                    delivery.complete = True
                    return
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if not last:
                await send(message)
                return
            # Let the watcher read a disconnect the server has already reported.
            await asyncio.sleep(0)
            went_before = delivery.gone.is_set()
            await send(message)
            # A server that found the connection closed while sending returns quietly; its
            # disconnect reaches the watcher before this task resumes.
            delivery.delivered = not went_before and not delivery.gone.is_set()
            delivery.complete = True

        try:
            await self.app(scope, receive, guarded_send)
        finally:
            ended = await delivery.close()
            if ended:
                state.setdefault("log_fields", {})["job_state"] = ",".join(ended)
