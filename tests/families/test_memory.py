"""Models on one device with the real diffusers backend: load at start or on first use,
LRU eviction past `max_resident` and past a memory budget, and models whose weights cannot
be loaded (a broken folder, a repo out of reach offline) shown offline while the server
keeps serving the others."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL.Image import Image

from murano.app import create_app
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.engine import Engine, LoadState
from murano.engine.fake import FakeBackend
from murano.engine.families import batch_key
from murano.engine.job import GenerationJob
from murano.engine.params import GenerationParams
from murano.errors import ModelUnavailable
from tests.conftest import AUTH, make_settings, running
from tests.families.conftest import TinyModels, params, tiny_entry


def keep(images: Sequence[Image], _flags: Sequence[bool] | None) -> list[Image]:
    return list(images)


async def generate(engine: Engine, p: GenerationParams) -> list[Image]:
    job = GenerationJob(params=p, finish=keep, batch_key=engine.batch_key(p))
    engine.submit(job)
    images: list[Image] = await job.future
    return images


def two_tiny(tiny_models: TinyModels, **raw: Any) -> Catalog:
    source = tiny_models.path("sd")
    return Catalog(
        [
            tiny_entry("sd", source, "first", **raw),
            tiny_entry("sd", source, "second", load="first-use", **raw),
        ]
    )


async def test_max_resident_one_evicts_the_least_recently_used(tiny_models: TinyModels) -> None:
    catalog = two_tiny(tiny_models)
    engine = Engine(catalog, load_backend, max_resident=1, batch_key=batch_key)
    await engine.start()
    assert engine.status("first").state is LoadState.RESIDENT
    assert engine.status("second").state is LoadState.UNLOADED
    first = engine.status("first").backend
    assert isinstance(first, DiffusersBackend)

    (image,) = await generate(engine, params(catalog.get("second")))
    assert image.size == (64, 64)
    assert engine.status("second").state is LoadState.RESIDENT
    assert engine.status("first").state is LoadState.UNLOADED
    assert first.pipeline is None  # its weights were let go

    (again,) = await generate(engine, params(catalog.get("first")))
    assert again.tobytes() == image.tobytes()  # same weights, same seed: same image
    assert engine.status("first").state is LoadState.RESIDENT
    assert engine.status("second").state is LoadState.UNLOADED
    await engine.close()


async def test_memory_budget_evicts_by_weight_size(tiny_models: TinyModels) -> None:
    size = load_backend(tiny_entry("sd", tiny_models.path("sd"))).memory_bytes
    assert size > 100_000  # parameters and buffers of every component
    catalog = two_tiny(tiny_models)
    engine = Engine(
        catalog,
        load_backend,
        max_resident=5,
        memory_budget_bytes=int(size * 1.5),
        batch_key=batch_key,
    )
    await engine.start()
    await generate(engine, params(catalog.get("second")))
    assert engine.status("first").state is LoadState.UNLOADED
    assert engine.resident_bytes() == size
    await engine.close()


class SizedBackend(FakeBackend):
    def __init__(self, model_id: str, memory_bytes: int) -> None:
        super().__init__(model_id)
        self.memory_bytes = memory_bytes


def sized_catalog(*ids: str) -> Catalog:
    return Catalog(tiny_entry("sd", f"/nonexistent/{i}", i) for i in ids)


async def test_models_loaded_at_start_never_evict_each_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sizes = {"a": 6, "b": 6, "c": 3}
    engine = Engine(
        sized_catalog("a", "b", "c"),
        lambda e: SizedBackend(e.id, sizes[e.id]),
        max_resident=5,
        memory_budget_bytes=10,
    )
    with caplog.at_level(logging.WARNING, "murano.engine"):
        await engine.start()
    states = {m: engine.status(m).state for m in sizes}
    assert states == {"a": LoadState.RESIDENT, "b": LoadState.UNLOADED, "c": LoadState.RESIDENT}
    assert "model b does not fit the memory budget" in caplog.text
    # On first use b does load, evicting the least recently used idle models to fit.
    await engine.ensure_loaded("b")
    assert engine.status("a").state is LoadState.UNLOADED
    assert engine.resident_bytes() <= 10
    await engine.close()


async def test_a_model_bigger_than_the_budget_still_loads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = Engine(sized_catalog("a"), lambda e: SizedBackend(e.id, 50), memory_budget_bytes=10)
    with caplog.at_level(logging.WARNING, "murano.engine"):
        await engine.ensure_loaded("a")
    assert engine.status("a").state is LoadState.RESIDENT
    assert "over the 0.00 GB memory budget" in caplog.text
    await engine.close()


async def test_known_size_makes_room_before_loading() -> None:
    loads: list[tuple[str, int]] = []
    sizes = {"a": 6, "b": 6}

    def factory(e: ModelEntry) -> SizedBackend:
        loads.append((e.id, engine.resident_bytes()))
        return SizedBackend(e.id, sizes[e.id])

    engine = Engine(sized_catalog("a", "b"), factory, max_resident=5, memory_budget_bytes=10)
    await engine.ensure_loaded("a")
    await engine.ensure_loaded("b")  # size unknown: evicts a only after loading
    await engine.ensure_loaded("a")  # size known (6): evicts b before loading
    assert loads == [("a", 0), ("b", 6), ("a", 0)]
    await engine.close()


# --- models that cannot load ---------------------------------------------------------------


def broken_copy(source: Path, out: Path) -> Path:
    shutil.copytree(source, out)
    weights = next((out / "unet").glob("*.safetensors"))
    weights.write_bytes(b"not a safetensors file")
    return out


async def test_unloadable_models_are_offline_and_the_server_keeps_serving(
    tiny_models: TinyModels, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broken = broken_copy(tiny_models.path("sd"), tmp_path / "broken")
    catalog = Catalog(
        [
            tiny_entry("sd", tiny_models.path("sd"), "tiny"),
            tiny_entry("sd", broken, "broken"),
            tiny_entry("sd", "murano-tests/no-such-model", "unreachable", load="first-use"),
        ],
        "tiny",
    )
    engine = Engine(catalog, load_backend, max_resident=3, batch_key=batch_key)
    with caplog.at_level(logging.ERROR, "murano.engine"):
        async with running(make_settings(tmp_path), engine) as client:
            for model in ("broken", "unreachable"):
                response = await post(client, model)
                assert response.status_code == 503, response.text
            models = (await client.get("/api/v1/models", params={"type": "image"})).json()
            specs = {m["id"]: m["model_spec"] for m in models["data"]}
            assert (specs["tiny"]["offline"], specs["tiny"]["resident"]) == (False, True)
            for model in ("broken", "unreachable"):
                assert (specs[model]["offline"], specs[model]["resident"]) == (True, False)
            ok = await post(client, "tiny")
            assert ok.status_code == 200, ok.text
    assert "model broken failed to load" in caplog.text
    assert "model unreachable failed to load" in caplog.text
    # The reason is in the log, for the operator (clients only see "offline").
    assert "OSError: Cannot load model murano-tests/no-such-model" in caplog.text
    with pytest.raises(ModelUnavailable):
        await engine.ensure_loaded("broken")  # and stays so, without retrying each request


async def post(client: httpx.AsyncClient, model: str) -> httpx.Response:
    body = {"model": model, "prompt": "a lighthouse", "width": 64, "height": 64, "steps": 2}
    return await client.post("/api/v1/image/generate", json=body, headers=AUTH)


def test_create_app_builds_on_the_real_backend_for_a_models_file(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    models_file = tmp_path / "models.toml"
    models_file.write_text(
        f'[[models]]\nid = "tiny"\nsource = "{tiny_models.path("sd")}"\ndevice = "cpu"\n'
        '[models.model_spec]\nname = "Tiny"\n',
        encoding="utf-8",
    )
    app = create_app(make_settings(tmp_path, models_file=models_file))
    engine: Engine = app.state.engine
    assert engine.catalog.get("tiny").family == "sd"
