"""Async jobs: a generation that answers `202` at once and is followed by polling, by
Server-Sent Events or by webhooks, then fetched from the accounts database.

    submit ──► ImageService.generate in a task (admission first: a refused request is
    │          still a 4xx, never a job) ──► 202 once the engine has queued the job
    ├── engine listeners ──► an ordered event log per job (queued, started, progress with
    │                        previews, completed | failed | cancelled), resumable by id
    ├── every state change ──► the job's row (so any server sharing the database sees it)
    └── result ready ──► stored as `delivered` (conditional: a cancel that came first
                         wins) ──► only then is the reservation committed (charge on
                         delivery); not stored ──► released

Progress, previews and queue position are live state of the server running the job; a
server that only shares the database serves the job's status and, once delivered, its
result. Webhooks fire on the events the job asked for (default completed and failed).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from PIL.Image import Image

from murano.accounts.base import Accounts, Principal
from murano.accounts.credentials import Credentials
from murano.accounts.jobs import JobRecord, JobStore, MemoryJobStore, SqlJobStore
from murano.api.delivery import Delivery
from murano.api.errors import error_body
from murano.api.job_spec import JobSpec
from murano.api.serving import Generated, ImageService
from murano.api.streaming import sse
from murano.engine.job import GenerationJob, JobState
from murano.errors import InferenceFailed, JobNotFound, MuranoError
from murano.settings import Settings
from murano.webhooks import UrlPolicy, WebhookDispatcher, load_or_create_secret

__all__ = ["DEFAULT_WEBHOOK_EVENTS", "AsyncJobs", "LiveJob", "build_jobs", "links"]

log = logging.getLogger("murano.api")

DEFAULT_WEBHOOK_EVENTS = ("completed", "failed")
# How often a waiting event stream looks at the queue position, or at a job another
# server runs (seconds).
_POLL_S = 0.5
_REMOTE_POLL_S = 1.0
_PREVIEW_SIDE = 256
# A job's final status → the name of its final event.
_FINAL = {
    "delivered": "completed",
    "cancelled": "cancelled",
    "failed": "failed",
    "expired": "failed",
}

Json = dict[str, Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class _Event:
    seq: int
    name: str
    data: Json


@dataclass(eq=False)
class LiveJob:
    """A job this server runs: its engine job, and the events it has produced so far."""

    id: str
    key_id: str
    model: str
    steps: int
    created_at: datetime
    preview_every: int
    webhook: Json | None = None
    job: GenerationJob | None = None
    status: str = "queued"
    result: Json | None = None
    error: Json | None = None
    events: list[_Event] = field(default_factory=list)
    position: int | None = None
    expires_at: datetime | None = None
    stored: asyncio.Event = field(default_factory=asyncio.Event)
    updates: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    consumer: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, name: str, data: Json) -> None:
        if self.final and name not in _FINAL.values():
            return  # a late progress update: the final event is the last one
        self.events.append(_Event(len(self.events) + 1, name, data))
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    @property
    def final(self) -> bool:
        return self.status in _FINAL


class AsyncJobs:
    def __init__(
        self,
        service: ImageService,
        store: JobStore,
        *,
        ttl_s: float = 3600.0,
        stale_after_s: float = 0.0,
        dispatcher: WebhookDispatcher | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.service = service
        self.store = store
        self.dispatcher = dispatcher
        self.ttl = timedelta(seconds=ttl_s)
        self._stale_after = timedelta(seconds=stale_after_s)
        self._clock = clock
        self.server_id = uuid.uuid4().hex[:16]
        self._live: dict[str, LiveJob] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cleanup: asyncio.Task[None] | None = None
        # Seconds per denoising step, by model (a moving average of what was measured).
        self._step_s: dict[str, float] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.start()
        now = self._clock()
        error = {"error": "The server running this job stopped before it finished."}
        failed = await self.store.fail_stale(now - self._stale_after, now, error, now + self.ttl)
        if failed:
            log.warning("%d async jobs of a stopped server marked failed", len(failed))
        if self.dispatcher is not None:
            await self.dispatcher.start()
        self._cleanup = asyncio.get_running_loop().create_task(self._clean_forever())

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._cleanup
        for live in list(self._live.values()):
            if live.job is not None and not live.final:
                self.service.engine.cancel(live.job)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for live in self._live.values():
            if live.consumer is not None:
                live.consumer.cancel()
        if self.dispatcher is not None:
            await self.dispatcher.close()
        await self.store.close()

    async def clean(self) -> int:
        """Delete expired jobs from the database and forget finished ones held here."""
        now = self._clock()
        removed = await self.store.delete_expired(now)
        for job_id, live in list(self._live.items()):
            if live.expires_at is not None and live.expires_at <= now:
                del self._live[job_id]
        return removed

    async def _clean_forever(self) -> None:
        every = max(1.0, min(60.0, self.ttl.total_seconds() / 4))
        while True:
            await asyncio.sleep(every)
            try:
                await self.clean()
            except Exception:
                log.exception("cleaning expired jobs failed")

    # -- submitting ---------------------------------------------------------------------

    async def submit(
        self,
        credentials: Credentials,
        job: JobSpec,
        echo: Json,
        *,
        endpoint: str,
        received: float,
        webhook: Json | None = None,
    ) -> LiveJob:
        """Admit and queue the job; returns once it is queued (or raises what a synchronous
        request would have answered). The rest runs in the background."""
        live = LiveJob(
            id=str(uuid.uuid4()),
            key_id=credentials.principal.key_id,
            model=job.params.model_id,
            steps=job.params.steps,
            created_at=self._clock(),
            preview_every=_preview_every(job.params.steps),
            webhook=webhook,
        )
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.get_running_loop().create_task(
            self._run(live, credentials, job, echo, endpoint, received, admitted)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        await asyncio.wait({admitted, task}, return_when=asyncio.FIRST_COMPLETED)
        if not admitted.done():
            task.result()  # raises the refusal; a task that returned set `admitted` first
        admitted.result()
        try:
            await self.store.create(self._record(live))
        except BaseException:
            # Without its row the job could be neither followed nor delivered: stop it
            # (its reservation is released) and answer the error.
            if live.job is not None:
                self.service.engine.cancel(live.job)
            raise
        finally:
            live.stored.set()
        self._live[live.id] = live
        live.add("queued", {"queuePosition": live.position})
        await self._notify_webhook(live, "queued")
        return live

    async def _run(
        self,
        live: LiveJob,
        credentials: Credentials,
        spec: JobSpec,
        echo: Json,
        endpoint: str,
        received: float,
        admitted: asyncio.Future[None],
    ) -> None:
        delivery = Delivery(_never_disconnects, guarded=True)

        def on_job(job: GenerationJob) -> None:
            live.job = job
            live.position = self.service.engine.queue_position(job)
            job.add_listener(self._listener(live))
            if not admitted.done():
                admitted.set_result(None)

        try:
            generated = await self.service.generate(
                credentials,
                spec,
                delivery=delivery,
                endpoint=endpoint,
                received=received,
                preview_every=live.preview_every,
                on_job=on_job,
            )
        except BaseException as exc:
            if not admitted.done():
                raise  # refused before it was queued: the submitter answers it
            await live.stored.wait()
            await self._ended(live, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if not admitted.done():
            admitted.set_result(None)  # a refused prompt: answered without a job
        await live.stored.wait()
        await self._deliver(live, generated, echo, delivery)

    async def _deliver(
        self, live: LiveJob, generated: Generated, echo: Json, delivery: Delivery
    ) -> None:
        """Store the result; only a stored result is charged (the delivery's settlement
        commits the reservation, or releases it when a cancel came first)."""
        result = {
            "id": f"generate-image-{live.id}",
            "images": generated.rendered.base64_images(),
            "timing": generated.timings.as_venice(),
            "request": {"success": True, "data": echo},
        }
        now = self._clock()
        try:
            stored = await self.store.set_status(
                live.id, "delivered", now, result=result, expires_at=now + self.ttl
            )
        except Exception:
            log.exception("storing the result of job %s failed", live.id)
            stored = False
        if stored:
            live.result, live.expires_at = result, now + self.ttl
        delivery.delivered, delivery.complete = stored, True
        await delivery.close()
        await self._drain(live)
        if stored:
            self._finish(live, "delivered", None)
            live.add("completed", {"result": result})
            await self._notify_webhook(live, "completed")
            return
        record = await self.store.get(live.id)
        status = record.status if record is not None and record.terminal else "failed"
        error = (record.error if record is not None else None) or _cancelled_body()
        self._finish(live, status, error)
        live.add(_FINAL[status], error)
        await self._notify_webhook(live, _FINAL[status])

    async def _ended(self, live: LiveJob, exc: BaseException) -> None:
        """The job ended without a result: store why and tell the listeners."""
        error = exc if isinstance(exc, MuranoError) else InferenceFailed(repr(exc))
        job = live.job
        state = job.state.value if job is not None and job.finished else "failed"
        if state == "delivered":  # cannot be: delivery is ours, after generate returns
            state = "failed"
        body = error_body(error)
        now = self._clock()
        with contextlib.suppress(Exception):
            await self.store.set_status(live.id, state, now, error=body, expires_at=now + self.ttl)
        record = await self._safe_get(live.id)
        if record is not None and record.terminal:
            state, body = record.status, record.error or body
        await self._drain(live)
        self._finish(live, state, body)
        live.add(_FINAL.get(state, "failed"), body)
        await self._notify_webhook(live, _FINAL.get(state, "failed"))

    def _finish(self, live: LiveJob, status: str, error: Json | None) -> None:
        live.status, live.error, live.position = status, error, None
        if live.expires_at is None:
            live.expires_at = self._clock() + self.ttl

    async def _safe_get(self, job_id: str) -> JobRecord | None:
        try:
            return await self.store.get(job_id)
        except Exception:
            log.exception("reading job %s failed", job_id)
            return None

    # -- progress -----------------------------------------------------------------------

    def _listener(self, live: LiveJob) -> Callable[[GenerationJob], None]:
        """Turns the engine job's updates into events, in order, off the listener call
        (which runs inside the engine); `_drain` waits until all are turned."""
        updates = live.updates
        seen: dict[str, Any] = {"state": None, "progress": None, "preview": None, "at": None}

        def listener(job: GenerationJob) -> None:
            preview = job.preview if job.preview is not seen["preview"] else None
            if preview is not None:
                seen["preview"] = preview
            updates.put_nowait((job.state.value, job.progress, preview))

        async def consume() -> None:
            while True:
                item = await updates.get()
                if isinstance(item, asyncio.Future):
                    item.set_result(None)
                    continue
                try:
                    await self._update(live, seen, *item)
                except Exception:
                    log.exception("an update of job %s was lost", live.id)

        live.consumer = asyncio.get_running_loop().create_task(consume())
        return listener

    async def _drain(self, live: LiveJob) -> None:
        """Wait until every update so far has become an event, then stop listening."""
        if live.consumer is None or live.consumer.done():
            return
        barrier: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live.updates.put_nowait(barrier)
        await barrier
        live.consumer.cancel()

    async def _update(
        self,
        live: LiveJob,
        seen: dict[str, Any],
        state: str,
        progress: tuple[int, int] | None,
        preview: Image | None,
    ) -> None:
        if state != seen["state"]:
            seen["state"] = state
            if state in ("loading", "running", "postprocessing", "sending"):
                live.status = state
                await live.stored.wait()
                with contextlib.suppress(Exception):
                    await self.store.set_status(live.id, state, self._clock())
            if state == "running":
                live.position = None
                live.add("started", {"status": state})
            elif state in ("loading", "postprocessing"):
                live.add("status", {"status": state})
        if progress is not None and progress != seen["progress"]:
            self._measure(live, seen, progress)
            seen["progress"] = progress
            step, steps = progress
            data: Json = {"step": step, "steps": steps, "etaMs": self._eta_ms(live)}
            if preview is not None:
                data["preview"] = await self._encode_preview(preview)
            live.add("progress", data)

    def _measure(self, live: LiveJob, seen: dict[str, Any], progress: tuple[int, int]) -> None:
        now = time.monotonic()
        previous, at = seen["progress"], seen["at"]
        seen["at"] = now
        if previous is None or at is None or progress[0] <= previous[0]:
            return
        per_step = (now - at) / (progress[0] - previous[0])
        old = self._step_s.get(live.model)
        self._step_s[live.model] = per_step if old is None else 0.7 * old + 0.3 * per_step

    async def _encode_preview(self, image: Image) -> str:
        loop = asyncio.get_running_loop()
        pool = getattr(self.service.engine, "postprocess_pool", None)
        return await loop.run_in_executor(pool, _webp_base64, image)

    def _position(self, live: LiveJob) -> int | None:
        if live.job is None or live.final:
            return None
        position = self.service.engine.queue_position(live.job)
        live.position = position
        return position

    def _eta_ms(self, live: LiveJob) -> int | None:
        per_step = self._step_s.get(live.model)
        if per_step is None or live.final:
            return None
        job = live.job
        if job is not None and job.progress is not None and job.state is JobState.RUNNING:
            step, steps = job.progress
            return round((steps - step) * per_step * 1000)
        position = live.position if live.position is not None else self._position(live)
        if position is None:
            return None
        return round((position + 1) * live.steps * per_step * 1000)

    # -- reading ------------------------------------------------------------------------

    async def view(self, principal: Principal, job_id: str) -> Json:
        live = self._owned_live(principal, job_id)
        if live is not None:
            self._position(live)
            return self._live_view(live)
        return self._record_view(await self._owned_record(principal, job_id))

    async def recent(self, principal: Principal, limit: int = 20) -> list[Json]:
        if principal.anonymous:
            return []
        views = []
        for record in await self.store.recent(principal.key_id, limit):
            live = self._live.get(record.id)
            views.append(self._live_view(live) if live is not None else self._record_view(record))
        return views

    async def cancel(self, principal: Principal, job_id: str) -> Json:
        """Cancel a job before delivery (its reservation is released); a finished job is
        left as it is. The job as it is afterwards."""
        live = self._owned_live(principal, job_id)
        if live is None:
            record = await self._owned_record(principal, job_id)
            if not record.terminal:  # running on another server: it finds this when done
                now = self._clock()
                await self.store.set_status(
                    job_id, "cancelled", now, error=_cancelled_body(), expires_at=now + self.ttl
                )
            return self._record_view(await self._owned_record(principal, job_id))
        if live.job is not None and not live.final:
            # The database decides between a cancel and a delivery: whichever is written
            # first wins, and a delivery that loses is released, not charged.
            now = self._clock()
            won = await self.store.set_status(
                job_id, "cancelled", now, error=_cancelled_body(), expires_at=now + self.ttl
            )
            if won:
                self.service.engine.cancel(live.job)
            while not live.final:
                await live.wait(_POLL_S)
        return self._live_view(live)

    async def events(
        self, principal: Principal, job_id: str, last_event_id: int = 0
    ) -> AsyncIterator[bytes]:
        """The job's events after `last_event_id`, live until the final one."""
        live = self._owned_live(principal, job_id)
        if live is None:
            return self._remote_events(await self._owned_record(principal, job_id))
        return self._live_events(live, last_event_id)

    async def _live_events(self, live: LiveJob, after: int) -> AsyncIterator[bytes]:
        sent = max(0, after)
        while True:
            for event in live.events[sent:]:
                yield sse(event.name, event.data, event_id=event.seq)
                sent = event.seq
            if live.final and sent >= len(live.events):
                return
            await live.wait(_POLL_S)
            if live.status == "queued":
                before = live.position
                if self._position(live) != before and live.position is not None:
                    live.add("queued", {"queuePosition": live.position})

    async def _remote_events(self, record: JobRecord) -> AsyncIterator[bytes]:
        status = None
        while True:
            if record.terminal:
                yield _final_event(record)
                return
            if record.status != status:
                status = record.status
                yield sse("status", {"status": status})
            await asyncio.sleep(_REMOTE_POLL_S)
            fresh = await self.store.get(record.id)
            if fresh is None:
                return
            record = fresh

    def _owned_live(self, principal: Principal, job_id: str) -> LiveJob | None:
        live = self._live.get(job_id)
        if live is None:
            return None
        if live.key_id != principal.key_id:
            raise JobNotFound(job_id)
        return live

    async def _owned_record(self, principal: Principal, job_id: str) -> JobRecord:
        record = await self.store.get(job_id)
        # Another key's job is not found, never forbidden: its existence is not told.
        if record is None or record.key_id != principal.key_id:
            raise JobNotFound(job_id)
        return record

    # -- views --------------------------------------------------------------------------

    def _record(self, live: LiveJob) -> JobRecord:
        return JobRecord(
            id=live.id,
            key_id=live.key_id,
            status="queued",
            model=live.model,
            server=self.server_id,
            created_at=live.created_at,
            updated_at=live.created_at,
            expires_at=live.created_at + self.ttl + timedelta(days=1),
            webhook=live.webhook,
        )

    def _live_view(self, live: LiveJob) -> Json:
        job = live.job
        progress = None
        if job is not None and job.progress is not None:
            progress = {"step": job.progress[0], "steps": job.progress[1]}
        # The engine's state is the freshest; the stored one may lag a write behind.
        status = live.status if live.final or job is None else job.state.value
        return {
            "id": live.id,
            "status": status,
            "queuePosition": live.position if status == "queued" else None,
            "progress": progress,
            "etaMs": self._eta_ms(live),
            "createdAt": _iso(live.created_at),
            "model": live.model,
            "result": live.result,
            "error": live.error,
            "links": links(live.id),
        }

    def _record_view(self, record: JobRecord) -> Json:
        return {
            "id": record.id,
            "status": record.status,
            "queuePosition": None,
            "progress": None,
            "etaMs": None,
            "createdAt": _iso(record.created_at),
            "model": record.model,
            "result": record.result,
            "error": record.error,
            "links": links(record.id),
        }

    async def _notify_webhook(self, live: LiveJob, event: str) -> None:
        hook = live.webhook
        if self.dispatcher is None or hook is None:
            return
        if event not in hook.get("events", DEFAULT_WEBHOOK_EVENTS):
            return
        try:
            await self.dispatcher.enqueue(live.id, hook["url"], event, self._live_view(live))
        except Exception:
            log.exception("queueing the %s webhook of job %s failed", event, live.id)


