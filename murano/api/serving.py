"""The generation service behind both image endpoints: check the request against the model,
admit and charge the caller, queue the job, wait for it (dropping it if the client goes
away), and settle the charge — committed only when images are delivered."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial

from murano import __version__
from murano.accounts.base import Accounts, Admission, Charge, Outcome, Principal
from murano.catalog.check import GenerationParams, ImageRequest, check
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.engine import Engine
from murano.engine.job import GenerationJob, JobTimings
from murano.errors import (
    DeadlineExceeded,
    JobCancelled,
    ModelUnavailable,
    MuranoError,
)
from murano.gateway import Gateway, UpstreamRequest
from murano.imaging.encode import ImageFormat, encode
from murano.imaging.metadata import ImageMetadata
from murano.imaging.placeholder import blacked_out, violation_placeholder_png
from murano.postprocess import OutputOptions, Rendered, render

__all__ = ["Generated", "ImageService", "OutputRequest", "PaymentGate"]

log = logging.getLogger("murano.api")

# The x402 layer, when enabled: given an anonymous principal and the priced request, it
# either raises PaymentRequired or returns an admission backed by a verified payment.
PaymentGate = Callable[[Principal, Charge], Awaitable[Admission]]


@dataclass(frozen=True, slots=True)
class OutputRequest:
    fmt: ImageFormat
    safe_mode: bool
    hide_watermark: bool
    embed_metadata: bool
    style_preset: str | None = None
    binary: bool = False


@dataclass(slots=True)
class Generated:
    entry: ModelEntry
    params: GenerationParams
    rendered: Rendered
    timings: JobTimings
    admission: Admission
    content_violation: bool = False

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self.admission.headers)
        headers["x-venice-model-id"] = self.entry.id
        headers["x-venice-model-name"] = self.entry.model_spec.name
        headers["x-venice-is-blurred"] = _flag(self.rendered.blurred)
        headers["x-venice-is-content-violation"] = _flag(self.content_violation)
        if not self.rendered.checked:
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
        safety_available: bool,
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
        self.safety_available = safety_available
        self.blocked_terms = [term.lower() for term in blocked_terms if term]
        self.watermark = watermark
        self.allow_hide_watermark = allow_hide_watermark
        self.visible_mark = visible_mark
        self.payment_gate = payment_gate
        self.gateway = gateway

    def resolve(self, model_id: str, request: ImageRequest, *, max_side: int) -> GenerationParams:
        return check(self.catalog.get(model_id), request, max_side=max_side)

    async def generate(
        self,
        principal: Principal,
        params: GenerationParams,
        output: OutputRequest,
        *,
        received: float,
        is_disconnected: Callable[[], Awaitable[bool]],
        endpoint: str,
    ) -> Generated:
        entry = self.catalog.get(params.model_id)
        price = entry.model_spec.pricing.unit_price(params.resolution)
        charge = Charge(entry.id, params.images, Decimal(price), endpoint)
        admission = await self._admit(principal, charge)
        timings = JobTimings(received)
        try:
            if self._violates_policy(params):
                return await self._violation(entry, params, output, admission, timings)
            if entry.upstream is not None:
                return await self._forward(entry, params, output, admission, timings)
            job = GenerationJob(
                params=params,
                finish=partial(_finish, options=self._options(entry, params, output)),
                batch_key=self.engine.batch_key(params),
                safety_check=output.safe_mode and self.safety_available,
                timings=timings,
            )
            self.engine.submit(job)
            rendered = await self._wait(job, is_disconnected)
            if not output.safe_mode or not self.safety_available:
                rendered = Rendered(rendered.images, rendered.blurred, not output.safe_mode)
        except BaseException as exc:
            await self._settle(admission, _outcome_of(exc), timings)
            if isinstance(exc, MuranoError):
                exc.headers = {**admission.headers, **exc.headers}
            raise
        await self._settle(admission, Outcome.DELIVERED, timings)
        return Generated(entry, params, rendered, timings, admission)

    async def _admit(self, principal: Principal, charge: Charge) -> Admission:
        if principal.anonymous and self.payment_gate is not None:
            return await self.payment_gate(principal, charge)
        return await self.accounts.admit(principal, charge)

    async def _settle(self, admission: Admission, outcome: Outcome, timings: JobTimings) -> None:
        if admission.settle_hook is not None:
            # x402: a payment that cannot be settled must not buy the images, so errors
            # from the hook reach the client instead of being logged away.
            await asyncio.shield(admission.settle_hook(outcome))
            return
        try:
            await asyncio.shield(
                self.accounts.settle(admission, outcome, timings_ms=timings.as_venice())
            )
        except Exception:
            log.exception("settling a reservation failed (outcome %s)", outcome)

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
        )

    async def _wait(
        self, job: GenerationJob, is_disconnected: Callable[[], Awaitable[bool]]
    ) -> Rendered:
        """The job's result; a client that goes away before the job starts has it removed."""
        while True:
            done, _ = await asyncio.wait({job.future}, timeout=0.25)
            if done:
                result: Rendered = job.future.result()
                return result
            if job.timings.started == 0.0 and await is_disconnected():
                self.engine.cancel(job)
                raise JobCancelled()

    # -- models served by an upstream API (murano.gateway) -------------------------------

    async def _forward(
        self,
        entry: ModelEntry,
        params: GenerationParams,
        output: OutputRequest,
        admission: Admission,
        timings: JobTimings,
    ) -> Generated:
        """The upstream's images, admitted and settled like a local job's: charged only when
        delivered, released on any error (the caller's `except` above)."""
        if self.gateway is None:
            raise ModelUnavailable(entry.id, "no upstream gateway")
        request = UpstreamRequest(
            params, output.fmt, output.safe_mode, output.hide_watermark, output.embed_metadata
        )
        timings.enqueued = timings.started = time.monotonic()
        delivery = await self.gateway.generate(entry, request, self._options(entry, params, output))
        timings.generated, timings.finished = delivery.generated_at, time.monotonic()
        violation = delivery.content_violation
        outcome = Outcome.CONTENT_VIOLATION if violation else Outcome.DELIVERED
        await self._settle(admission, outcome, timings)
        return Generated(entry, params, delivery.rendered, timings, admission, violation)

    def _violates_policy(self, params: GenerationParams) -> bool:
        text = params.prompt.lower()
        return any(term in text for term in self.blocked_terms)

    async def _violation(
        self,
        entry: ModelEntry,
        params: GenerationParams,
        output: OutputRequest,
        admission: Admission,
        timings: JobTimings,
    ) -> Generated:
        """Venice's answer to a refused prompt: 200, blacked-out images (a PNG placeholder
        for binary responses), the violation header, and no charge."""
        await self._settle(admission, Outcome.CONTENT_VIOLATION, timings)
        if output.binary:
            images = [violation_placeholder_png()]
        else:
            black = blacked_out(params.width, params.height)
            images = [encode(black, output.fmt)] * params.images
        timings.enqueued = timings.started = timings.generated = timings.finished = time.monotonic()
        rendered = Rendered(images, blurred=False, checked=True)
        return Generated(entry, params, rendered, timings, admission, content_violation=True)


def _finish(images: object, flags: object, *, options: OutputOptions) -> Rendered:
    return render(images, flags, options)  # type: ignore[arg-type]


def _outcome_of(exc: BaseException) -> Outcome:
    if isinstance(exc, JobCancelled | asyncio.CancelledError):
        return Outcome.CANCELLED
    if isinstance(exc, DeadlineExceeded):
        return Outcome.TIMEOUT
    return Outcome.FAILED
