"""`murano serve --ray`: start a local Ray cluster (or join one at `address`), run murano
as a Serve application on it, and on SIGTERM/SIGINT delete the application (Serve lets
in-flight requests finish: the ingress drains its jobs) and stop what was started.

The state every replica must share lives where it already can: keys, balances, usage and
async jobs in PostgreSQL, rate limits in Redis. `check_shared_state` refuses anything else.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from murano.settings import Settings

__all__ = ["SharedStateMissing", "check_shared_state", "serve_on_ray"]

log = logging.getLogger("murano.distributed")


class SharedStateMissing(Exception):
    """`--ray` was asked for without PostgreSQL and Redis; the message says what to set."""


def check_shared_state(settings: Settings) -> None:
    problems = []
    if settings.accounts_backend != "sql":
        problems.append(
            "MURANO_ACCOUNTS_BACKEND=static keeps keys in each process and no balances: "
            "use the default (sql) with PostgreSQL"
        )
    url = settings.database_url or ""
    if not url.startswith(("postgresql", "postgres:")):
        where = "SQLite is a file on one machine" if "sqlite" in url or not url else url
        problems.append(
            "keys, balances, usage and jobs must be in PostgreSQL, which every replica "
            f"reaches ({where}): set --database-url (MURANO_DATABASE_URL) to a "
            "postgresql:// URL"
        )
    if not settings.redis_url:
        problems.append(
            "rate limits must be shared in Redis: set --redis-url (MURANO_REDIS_URL) to a "
            "redis:// URL every replica reaches"
        )
    if problems:
        raise SharedStateMissing(
            "murano serve --ray needs shared state:\n" + "\n".join(f"  - {p}" for p in problems)
        )


def serve_on_ray(settings: Settings, address: str | None) -> None:
    """Run until SIGTERM or SIGINT. `address` None: a Ray cluster of this machine alone,
    started here (its files under `<data dir>/ray`) and stopped on the way out."""
    check_shared_state(settings)
    # Ray reports usage to its authors unless told not to; murano never phones home.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray import serve

    from murano.app import build_settings_catalog
    from murano.distributed.application import APP_NAME, build_application

    catalog = build_settings_catalog(settings)
    _init_ray(ray, settings, address)
    try:
        serve.start(http_options={"host": settings.host, "port": settings.port})
        gpus = float(ray.cluster_resources().get("GPU", 0))  # type: ignore[no-untyped-call]
        app = build_application(settings, catalog, cluster_gpus=gpus)
        stop = _stop_on_signals()
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        log.info("murano on Ray Serve: http://%s:%d/", settings.host, settings.port)
        while not stop.wait(0.5):
            pass
        log.info("shutting down: draining the Serve application")
        serve.delete(APP_NAME)
    finally:
        if address is None:
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()


def _init_ray(ray: Any, settings: Settings, address: str | None) -> None:
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return
    options: dict[str, Any] = {}
    if settings.ray_object_store_mb is not None:
        options["object_store_memory"] = settings.ray_object_store_mb * 1024 * 1024
    temp_dir = settings.data_dir / "ray"
    temp_dir.mkdir(parents=True, exist_ok=True)
    # "local": never join a cluster a stale `ray start` left a pointer to.
    ray.init(
        address="local",
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        **options,
    )


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handle)
    return stop
