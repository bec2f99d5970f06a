"""The Serve application `murano serve --ray` runs: one deployment per model with weights
(`ModelReplica`s, sized by the entry's `[models.ray]` table) and the ingress deployment,
which is murano's usual FastAPI app on a `ServeEngine` that calls them. Models served by an
upstream API stay in the ingress, as they do in a single server."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI

from murano.catalog.entries import Catalog, ModelEntry
from murano.catalog.postops import upscale_options
from murano.distributed.remote import ServeEngine, ServeHandle
from murano.distributed.replica import ServedModelReplica
from murano.engine.scheduler import SchedulerConfig
from murano.settings import Settings

__all__ = [
    "APP_NAME",
    "INGRESS_NAME",
    "Ingress",
    "app_builder",
    "build_application",
    "deployment_name",
    "model_deployment_options",
]

APP_NAME = "murano"
INGRESS_NAME = "murano-ingress"
# How often Serve checks a replica: a dead one is seen (and replaced) within seconds.
HEALTH_CHECK_PERIOD_S = 1.0


def deployment_name(model_id: str) -> str:
    return "model-" + re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)


def _replicas(entry: ModelEntry) -> int:
    """The most replicas the model's deployment may have."""
    scaling = entry.ray.autoscaling
    return scaling.max_replicas if scaling is not None else entry.ray.num_replicas or 1


def model_deployment_options(
    entry: ModelEntry, settings: Settings, *, cluster_gpus: float
) -> dict[str, Any]:
    """Serve's options for a model's deployment. Without `num_gpus`, a replica takes one
    whole GPU where the cluster has any and the model is not pinned to the CPU."""
    ray = entry.ray
    gpus = ray.num_gpus
    if gpus is None:
        gpus = 1.0 if cluster_gpus > 0 and entry.device != "cpu" else 0.0
    cpus = ray.num_cpus if ray.num_cpus is not None else 1.0 if entry.type == "image" else 0.5
    options: dict[str, Any] = {
        "name": deployment_name(entry.id),
        "ray_actor_options": {"num_cpus": cpus, "num_gpus": gpus},
        # Serve hands a replica at most this many requests at once: enough to fill its
        # queue and one batch, so that murano's scheduler (not Serve) does the batching.
        "max_ongoing_requests": settings.max_queue + settings.max_batch_images,
        "health_check_period_s": HEALTH_CHECK_PERIOD_S,
        "graceful_shutdown_timeout_s": settings.drain_timeout_s,
    }
    if ray.autoscaling is not None:
        options["autoscaling_config"] = {
            "min_replicas": ray.autoscaling.min_replicas,
            "max_replicas": ray.autoscaling.max_replicas,
            "target_ongoing_requests": ray.autoscaling.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = ray.num_replicas or 1
    return options


def _replica_catalog(catalog: Catalog, entry: ModelEntry) -> tuple[list[ModelEntry], str]:
    """What a replica of `entry` serves: the model itself; an upscaler also the image model
    of its creativity pass (loaded on the first request that asks for creativity), and a
    background remover the default image model, never loaded (a catalog needs one)."""
    if entry.type == "image":
        return [entry], entry.id
    image_id = catalog.default_id
    if entry.type == "upscale":
        image_id = upscale_options(entry).creativity_model or image_id
    image_model = catalog.get(image_id).model_copy(update={"load": "first-use"})
    return [entry, image_model], image_model.id


class Ingress:
    """The ingress deployment: the FastAPI app of `murano.app.create_app`, built in the
    replica (Serve wraps the app object it is given), on a `ServeEngine`."""

    def __init__(
        self,
        settings: Settings,
        entries: list[ModelEntry],
        default_id: str,
        handles: dict[str, Any],
        capacity: dict[str, int],
    ) -> None:
        self._settings = settings
        self._catalog = Catalog(entries, default_id)
        self._handles = handles
        self._capacity = capacity

    async def __serve_build_asgi_app__(self) -> FastAPI:
        from murano.app import build_inspector, create_app

        settings = self._settings
        engine = ServeEngine(
            self._catalog,
            {model_id: ServeHandle(handle) for model_id, handle in self._handles.items()},
            capacity=self._capacity,
            config=SchedulerConfig(timeout_s=settings.request_timeout_s),
            postprocess_threads=settings.postprocess_threads,
        )
        # The replicas run the classifier on their images; the ingress needs its own only
        # for upstream models' images (and to tell clients that safe mode is honoured).
        inspector = build_inspector(settings) if settings.safety_classifier else None
        return create_app(settings, engine=engine, inspector=inspector)


def build_application(settings: Settings, catalog: Catalog, *, cluster_gpus: float) -> Any:
    """The bound Serve application (for `serve.run`)."""
    from ray import serve

    handles: dict[str, Any] = {}
    capacity: dict[str, int] = {}
    for entry in catalog:
        if entry.upstream is not None:
            continue
        options = model_deployment_options(entry, settings, cluster_gpus=cluster_gpus)
        entries, default_id = _replica_catalog(catalog, entry)
        threads = max(1, int(options["ray_actor_options"]["num_cpus"]))
        deployment = serve.deployment(**options)(ServedModelReplica)
        handles[entry.id] = deployment.bind(settings, entry.id, entries, default_id, threads)
        capacity[entry.id] = settings.max_queue * _replicas(entry)
    ingress = serve.deployment(
        name=INGRESS_NAME,
        num_replicas=1,
        ray_actor_options={"num_cpus": 0},
        max_ongoing_requests=settings.max_connections,
        health_check_period_s=HEALTH_CHECK_PERIOD_S,
        # Its lifespan drains the jobs in flight before it stops.
        graceful_shutdown_timeout_s=settings.drain_timeout_s + 10,
    )(serve.ingress()(Ingress))
    return ingress.bind(settings, list(catalog), catalog.default_id, handles, capacity)


def app_builder(args: dict[str, Any]) -> Any:
    """The application for a Serve config file or a KubeRay `RayService`
    (`import_path: murano.distributed.application:app_builder`): settings from the
    MURANO_* environment of the cluster's processes, overridden by the config's `args`
    (`models_file`, `max_queue`, ...). Refuses, as `murano serve --ray` does, to run
    without PostgreSQL and Redis."""
    import ray

    from murano.app import build_settings_catalog
    from murano.distributed.cluster import check_shared_state

    settings = Settings(**args)
    check_shared_state(settings)
    gpus = float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
    return build_application(settings, build_settings_catalog(settings), cluster_gpus=gpus)
