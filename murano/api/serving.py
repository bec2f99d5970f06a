"""The generation service behind every image endpoint. Given a checked job (the request's
own `to_job`) and the caller's `Credentials`: refuse cheaply when the queue cannot take it,
admit the caller (reserve, or the x402 gate), decide safe mode once (`SafetyPolicy`), queue
the job, wait for it while watching the connection (a disconnect cancels the job in any
state), and hand the settlement to the request's `Delivery`: the reservation is committed
only once the response's last byte was sent, and released on anything else."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from fastapi.responses import Response

from murano import __version__
from murano.accounts.base import Accounts, Admission, Charge, Outcome
from murano.accounts.credentials import Credentials
from murano.api.delivery import Delivery, Message
from murano.api.errors import error_body, status_for
from murano.api.job_spec import JobSpec, OutputRequest
from murano.api.middleware import OFFLOAD_BYTES
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.engine import Engine
from murano.engine.job import GenerationJob, JobTimings
from murano.engine.params import GenerationParams
from murano.errors import (
    ContentViolation,
    DeadlineExceeded,
    JobCancelled,
    ModelUnavailable,
    MuranoError,
    ShuttingDown,
)
from murano.gateway import Gateway, UpstreamRequest
from murano.imaging.encode import encode
from murano.imaging.metadata import ImageMetadata
from murano.imaging.placeholder import blacked_out, violation_placeholder_png
from murano.postprocess import OutputOptions, Rendered, render
from murano.safety.policy import SafetyDecision, SafetyPolicy

__all__ = ["Generated", "ImageService", "PaymentGate"]

log = logging.getLogger("murano.api")

# The x402 layer, when enabled: given an anonymous caller's credentials (its x402 headers)
# and the priced request, it either raises PaymentRequired or returns an admission backed
# by a verified payment or a wallet's credit.
PaymentGate = Callable[[Credentials, Charge], Awaitable[Admission]]


@dataclass(slots=True)
class Generated:
    entry: ModelEntry
    params: GenerationParams
    rendered: Rendered
    timings: JobTimings
    admission: Admission
    content_violation: bool = False
    # The job (None for a refused prompt); in `sending` until its response was sent.
    job: GenerationJob | None = None
    # The job's `SafetyDecision.checked`: False when safe mode was asked for and nothing
    # classified the images.
    safety_checked: bool = True

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self.admission.headers)
        headers["x-venice-model-id"] = self.entry.id
        headers["x-venice-model-name"] = self.entry.model_spec.name
        headers["x-venice-is-blurred"] = _flag(self.rendered.blurred)
        headers["x-venice-is-content-violation"] = _flag(self.content_violation)
        if not self.safety_checked:
            headers["x-murano-safety-checked"] = "false"
        return headers


def _flag(value: bool) -> str:
    return "true" if value else "false"


class ImageService:
    def __init__(
        self,
        catalog: Catalog,
        engine: Engine,
        accounts: Accounts,
        *,
        safety: SafetyPolicy,
        blocked_terms: list[str],
        watermark: bool,
        allow_hide_watermark: bool,
        visible_mark: str | None,
        payment_gate: PaymentGate | None = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.catalog = catalog
        self.engine = engine
        self.accounts = accounts
        self.safety = safety
        self.blocked_terms = [term.lower() for term in blocked_terms if term]
        self.watermark = watermark
        self.allow_hide_watermark = allow_hide_watermark
        self.visible_mark = visible_mark
        self.payment_gate = payment_gate
        self.gateway = gateway

    async def generate(
        self,
        credentials: Credentials,
        job_spec: JobSpec,
        *,
        endpoint: str,
        delivery: Delivery | None = None,
        received: float | None = None,
        preview_every: int = 0,
        on_job: Callable[[GenerationJob], None] | None = None,
        is_disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> Generated:
        """Generate for the caller who presented `credentials`. The result's settlement
        waits on `delivery` (by default the current request's, see `murano.api.delivery`),
        which also watches the connection (`is_disconnected` is accepted for older callers
        and not needed); `on_job` sees the job once it is queued."""
        params, output = job_spec.params, job_spec.output
        delivery = delivery or Delivery.current()
        received = time.monotonic() if received is None else received
        entry = self.catalog.get(params.model_id)
        price = entry.model_spec.pricing.unit_price(params.resolution, edit=params.is_edit)
        charge = Charge(entry.id, params.images, Decimal(price), endpoint)
        # Cheap refusals first: a full queue or a draining server reserves nothing.
        self.engine.check_room(params.model_id)
        admission = await self._admit(credentials, charge)
        job: GenerationJob | None = None
        try:
            if self._violates_policy(params):
                return await self._violation(entry, params, output, admission, received)
            safety = self.safety.decide(entry, output.safe_mode)
            if entry.upstream is not None:
                return await self._forward(entry, job_spec, safety, admission, received, delivery)
            job = GenerationJob(
                params=params,
                finish=partial(_finish, options=self._options(entry, params, output)),
                batch_key=self.engine.batch_key(params),
                classifier=safety.classifier,
                received=received,
                preview_every=preview_every,
            )
            self.engine.submit(job)
            if on_job is not None:
                on_job(job)
            delivery.watch()
            rendered = await self._wait(job, delivery)
        except BaseException as exc:
            if job is not None:
                self.engine.cancel(job)
            await self._settle(admission, _outcome_of(exc), _timings(job, received))
            if isinstance(exc, MuranoError):
                exc.headers = {**admission.headers, **exc.headers}
            raise
        generated = Generated(
            entry, params, rendered, job.timings, admission, job=job, safety_checked=safety.checked
        )
        if delivery.guarded:
            delivery.attach(_Settlement(self, job, admission))
        else:
            # Nobody watches this response: it counts as delivered once it is ready.
            self.engine.deliver(job)
            await self._settle(admission, Outcome.DELIVERED, job.timings)
        return generated

    async def _admit(self, credentials: Credentials, charge: Charge) -> Admission:
        """Admission for what the caller presented: an x402 payment or wallet sign-in
        (the payment gate), else the key's balance and rate limit (the accounts)."""
        if credentials.x402 is not None and self.payment_gate is not None:
            return await self.payment_gate(credentials, charge)
        return await self.accounts.admit(credentials.principal, charge)

    async def _settle(self, admission: Admission, outcome: Outcome, timings: JobTimings) -> None:
        if admission.settle_hook is not None:
            # x402: a payment that cannot be settled must not buy the images, so errors
            # from the hook reach the caller instead of being logged away.
            await asyncio.shield(admission.settle_hook(outcome))
            return
        try:
            await asyncio.shield(
                self.accounts.settle(admission, outcome, timings_ms=timings.as_venice())
            )
        except Exception:
            log.exception("settling a reservation failed (outcome %s)", outcome)

    async def json_response(
        self, content: Any, *, headers: dict[str, str], size_hint: int, status_code: int = 200
    ) -> Response:
        """A JSON response of about `size_hint` bytes (its images' base64), serialised on
        the post-processing pool when it is large, and on the event loop when that is
        cheaper than the hop (`OFFLOAD_BYTES`)."""
        if size_hint < OFFLOAD_BYTES:
            body = _dumps(content)
        else:
            loop = asyncio.get_running_loop()
            body = await loop.run_in_executor(self.engine.postprocess_pool, _dumps, content)
        return Response(body, status_code, headers=headers, media_type="application/json")

    def _options(
        self, entry: ModelEntry, params: GenerationParams, output: OutputRequest
    ) -> OutputOptions:
        hide = output.hide_watermark and self.allow_hide_watermark
        metadata = None
        if output.embed_metadata:
            metadata = ImageMetadata(
                prompt=params.prompt,
                negative_prompt=params.negative_prompt,
                model=entry.id,
                seed=params.seed,
                steps=params.steps,
                cfg_scale=params.cfg_scale,
                width=params.width,
                height=params.height,
                style_preset=output.style_preset,
                version=__version__,
            )
        return OutputOptions(
            fmt=output.fmt,
            watermark=self.watermark and not hide,
            visible_mark=None if hide else self.visible_mark,
            metadata=metadata,
            as_base64=output.as_base64,
        )

    async def _wait(self, job: GenerationJob, delivery: Delivery) -> Rendered:
        """The job's result; a client that goes away first has the job cancelled, in
        whatever state it is."""
        gone = asyncio.ensure_future(delivery.gone.wait())
        try:
            await asyncio.wait({job.future, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
        if not job.future.done():
            self.engine.cancel(job)
        result: Rendered = job.future.result()
        return result

    # -- models served by an upstream API (murano.gateway) -------------------------------

    async def _forward(
        self,
        entry: ModelEntry,
        job_spec: JobSpec,
        safety: SafetyDecision,
        admission: Admission,
        received: float,
        delivery: Delivery,
    ) -> Generated:
        """The upstream's images, admitted and settled like a local job's: charged only when
        delivered (after the response's last byte, as for a local job), released on any
        error (the caller's `except` above)."""
        if self.gateway is None:
            raise ModelUnavailable(entry.id, "no upstream gateway")
        params, output = job_spec.params, job_spec.output
        request = UpstreamRequest(
            params, output.fmt, output.safe_mode, output.hide_watermark, output.embed_metadata
        )
        started = time.monotonic()
        options = self._options(entry, params, output)
        result = await self.gateway.generate(entry, request, options, safety)
        timings = JobTimings(
            received,
            enqueued=started,
            started=started,
            generated=result.generated_at,
            finished=time.monotonic(),
        )
        violation = result.content_violation
        if violation:
            await self._settle(admission, Outcome.CONTENT_VIOLATION, timings)
        elif delivery.guarded:
            delivery.attach(_Settlement(self, None, admission, timings))
        else:
            await self._settle(admission, Outcome.DELIVERED, timings)
        return Generated(
            entry,
            params,
            result.rendered,
            timings,
            admission,
            violation,
            safety_checked=safety.checked,
        )

    def _violates_policy(self, params: GenerationParams) -> bool:
        text = params.prompt.lower()
        return any(term in text for term in self.blocked_terms)

    async def _violation(
        self,
        entry: ModelEntry,
        params: GenerationParams,
        output: OutputRequest,
        admission: Admission,
        received: float,
    ) -> Generated:
        """Venice's answer to a refused prompt, with no charge: for a generation, 200,
        blacked-out images (a PNG placeholder for binary responses) and the violation header;
        for an edit, a 422 (`ContentViolation`)."""
        if params.is_edit:
            raise ContentViolation()  # settled below as a content violation (no charge)
        now = time.monotonic()
        timings = JobTimings(received, enqueued=now, started=now, generated=now, finished=now)
        await self._settle(admission, Outcome.CONTENT_VIOLATION, timings)
        if output.binary:
            images = [violation_placeholder_png()]
        else:
            black = blacked_out(params.width, params.height)
            images = [encode(black, output.fmt)] * params.images
        rendered = Rendered(images, blurred=False)
        return Generated(entry, params, rendered, timings, admission, content_violation=True)


def _finish(images: object, flags: object, *, options: OutputOptions) -> Rendered:
    return render(images, flags, options)  # type: ignore[arg-type]


def _dumps(content: Any) -> bytes:
    return json.dumps(content, separators=(",", ":")).encode()


def _timings(job: GenerationJob | None, received: float) -> JobTimings:
    return job.timings if job is not None else JobTimings(received)


class _Settlement:
    """What a delivered (or undelivered) response settles: the job's state and its
    reservation or x402 payment."""

    def __init__(
        self,
        service: ImageService,
        job: GenerationJob | None,
        admission: Admission,
        timings: JobTimings | None = None,
    ) -> None:
        # `job` is None for an upstream model's images (murano.gateway): no engine job.
        self.service = service
        self.job = job
        self.admission = admission
        self._timings = timings

    @property
    def timings(self) -> JobTimings:
        if self.job is not None:
            return self.job.timings
        assert self._timings is not None
        return self._timings

    def gone(self) -> None:
        if self.job is not None:
            self.service.engine.cancel(self.job)

    async def before_start(self, message: Message) -> tuple[Message, bytes] | None:
        hook = self.admission.settle_hook
        if not getattr(hook, "settles_before_headers", False) or message["status"] >= 400:
            return None
        # x402 `exact`: the settlement's proof travels in a response header, so the payment
        # settles now, with the images built and the client still connected.
        try:
            await self.service._settle(self.admission, Outcome.DELIVERED, self.timings)
        except MuranoError as exc:
            self.gone()
            body = json.dumps(error_body(exc)).encode()
            headers = {**exc.headers, "content-type": "application/json"}
            headers["content-length"] = str(len(body))
            start: Message = {
                "type": "http.response.start",
                "status": status_for(exc),
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
            return start, body
        message["headers"] = [
            *message.get("headers", []),
            *(
                (k.lower().encode(), v.encode())
                for k, v in self.admission.headers.items()
                if k.lower().startswith(("payment-response", "x-payment-response"))
            ),
        ]
        return None

    async def finish(self, delivered: bool) -> str:
        engine = self.service.engine
        if self.job is None:
            outcome = Outcome.DELIVERED if delivered else Outcome.CANCELLED
        elif delivered and engine.deliver(self.job):
            outcome = Outcome.DELIVERED
        else:
            engine.cancel(self.job)
            outcome = Outcome.CANCELLED
        try:
            await self.service._settle(self.admission, outcome, self.timings)
        except Exception:
            log.exception("settling a response failed (outcome %s)", outcome)
        if self.job is None:
            return "delivered" if delivered else "cancelled"
        return self.job.state.value


def _outcome_of(exc: BaseException) -> Outcome:
    if isinstance(exc, JobCancelled | ShuttingDown | asyncio.CancelledError):
        return Outcome.CANCELLED
    if isinstance(exc, DeadlineExceeded):
        return Outcome.TIMEOUT
    if isinstance(exc, ContentViolation):
        return Outcome.CONTENT_VIOLATION
    return Outcome.FAILED
