"""`create_app`: the ASGI app. Nothing is built at import time; every pluggable part (engine,
accounts, safety classifier, payments) can be handed in, and real ones are built from the
settings otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Hashable
from typing import Any

from fastapi import FastAPI

from murano import __version__
from murano.accounts.base import Accounts
from murano.accounts.jobs import JobStore
from murano.api import health, image, models, postops
from murano.api.async_jobs import build_jobs
from murano.api.delivery import DeliveryGuard
from murano.api.errors import install_error_handlers
from murano.api.middleware import BodyGuard, Compression, RequestContext
from murano.api.serving import ImageService, PaymentGate
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.backend import Backend
from murano.engine.engine import Engine
from murano.engine.job import Inspector
from murano.engine.params import GenerationParams
from murano.engine.scheduler import SchedulerConfig
from murano.gateway import Gateway
from murano.metrics import Metrics
from murano.safety.policy import SafetyPolicy
from murano.settings import Settings

__all__ = ["build_engine", "build_inspector", "build_settings_catalog", "create_app"]

log = logging.getLogger("murano")


def build_settings_catalog(settings: Settings) -> Catalog:
    """The catalog from settings: the models file and `--model` entries, or the embedded
    tiny models when none is configured (built on first start)."""
    from murano.catalog.build import build_catalog, default_entry

    default = None
    extras: list[ModelEntry] = []
    if settings.default_replicas != 1 and settings.devices is None:
        raise ValueError("MURANO_DEFAULT_REPLICAS needs MURANO_DEVICES (one replica per device)")
    if settings.models_file is None and not settings.model_sources:
        from murano.engine.tiny import (
            DEFAULT_MODEL_CFG,
            DEFAULT_MODEL_STEPS,
            build_default_model,
            build_default_postops,
        )

        model_dir = build_default_model(settings.default_model_dir)
        default = default_entry(model_dir, steps=DEFAULT_MODEL_STEPS, cfg_scale=DEFAULT_MODEL_CFG)
        if settings.devices is not None:
            # MURANO_DEFAULT_REPLICAS copies, on any of MURANO_DEVICES (not only the CPU).
            update = {"replicas": settings.default_replicas, "device": "auto"}
            default = default.model_copy(update=update)
        extras = build_default_postops(settings.data_dir / "models")
    return build_catalog(settings.models_file, settings.model_sources, default, extras)


def build_engine(
    settings: Settings,
    metrics: Metrics,
    catalog: Catalog | None = None,
) -> Engine:
    """The real engine: the catalog from settings (or `catalog`) and diffusers, upscaler
    and background-removal backends."""
    from murano.engine.families import batch_key

    catalog = catalog or build_settings_catalog(settings)
    engine: Engine

    def factory(entry: ModelEntry) -> Backend:
        # MURANO_DEVICE is the device of every entry that says "auto".
        if entry.device == "auto" and settings.device != "auto":
            entry = entry.model_copy(update={"device": settings.device})
        return _load_backend(entry, engine)

    def key(entry: ModelEntry, params: GenerationParams) -> tuple[Hashable, ...]:
        # Upscales and cut-outs run one image at a time whatever their sizes.
        return batch_key(entry, params) if entry.type == "image" else (params.task,)

    devices = None
    if settings.devices is not None:
        from murano.engine.devices import parse_devices

        devices = parse_devices(settings.devices)
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    engine = Engine(
        catalog,
        factory,
        devices=devices,
        torch_threads=settings.torch_threads,
        config=SchedulerConfig(
            max_batch_images=settings.max_batch_images,
            batch_wait_s=settings.batch_wait_ms / 1000,
            batch_refill_s=settings.batch_refill_ms / 1000,
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
        batch_key=key,
        load_retry_s=settings.load_retry_s,
        load_retry_max_s=settings.load_retry_max_s,
    )
    return engine


def _load_backend(entry: ModelEntry, engine: Engine) -> Backend:
    """The backend of an entry, by its type; an upscaler gets its creativity pass."""
    from murano.engine.diffusers_backend import load_backend, resolve_device

    if entry.type == "image":
        return load_backend(entry)
    device = resolve_device(entry.device)
    if entry.type == "background-remove":
        from murano.engine.segment import load_segment_backend

        return load_segment_backend(entry)
    from murano.catalog.postops import upscale_options
    from murano.engine.upscale import creativity_refiner, load_upscale_backend

    options = upscale_options(entry)
    refiner = None
    if options.creativity:
        image_model = engine.catalog.get(options.creativity_model or engine.catalog.default_id)
        # The image model's replica on the upscaler's own device, where there is one.
        refiner = creativity_refiner(image_model, lambda: engine.local_backend(image_model.id))
    return load_upscale_backend(entry, device, refiner)


def build_inspector(settings: Settings) -> Inspector | None:
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
    gateway: Gateway | None = None,
    job_store: JobStore | None = None,
) -> FastAPI:
    metrics = metrics or (engine.metrics if engine is not None else Metrics())
    # Safe mode's one home: every job's decision comes from this policy, whoever built the
    # engine (the engine and the gateway run the classifier a job's decision names).
    safety = SafetyPolicy(inspector or build_inspector(settings))
    if engine is None:
        engine = build_engine(settings, metrics)
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
    gateway = gateway or Gateway(metrics=metrics)
    service = ImageService(
        engine.catalog,
        engine,
        accounts,
        safety=safety,
        blocked_terms=settings.blocked_terms,
        watermark=settings.watermark,
        allow_hide_watermark=settings.allow_hide_watermark,
        visible_mark=settings.visible_watermark,
        payment_gate=payment_gate,
        gateway=gateway,
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
            await gateway.close()
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
    if settings.playground:
        from murano.api import playground

        app.include_router(playground.router)
    if payment_gate is not None:
        from murano.api import x402

        app.include_router(x402.router)
    app.add_middleware(
        BodyGuard, max_bytes=settings.max_body_bytes, max_upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(Compression)
    # Outside compression, so it sees the bytes that really go out; inside the request
    # context, so the access log knows how the request ended.
    app.add_middleware(DeliveryGuard)
    app.add_middleware(RequestContext, metrics=metrics)
    if settings.cors_origins:
        _add_cors(app, settings.cors_origins)
    return app


# What a browser client may read besides the CORS-safelisted headers.
_EXPOSED_HEADERS = [
    "CF-RAY",
    "x-request-id",
    "x-venice-version",
    "x-venice-timestamp",
    "x-venice-model-id",
    "x-venice-model-name",
    "x-venice-is-blurred",
    "x-venice-is-content-violation",
    "x-venice-balance-usd",
    "x-murano-safety-checked",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "Retry-After",
    "Location",
    "PAYMENT-REQUIRED",
    "PAYMENT-RESPONSE",
    "X-PAYMENT-RESPONSE",
]


def _add_cors(app: FastAPI, origins: list[str]) -> None:
    """Outermost, so that preflights are answered before any guard and every response,
    errors included, carries the headers a browser needs to read it."""
    from fastapi.middleware.cors import CORSMiddleware

    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Accept",
            "Prefer",
            "PAYMENT-SIGNATURE",
            "X-PAYMENT",
            "SIGN-IN-WITH-X",
        ],
        expose_headers=_EXPOSED_HEADERS,
        max_age=600,
    )


def _routers() -> list[Any]:
    from murano.api import admin, edit, jobs

    return [
        image.router,
        jobs.router,
        edit.router,
        postops.router,
        models.router,
        health.router,
        admin.router,
    ]
