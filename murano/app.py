"""`create_app`: the ASGI app. Nothing is built at import time; every pluggable part (engine,
accounts, safety classifier, payments) can be handed in, and real ones are built from the
settings otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from murano import __version__
from murano.accounts.base import Accounts
from murano.accounts.jobs import JobStore
from murano.api import health, image, models
from murano.api.async_jobs import build_jobs
from murano.api.delivery import DeliveryGuard
from murano.api.errors import install_error_handlers
from murano.api.middleware import BodyGuard, Compression, RequestContext
from murano.api.serving import ImageService, PaymentGate
from murano.catalog.entries import ModelEntry
from murano.engine.backend import Backend
from murano.engine.engine import Engine
from murano.engine.scheduler import Inspector, SchedulerConfig
from murano.metrics import Metrics
from murano.settings import Settings

__all__ = ["build_engine", "create_app"]

log = logging.getLogger("murano")


def build_engine(settings: Settings, metrics: Metrics, inspector: Inspector | None) -> Engine:
    """The real engine: the catalog from settings (the embedded tiny model when none is
    configured, built on first start) and diffusers backends."""
    from murano.catalog.build import build_catalog, default_entry
    from murano.engine.diffusers_backend import load_backend
    from murano.engine.families import batch_key

    default = None
    if settings.models_file is None and not settings.model_sources:
        from murano.engine.tiny import DEFAULT_MODEL_CFG, DEFAULT_MODEL_STEPS, build_default_model

        model_dir = build_default_model(settings.default_model_dir)
        default = default_entry(model_dir, steps=DEFAULT_MODEL_STEPS, cfg_scale=DEFAULT_MODEL_CFG)
    catalog = build_catalog(settings.models_file, settings.model_sources, default)

    def factory(entry: ModelEntry) -> Backend:
        # MURANO_DEVICE is the device of every entry that says "auto".
        if entry.device == "auto" and settings.device != "auto":
            entry = entry.model_copy(update={"device": settings.device})
        return load_backend(entry)

    return Engine(
        catalog,
        factory,
        config=SchedulerConfig(
            max_batch_images=settings.max_batch_images,
            batch_wait_s=settings.batch_wait_ms / 1000,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            max_pending_batches=settings.max_pending_batches,
        ),
        metrics=metrics,
        max_resident=settings.max_resident_models,
        memory_budget_bytes=None
        if settings.memory_budget_gb is None
        else int(settings.memory_budget_gb * 1e9),
        postprocess_threads=settings.postprocess_threads,
        inspector=inspector,
        batch_key=batch_key,
        load_retry_s=settings.load_retry_s,
        load_retry_max_s=settings.load_retry_max_s,
    )


def _build_inspector(settings: Settings) -> Inspector | None:
    if not settings.safety_classifier:
        log.warning(
            "no safety classifier configured (MURANO_SAFETY_CLASSIFIER): safe_mode cannot be "
            "honoured; responses carry x-murano-safety-checked: false"
        )
        return None
    from murano.safety import TransformersClassifier

    classifier = TransformersClassifier(
        settings.safety_classifier, threshold=settings.safety_threshold, device=settings.device
    )
    return classifier.flag


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    accounts: Accounts | None = None,
    inspector: Inspector | None = None,
    payment_gate: PaymentGate | None = None,
    metrics: Metrics | None = None,
    job_store: JobStore | None = None,
) -> FastAPI:
    metrics = metrics or (engine.metrics if engine is not None else Metrics())
    if engine is None:
        inspector = inspector or _build_inspector(settings)
        engine = build_engine(settings, metrics, inspector)
    if accounts is None:
        from murano.accounts import build_accounts

        model_rpm = {entry.id: entry.rpm for entry in engine.catalog if entry.rpm is not None}
        accounts = build_accounts(settings, model_rpm=model_rpm)
    if payment_gate is None and settings.x402_pay_to:
        from murano.payments import build_payment_gate, build_wallet_ledger

        payment_gate = build_payment_gate(settings, wallets=build_wallet_ledger(settings, accounts))
    if not accounts.auth_required:
        log.warning(
            "AUTHENTICATION IS OFF (--no-auth): anyone who can reach this server can use it"
        )
    service = ImageService(
        engine.catalog,
        engine,
        accounts,
        safety_available=inspector is not None,
        blocked_terms=settings.blocked_terms,
        watermark=settings.watermark,
        allow_hide_watermark=settings.allow_hide_watermark,
        visible_mark=settings.visible_watermark,
        payment_gate=payment_gate,
    )
    jobs = build_jobs(settings, service, accounts, store=job_store)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await accounts.start()  # prints the bootstrap admin key on a first start
        # Models load in the background so /healthz answers at once; /readyz waits.
        loading = asyncio.get_running_loop().create_task(engine.start())
        await jobs.start()
        try:
            yield
        finally:
            # Normally `murano serve` has drained already (on SIGTERM); this covers the rest.
            await engine.drain(settings.drain_timeout_s)
            await jobs.close()
            loading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await loading
            await engine.close()
            await accounts.close()
            close_gate = getattr(payment_gate, "close", None)
            if close_gate is not None:
                await close_gate()

    app = FastAPI(
        title="murano",
        version=__version__,
        description="Venice-compatible image generation API",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.accounts = accounts
    app.state.metrics = metrics
    app.state.service = service
    app.state.jobs = jobs
    app.state.model_ids = [entry.id for entry in engine.catalog]
    install_error_handlers(app)
    for router in _routers():
        app.include_router(router)
    if payment_gate is not None:
        from murano.api import x402
        from murano.payments import X402Context

        app.include_router(x402.router)
        app.add_middleware(X402Context)
    app.add_middleware(BodyGuard, max_bytes=settings.max_body_bytes)
    app.add_middleware(Compression)
    # Outside compression, so it sees the bytes that really go out; inside the request
    # context, so the access log knows how the request ended.
    app.add_middleware(DeliveryGuard)
    app.add_middleware(RequestContext, metrics=metrics)
    return app


def _routers() -> list[Any]:
    from murano.api import admin, jobs

    return [image.router, jobs.router, models.router, health.router, admin.router]
