"""Sending webhook events: each event is stored as a delivery before the first attempt, so
a restarted server (or another server on the same database) picks up what was owed.

Attempts follow the Standard Webhooks schedule: at once, then after 5 s, 5 min, 30 min,
2 h, 5 h, 10 h and 10 h (about 27.6 hours in all), after which the delivery is marked
failed. A 2xx answer delivers; anything else, a timeout or a refused connection is retried.
Redirects are not followed (they could lead past the allowlist), and the URL is checked
against the policy again before every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from murano.accounts.jobs import Delivery, JobStore
from murano.errors import InvalidRequest
from murano.webhooks.policy import UrlPolicy
from murano.webhooks.signing import sign_headers

__all__ = ["BACKOFF_S", "Clock", "WebhookDispatcher"]

log = logging.getLogger("murano.webhooks")

# Seconds to wait after attempt 1, 2, ...; one more attempt than entries in all.
BACKOFF_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class WebhookDispatcher:
    def __init__(
        self,
        store: JobStore,
        secret: str,
        policy: UrlPolicy,
        *,
        clock: Clock = _utcnow,
        backoff: Sequence[float] = BACKOFF_S,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 15.0,
        poll_s: float = 5.0,
    ) -> None:
        self.store = store
        self.policy = policy
        self._secret = secret
        self._clock = clock
        self._backoff = tuple(backoff)
        self._client = httpx.AsyncClient(
            transport=transport, timeout=timeout_s, follow_redirects=False
        )
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="murano-webhooks")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def enqueue(self, job_id: str, url: str, event: str, data: dict[str, Any]) -> Delivery:
        """Store one event for `url` and wake the sender."""
        now = self._clock()
        delivery = Delivery(
            id=f"msg_{uuid.uuid4().hex}",
            job_id=job_id,
            url=url,
            event=event,
            payload={"type": f"image.job.{event}", "timestamp": now.isoformat(), "data": data},
            state="pending",
            attempts=0,
            created_at=now,
            next_attempt_at=now,
        )
        await self.store.add_delivery(delivery)
        self._wake.set()
        return delivery

    async def run_due(self) -> int:
        """Attempt every delivery that is due now; how many were attempted."""
        due = await self.store.due_deliveries(self._clock())
        for delivery in due:
            await self._attempt(delivery)
        return len(due)

    async def _attempt(self, delivery: Delivery) -> None:
        now = self._clock()
        body = json.dumps(delivery.payload, separators=(",", ":"))
        error: str | None = None
        final = False
        try:
            await self.policy.check(delivery.url)
            headers = sign_headers(self._secret, delivery.id, now, body)
            response = await self._client.post(delivery.url, content=body, headers=headers)
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except InvalidRequest as exc:
            error, final = str(exc), True
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = delivery.attempts + 1
        if error is None:
            state, next_at = "delivered", now
        elif final or attempts > len(self._backoff):
            state, next_at = "failed", now
            log.warning("webhook %s for job %s given up: %s", delivery.id, delivery.job_id, error)
        else:
            state, next_at = "pending", now + timedelta(seconds=self._backoff[attempts - 1])
        await self.store.save_delivery(
            replace(
                delivery, state=state, attempts=attempts, last_error=error, next_attempt_at=next_at
            )
        )

    async def _loop(self) -> None:
        while True:
            # Cleared before the run: an event queued during it wakes the next one.
            self._wake.clear()
            try:
                await self.run_due()
            except Exception:
                log.exception("sending webhooks failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
