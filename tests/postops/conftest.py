"""Fixtures for the upscale and background-removal tests: a catalog with an image model, an
upscaler and a background remover; fake post-op backends with the real interface (an
upscale is a nearest-neighbour resize, a cut-out takes its alpha from the red channel); and
the tiny real models, built once per session."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image as PILImage
from PIL.Image import Image

from murano.accounts.base import Accounts
from murano.catalog.build import build_entry
from murano.catalog.entries import Catalog, ModelEntry
from murano.catalog.postops import build_postop_entry
from murano.engine.backend import Backend
from murano.engine.engine import Engine
from murano.engine.fake import FakeBackend
from murano.engine.params import GenerationParams
from murano.engine.scheduler import SchedulerConfig
from tests.conftest import make_settings, running
from tests.payments.conftest import buyer, facilitator, token  # noqa: F401 (x402 fixtures)

UPSCALER = "test-upscaler"
REMOVER = "test-remover"


class FakePostop:
    """An upscaler's or background remover's backend twin. Records every batch; can be told
    to fail (`fail_when`) or to hold the device thread (`gate`)."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.batches: list[list[GenerationParams]] = []
        self.fail_when: Callable[[Sequence[GenerationParams]], bool] = lambda _batch: False
        self.gate: threading.Event | None = None
        self.started = threading.Event()

    def generate(
        self, batch: Sequence[GenerationParams], control: object | None = None
    ) -> list[list[Image]]:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.batches.append(list(batch))
        if self.fail_when(batch):
            raise RuntimeError("injected failure")
        return [[self._run(params)] for params in batch]

    def _run(self, params: GenerationParams) -> Image:
        image = params.init_images[0]
        if params.task == "upscale":
            return image.resize((params.width, params.height), PILImage.Resampling.NEAREST)
        cut = image.convert("RGBA")
        cut.putalpha(image.convert("RGB").getchannel("R"))
        return cut

    def unload(self) -> None:
        pass


def postop_entry(model_id: str, kind: str, **raw: Any) -> ModelEntry:
    return build_postop_entry(
        {"id": model_id, "type": kind, "source": f"/nonexistent/{model_id}", **raw}
    )


def image_entry(model_id: str = "test-model") -> ModelEntry:
    spec = {
        "name": "Test",
        "traits": ["default"],
        "constraints": {"steps": {"default": 2, "max": 20}},
    }
    return build_entry(
        {"id": model_id, "source": f"/nonexistent/{model_id}", "model_spec": spec}, family="sd"
    )


def postop_catalog(**upscaler: Any) -> Catalog:
    return Catalog(
        [
            image_entry(),
            postop_entry(UPSCALER, "upscale", **upscaler),
            postop_entry(REMOVER, "background-remove"),
        ]
    )


class Parts:
    """The backends the test engine made, by model id."""

    def __init__(self) -> None:
        self.backends: dict[str, Any] = {}
        # Model id → a factory of a real backend (given the engine) instead of a fake.
        self.real: dict[str, Callable[[ModelEntry, Engine], Backend]] = {}
        self.engine: Engine | None = None

    def factory(self, entry: ModelEntry) -> Backend:
        if entry.id in self.real:
            assert self.engine is not None
            backend = self.real[entry.id](entry, self.engine)
        elif entry.type == "image":
            backend = FakeBackend(entry.id)
        else:
            backend = FakePostop(entry.id)
        self.backends[entry.id] = backend
        return backend

    def fake(self, model_id: str) -> FakePostop:
        backend = self.backends[model_id]
        assert isinstance(backend, FakePostop)
        return backend

    def image(self, model_id: str = "test-model") -> FakeBackend:
        backend = self.backends[model_id]
        assert isinstance(backend, FakeBackend)
        return backend


@pytest.fixture
def parts() -> Parts:
    return Parts()


def postop_engine(
    parts: Parts, catalog: Catalog | None = None, config: SchedulerConfig | None = None
) -> Engine:
    engine = Engine(catalog or postop_catalog(), parts.factory, config=config)
    parts.engine = engine
    return engine


@asynccontextmanager
async def serving(
    tmp_path: Path,
    parts: Parts,
    *,
    catalog: Catalog | None = None,
    accounts: Accounts | None = None,
    config: SchedulerConfig | None = None,
    **settings: Any,
) -> AsyncIterator[httpx.AsyncClient]:
    engine = postop_engine(parts, catalog, config)
    async with running(make_settings(tmp_path, **settings), engine, accounts) as client:
        for entry in engine.catalog:
            if entry.type != "image":
                await engine.ensure_loaded(entry.id)
        yield client


@pytest.fixture
async def client(tmp_path: Path, parts: Parts) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(tmp_path, parts) as c:
        yield c


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny Swin2SR x4, Real-ESRGAN Compact x2 (`model.safetensors`) and ONNX
    segmenter, built once."""
    from murano.engine.tiny import build_tiny

    root = tmp_path_factory.mktemp("tiny-postops")
    return {family: build_tiny(family, root / family) for family in ("swin2sr", "spandrel", "onnx")}
