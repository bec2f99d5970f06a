"""`murano serve`: run the API server (uvicorn) on the configured models."""

from __future__ import annotations

import argparse
import logging
import os
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
    _show_load_progress()
    app = create_app(settings)
    if settings.playground:
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        logging.getLogger("murano").info("playground: http://%s:%d/", host, settings.port)
    run_server(app, settings)
    return 0


def run_server(app: Any, settings: Any) -> None:
    """Serve `app` with uvicorn behind the edge limits of `settings` (`murano.edge`)."""
    import uvicorn

    from murano.edge import EdgeLimits, edge_protocol

    limits = EdgeLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        max_connections=settings.max_connections,
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
        # h11 (not httptools): it bounds the header block; `edge` adds the rest.
        http=edge_protocol(limits),
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keep_alive_s,
    )