def build_jobs(
    settings: Settings, service: ImageService, accounts: Accounts, *, store: JobStore | None = None
) -> AsyncJobs:
    """Jobs in the accounts database when there is one (in memory otherwise), with
    webhooks signed by `settings.webhook_secret` or the data directory's own secret."""
    from murano.accounts.ledger import SqlAccounts

    sql = accounts.store if isinstance(accounts, SqlAccounts) else None
    if store is None:
        store = SqlJobStore(sql.engine) if sql is not None else MemoryJobStore()
    # As for reservations: on a shared PostgreSQL another server may still be running a
    # job, so only jobs untouched for twice the request timeout are taken for dead.
    shared = sql is not None and sql.url.get_backend_name() != "sqlite"
    stale_after = 2 * settings.request_timeout_s if shared else 0.0
    secret = settings.webhook_secret or load_or_create_secret(settings.data_dir / "webhook_secret")
    dispatcher = WebhookDispatcher(store, secret, UrlPolicy(settings.webhook_allow))
    return AsyncJobs(
        service, store, ttl_s=settings.job_ttl_s, stale_after_s=stale_after, dispatcher=dispatcher
    )


def links(job_id: str) -> dict[str, str]:
    base = f"/api/v1/image/jobs/{job_id}"
    return {"self": base, "events": f"{base}/events"}


def _preview_every(steps: int) -> int:
    """About four previews a job, at most one a step."""
    return max(1, steps // 4)


def _cancelled_body() -> Json:
    return {"error": "The request was cancelled."}


def _final_event(record: JobRecord) -> bytes:
    name = _FINAL.get(record.status, "failed")
    if name == "completed":
        return sse(name, {"result": record.result})
    return sse(name, record.error or {"error": f"The job {record.status}."})


def _webp_base64(image: Image) -> str:
    image = image.convert("RGB")
    image.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, "WEBP", quality=70)
    return base64.b64encode(buffer.getvalue()).decode()


async def _never_disconnects() -> dict[str, Any]:
    """An async job has no connection to lose: it ends by cancel, or when the server stops."""
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}
