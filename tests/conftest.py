"""Shared fixtures: an app on fake parts (FakeBackend engine, in-memory accounts) driven by
httpx through ASGI, with its lifespan running."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from murano.accounts.base import Accounts
from murano.app import create_app
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.devices import DEFAULT_WORKER, current_worker
from murano.engine.engine import Engine
from murano.engine.fake import FakeBackend
from murano.engine.job import GenerationJob, JobState
from murano.engine.params import GenerationParams
from murano.engine.scheduler import SchedulerConfig
from murano.settings import Settings

API_KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def generation_params(**changes: Any) -> GenerationParams:
    """A checked request for `test-model` (64×64, 4 steps, cfg 7.5, seed 1), with `changes`."""
    values: dict[str, Any] = {
        "model_id": "test-model",
        "prompt": "p",
        "negative_prompt": None,
        "width": 64,
        "height": 64,
        "steps": 4,
        "cfg_scale": 7.5,
        "seed": 1,
        "images": 1,
        "lora_strength": None,
    }
    return GenerationParams(**{**values, **changes})


async def entered(job: GenerationJob, state: JobState) -> None:
    """Until `job` has entered `state` (now or earlier), told by the job's listener, not by
    polling."""
    done = asyncio.Event()
    job.add_listener(lambda changed: done.set() if state in changed.stamps else None)
    if state not in job.stamps:
        await done.wait()


def entry(model_id: str, **overrides: Any) -> ModelEntry:
    spec: dict[str, Any] = {
        "name": f"Test {model_id}",
        "traits": [],
        "constraints": {
            "promptCharacterLimit": 200,
            "steps": {"default": 4, "max": 20},
            "widthHeightDivisor": 8,
        },
        "pricing": {"generation": {"usd": 0.01, "diem": 0.01}},
    }
    spec.update(overrides.pop("model_spec", {}))
    raw = {"id": model_id, "source": f"/nonexistent/{model_id}", "family": "sd", **overrides}
    return ModelEntry.model_validate({**raw, "model_spec": spec})


def test_catalog() -> Catalog:
    return Catalog(
        [
            entry("test-model", model_spec={"traits": ["default", "fastest"]}),
            entry(
                "ratio-model",
                load="first-use",
                model_spec={
                    "constraints": {
                        "promptCharacterLimit": 200,
                        "steps": {"default": 4, "max": 20},
                        "widthHeightDivisor": 16,
                        "aspectRatios": ["1:1", "16:9", "9:16"],
                        "defaultAspectRatio": "1:1",
                        "resolutions": ["1K", "2K"],
                        "defaultResolution": "1K",
                    },
                    "pricing": {
                        "resolutions": {
                            "1K": {"usd": 0.02, "diem": 0.02},
                            "2K": {"usd": 0.05, "diem": 0.05},
                        }
                    },
                },
            ),
            entry("guidance-model", family="flux2", load="first-use"),
        ],
        "test-model",
    )


class FakeEngineParts:
    """The backends the fake engine made, by model id, for assertions."""

    def __init__(self) -> None:
        self.backends: dict[str, FakeBackend] = {}
        self.fail_load: set[str] = set()
        # Set by a test to hold loads (on the engine's load thread) until released.
        self.load_gate: threading.Event | None = None
        self.loading = threading.Event()
        self.loads: list[str] = []

    def factory(self, model: ModelEntry) -> FakeBackend:
        # A replica on a device of MURANO_DEVICES is `model@device` (`test-model@cpu#1`).
        worker = current_worker()
        key = (
            model.id
            if worker is None or worker.name == DEFAULT_WORKER
            else f"{model.id}@{worker.name}"
        )
        self.loads.append(key)
        self.loading.set()
        if self.load_gate is not None:
            self.load_gate.wait(timeout=30)
        if model.id in self.fail_load or key in self.fail_load:
            raise OSError(f"weights for {key} are missing")
        backend = self.backends.setdefault(key, FakeBackend(model.id))
        return backend


@pytest.fixture
def parts() -> FakeEngineParts:
    return FakeEngineParts()


def fake_engine(
    parts: FakeEngineParts,
    *,
    config: SchedulerConfig | None = None,
    catalog: Catalog | None = None,
) -> Engine:
    return Engine(catalog or test_catalog(), parts.factory, config=config)


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "api_keys": [API_KEY],
        "accounts_backend": "static",
        # Tests send many requests a minute; the limits have tests of their own.
        "default_rpm": 100_000,
        "failure_budget": 100_000,
    }
    values.update(overrides)
    return Settings(**values)


AppFactory = Callable[..., Any]


@asynccontextmanager
async def running(
    settings: Settings,
    engine: Engine,
    accounts: Accounts | None = None,
    **kwargs: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engine=engine, accounts=accounts, **kwargs)
    async with app.router.lifespan_context(app):
        await engine.ensure_loaded(engine.catalog.default_id)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://murano.test") as c:
            c.app = app  # type: ignore[attr-defined]
            yield c


@pytest.fixture
async def client(tmp_path: Path, parts: FakeEngineParts) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_settings(tmp_path), fake_engine(parts)) as c:
        yield c


def price(value: str) -> Decimal:
    return Decimal(value)
