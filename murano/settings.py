"""Every setting murano has. Each is a `MURANO_*` environment variable (`MURANO_PORT`, …);
the CLI's flags override them. Built by the CLI or the test, never at import time."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["Settings"]


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MURANO_", extra="ignore")

    # Server
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("~/.local/share/murano").expanduser()
    models_file: Path | None = None
    # `--model ID=SOURCE`, repeatable; served next to (or instead of) the models file.
    model_sources: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = 1_048_576
    # Bodies of the routes that take input images (edit, multi-edit, upscale, background
    # removal, OpenAI edits): several images of up to 25 MB each, base64 or multipart.
    max_upload_bytes: int = 104_857_600
    log_level: str = "info"
    # The HTTP edge (murano serve): request-header size and count (431 beyond), how long a
    # client may take to send its headers and its body (408 / closed), how many
    # connections are served at once (503 beyond), idle keep-alive.
    max_header_bytes: int = Field(default=16_384, ge=1024)
    max_headers: int = Field(default=100, ge=1)
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    max_connections: int = Field(default=1000, ge=1)
    keep_alive_s: int = Field(default=5, ge=1)
    # The browser playground at `/` (MURANO_PLAYGROUND=false turns it off).
    playground: bool = True
    # Origins allowed to call the API from a browser (CORS), comma-separated; `*` for any.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Auth: keys from settings (comma-separated in MURANO_API_KEYS) unless a database is used.
    auth: bool = True
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list)
    accounts_backend: Literal["static", "sql"] = "sql"
    database_url: str | None = None
    redis_url: str | None = None
    default_rpm: int = 20
    failure_budget: int = 20
    failure_window_s: int = 30
    # Faults: a server silent (no heartbeat) for this long loses its reservations to the
    # others; waits on the database / Redis; Retry-After of the 503 an outage answers.
    reservation_lease_s: float = Field(default=60.0, gt=0)
    database_timeout_s: float = Field(default=5.0, gt=0)
    redis_timeout_s: float = Field(default=2.0, gt=0)
    outage_retry_after_s: int = Field(default=5, ge=1)

    # Engine
    device: str = "auto"
    # One device worker (thread) per device: `auto` (every visible CUDA device, else the
    # CPU) or a comma-separated list (`cuda:0,cuda:1`; `cpu,cpu` for tests). None: one
    # worker, and each model on its own `device` (MURANO_DEVICE).
    devices: str | None = None
    # Replicas of the embedded model when no models file is given (`all`: one per device).
    default_replicas: int | Literal["all"] = Field(default=1)
    # torch's intra-op threads, set once for the whole process (torch's setting is
    # process-wide, not per device thread); None: torch's default.
    torch_threads: int | None = Field(default=None, ge=1)
    max_batch_images: int = 8
    batch_wait_ms: float = 0.0
    # After a batch of n > 1 images, a free worker waits up to this long for n images more
    # than were queued when it finished (see murano.engine.scheduler).
    batch_refill_ms: float = Field(default=50.0, ge=0)
    max_queue: int = 64
    request_timeout_s: float = 300.0
    postprocess_threads: int = 2
    max_resident_models: int = 2
    # The worker pauses while more finished batches than this wait for post-processing.
    max_pending_batches: int = 2
    # A failed model load is retried after this many seconds, doubling up to the maximum.
    load_retry_s: float = 30.0
    load_retry_max_s: float = 600.0
    # On SIGTERM/SIGINT: how long jobs in flight may take before they are cancelled.
    drain_timeout_s: float = 30.0
    # Cap on the weights of all resident models together (GB); None: no cap.
    memory_budget_gb: float | None = None

    # Input images given as URLs: host patterns allowed (none: URL inputs are refused),
    # the time one fetch may take, and the most bytes it may read.
    fetch_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    fetch_timeout_s: float = 10.0
    fetch_max_bytes: int = 25 * 1024 * 1024

    # Post-processing (safety, watermark, metadata)
    safety_classifier: str | None = None
    safety_threshold: float = 0.5
    blocked_terms: Annotated[list[str], NoDecode] = Field(default_factory=list)
    watermark: bool = True
    allow_hide_watermark: bool = True
    visible_watermark: str | None = None

    # Async jobs and webhooks: results kept this long; webhook hosts allowed (patterns);
    # the Standard Webhooks signing secret (whsec_…; else `<data_dir>/webhook_secret`).
    job_ttl_s: float = Field(default=3600.0, gt=0)
    webhook_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)
    webhook_secret: str | None = None

    # `murano serve --ray` on a cluster of its own: Ray's object store size (MB; None: Ray's
    # default, 30% of memory).
    ray_object_store_mb: int | None = Field(default=None, ge=64)

    # x402 payments
    x402_pay_to: str | None = None
    x402_networks: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["eip155:8453"])
    x402_asset: str | None = None
    x402_facilitator_url: str = "https://x402.org/facilitator"
    # Wallet credits (top-up, then Sign-In-With-X); kept in the SQL accounts database only.
    x402_wallets: bool = False

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: str | None) -> str | None:
        if value is not None:
            from murano.engine.devices import parse_devices

            # `auto` is resolved when the engine is built (it asks torch how many GPUs).
            parse_devices(value, cuda_count=lambda: 0)
        return value

    @field_validator("default_replicas")
    @classmethod
    def _check_replicas(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("MURANO_DEFAULT_REPLICAS must be at least 1, or all")
        return value

    _csv = field_validator(
        "api_keys",
        "model_sources",
        "blocked_terms",
        "x402_networks",
        "cors_origins",
        "fetch_allow",
        "webhook_allow",
        mode="before",
    )(_split_csv)

    @property
    def default_model_dir(self) -> Path:
        return self.data_dir / "models" / "murano-tiny-sd"
