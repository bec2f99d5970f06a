"""`murano serve`: run the API server (uvicorn) on the configured models.

On SIGTERM or SIGINT the server drains before it stops: it keeps accepting connections,
`/readyz` answers 503 and new generation requests get 503 + `Retry-After`, while the jobs
in flight have up to `MURANO_DRAIN_TIMEOUT_S` (30 s) to be delivered; the rest are cancelled
(a Venice-shaped 503; their reservations released), and then uvicorn shuts down. A second
SIGINT stops at once.

`murano serve --ray` runs the same app as the ingress of a Ray Serve application, with one
deployment per model (`murano.distributed`); it needs PostgreSQL and Redis."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run_server"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the API server",
        description="Run the Venice-compatible API server. Every option is also a MURANO_* "
        "environment variable (MURANO_HOST, MURANO_PORT, ...).",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--models", type=Path, dest="models_file", help="models TOML file")
    parser.add_argument(
        "--model",
        action="append",
        dest="model_sources",
        metavar="ID=SOURCE",
        help="serve a model without a models file (repeatable); SOURCE is a hub repo id, "
        "a local directory or a .safetensors file",
    )
    parser.add_argument(
        "--data-dir", type=Path, help="where the embedded model and the key database live"
    )
    parser.add_argument("--database-url", help="PostgreSQL URL for keys and balances")
    parser.add_argument("--redis-url", help="Redis URL for shared rate limits")
    parser.add_argument(
        "--no-auth", action="store_true", help="turn API-key checks off (local use only)"
    )
    parser.add_argument("--log-level", help="debug, info, warning, error")
    parser.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray Serve: one deployment per model, its replicas placed by Ray "
        "(needs --database-url to PostgreSQL and --redis-url)",
    )
    parser.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="with --ray: join the Ray cluster at ADDR (e.g. ray://head:10001 or auto) "
        "instead of starting one on this machine",
    )
    parser.set_defaults(func=_serve)


def _settings_from(args: argparse.Namespace) -> Any:
    from murano.settings import Settings

    overrides: dict[str, Any] = {
        name: value
        for name in (
            "host",
            "port",
            "models_file",
            "model_sources",
            "data_dir",
            "database_url",
            "redis_url",
            "log_level",
        )
        if (value := getattr(args, name, None)) is not None
    }
    if args.no_auth:
        overrides["auth"] = False
    return Settings(**overrides)


def _show_load_progress() -> None:
    """Keep diffusers' and huggingface_hub's own progress bars on (they go to stderr, with
    the log), so that a model's first download and its loading are never silent. Set
    HF_HUB_DISABLE_PROGRESS_BARS=1 to turn them off."""
    if os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").lower() in ("1", "true", "yes"):
        return
    import diffusers.utils.logging
    from huggingface_hub.utils.tqdm import enable_progress_bars

    enable_progress_bars()
    diffusers.utils.logging.enable_progress_bar()


def _serve(args: argparse.Namespace) -> int:
    from murano.app import create_app

    settings = _settings_from(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if args.ray or args.ray_address:
        return _serve_on_ray(settings, args.ray_address)
    _show_load_progress()
    app = create_app(settings)
    if settings.playground:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        logging.getLogger("murano").info("playground: http://%s:%d/", host, settings.port)
    run_server(app, settings)
    return 0


def _serve_on_ray(settings: Any, address: str | None) -> int:
    from murano.distributed.cluster import SharedStateMissing, check_shared_state

    try:
        check_shared_state(settings)
    except SharedStateMissing as exc:
        print(f"murano: {exc}", file=sys.stderr)
        return 2
    if importlib.util.find_spec("ray") is None:
        print("murano: --ray needs Ray Serve: pip install 'murano-server[ray]'", file=sys.stderr)
        return 2
    from murano.distributed.cluster import serve_on_ray

    serve_on_ray(settings, address)
    return 0


def run_server(app: Any, settings: Any) -> None:
    """Serve `app` with uvicorn behind the edge limits of `settings` (`murano.edge`), with
    a drain of the engine between the first SIGTERM/SIGINT and shutdown."""
    import uvicorn

    from murano.edge import EdgeLimits, edge_protocol

    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        # Drained already: what is left are responses being written.
        timeout_graceful_shutdown=10,
        # h11 (not httptools): it bounds the header block; `edge` adds the rest.
        http=edge_protocol(limits),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_s,
    )
    server = _draining_server(config, app.state.engine, settings.drain_timeout_s)
    server.run()


def _draining_server(config: Any, engine: Any, drain_timeout_s: float) -> Any:
    import asyncio
    import signal

    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn, with a drain of the engine between the first signal and shutdown."""

        draining = False
        loop: asyncio.AbstractEventLoop | None = None

        async def serve(self, sockets: Any = None) -> None:
            self.loop = asyncio.get_running_loop()
            await super().serve(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            first = sig in (signal.SIGTERM, signal.SIGINT) and not self.draining
            if not first or self.loop is None:
                super().handle_exit(sig, frame)
                return
            self.draining = True
            self._captured_signals.append(sig)
            self.loop.call_soon_threadsafe(self._start_drain)

        def _start_drain(self) -> None:
            assert self.loop is not None
            self._drain_task = self.loop.create_task(self._drain())

        async def _drain(self) -> None:
            logging.getLogger("murano").info(
                "shutting down: draining jobs in flight (up to %.0f s)", drain_timeout_s
            )
            try:
                await engine.drain(drain_timeout_s)
            finally:
                self.should_exit = True

    return DrainingServer(config)
