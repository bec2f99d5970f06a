"""`murano serve`: run the API server (uvicorn) on the configured models.

On SIGTERM or SIGINT the server drains before it stops: it keeps accepting connections,
`/readyz` answers 503 and new generation requests get 503 + `Retry-After`, while the jobs
in flight have up to `MURANO_DRAIN_TIMEOUT_S` (30 s) to be delivered; the rest are cancelled
(a Venice-shaped 503; their reservations released), and then uvicorn shuts down. A second
SIGINT stops at once."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

__all__ = ["register"]


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


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from murano.app import create_app

    settings = _settings_from(args)
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        # Drained already: what is left are responses being written.
        timeout_graceful_shutdown=10,
    )
    server = _draining_server(config, app.state.engine, settings.drain_timeout_s)
    server.run()
    return 0


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
