"""One machine, many devices: replicas of a model on device workers (`cpu,cpu` here), each
its own fake backend (`test-model@cpu#0`, `test-model@cpu#1`). Batches go to free replicas,
so two replicas run two batches at once; a replica that fails (its load or a batch) fails
nobody else's jobs; loads and LRU eviction are per device. Driven by the fakes' gates."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL.Image import Image
from pydantic import ValidationError

from murano.catalog.build import build_catalog
from murano.catalog.entries import Catalog
from murano.engine.devices import parse_devices
from murano.engine.engine import Engine, LoadState
from murano.engine.fake import FakeBackend
from murano.engine.job import GenerationJob
from murano.errors import InferenceFailed, ModelUnavailable
from murano.settings import Settings
from tests.conftest import FakeEngineParts, entry, generation_params, make_settings

CPU2 = ["cpu", "cpu"]


def keep(images: Sequence[Image], flags: Sequence[bool] | None) -> list[Image]:
    return list(images)


def catalog(**test_model: Any) -> Catalog:
    return Catalog(
        [
            entry("test-model", **{"replicas": 2, **test_model}),
            entry("ratio-model", load="first-use"),
            entry("guidance-model", load="first-use"),
        ],
        "test-model",
    )


def engine_of(parts: FakeEngineParts, cat: Catalog | None = None, **options: Any) -> Engine:
    return Engine(cat or catalog(), parts.factory, devices=CPU2, **options)


def job(engine: Engine, prompt: str) -> GenerationJob:
    params = generation_params(prompt=prompt)
    return GenerationJob(params=params, finish=keep, batch_key=engine.batch_key(params))


def batches(engine: Engine, model: str, replica: str) -> float:
    value = engine.metrics.registry.get_sample_value(
        "murano_batch_images_count", {"model": model, "replica": replica}
    )
    return value or 0.0


async def held(backend: FakeBackend) -> threading.Event:
    """Hold `backend`'s next batch on its device thread until the returned gate is set."""
    gate = threading.Event()
    backend.gate = gate
    backend.started.clear()
    return gate


async def test_two_replicas_run_two_batches_at_once(parts: FakeEngineParts) -> None:
    engine = engine_of(parts)
    await engine.start()
    first, second = parts.backends["test-model@cpu#0"], parts.backends["test-model@cpu#1"]
    gate = await held(first)
    held_job = job(engine, "held")
    engine.submit(held_job)
    await asyncio.to_thread(first.started.wait, 10)
    # The first replica is busy; the second serves the next job meanwhile.
    other = job(engine, "other")
    engine.submit(other)
    await other.future
    assert not held_job.done and other.replica == "cpu#1"
    gate.set()
    await held_job.future
    assert held_job.replica == "cpu#0"
    assert [len(b) for b in first.batches] == [1] and [len(b) for b in second.batches] == [1]
    assert batches(engine, "test-model", "cpu#0") == batches(engine, "test-model", "cpu#1") == 1
    await engine.close()


async def test_a_failing_batch_fails_only_its_own_jobs(parts: FakeEngineParts) -> None:
    engine = engine_of(parts)
    await engine.start()
    broken = parts.backends["test-model@cpu#0"]
    broken.fail_when = lambda _batch: True
    gate = await held(broken)
    doomed = job(engine, "doomed")
    engine.submit(doomed)
    await asyncio.to_thread(broken.started.wait, 10)
    survivors = [job(engine, f"s{i}") for i in range(3)]
    for j in survivors:
        engine.submit(j)
    # The healthy replica serves them all while the broken one holds its batch.
    await asyncio.gather(*(j.future for j in survivors))
    gate.set()
    with pytest.raises(InferenceFailed):
        await doomed.future
    assert {j.replica for j in survivors} == {"cpu#1"}
    await engine.close()


async def test_a_replica_that_cannot_load_hands_its_batch_to_another(
    parts: FakeEngineParts,
) -> None:
    engine = engine_of(parts, catalog(load="first-use"))
    parts.fail_load.add("test-model@cpu#1")
    await engine.ensure_loaded("test-model")  # the first replica, cpu#0
    gate = await held(parts.backends["test-model@cpu#0"])
    first, second = job(engine, "first"), job(engine, "second")
    engine.submit(first)
    await asyncio.to_thread(parts.backends["test-model@cpu#0"].started.wait, 10)
    parts.loading.clear()
    engine.submit(second)  # to the free replica, whose load fails: back to the queue
    await asyncio.to_thread(parts.loading.wait, 10)
    assert parts.loads[-1] == "test-model@cpu#1"
    gate.set()
    await asyncio.gather(first.future, second.future)
    assert second.replica == "cpu#0"
    broken = engine.replicas("test-model")[1].status
    assert broken.state is LoadState.FAILED and "test-model@cpu#1" in broken.error
    assert engine.status("test-model").state is LoadState.RESIDENT
    engine.check_room("test-model")  # the model still takes jobs
    await engine.close()


async def test_when_every_replica_fails_to_load_the_model_is_unavailable(
    parts: FakeEngineParts,
) -> None:
    engine = engine_of(parts, catalog(load="first-use"))
    parts.fail_load.add("test-model")
    lost = job(engine, "lost")
    engine.submit(lost)
    with pytest.raises(ModelUnavailable):
        await lost.future
    assert sorted(parts.loads) == ["test-model@cpu#0", "test-model@cpu#1"]
    assert engine.status("test-model").state is LoadState.FAILED
    with pytest.raises(ModelUnavailable):
        engine.check_room("test-model")
    await engine.close()


async def test_eviction_is_per_device(parts: FakeEngineParts) -> None:
    cat = Catalog(
        [
            entry("test-model", devices=["cpu#0"]),
            entry("ratio-model", devices=["cpu#1"]),
            entry("guidance-model", devices=["cpu#0"], load="first-use"),
        ],
        "test-model",
    )
    engine = engine_of(parts, cat, max_resident=1)
    await engine.start()
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    await engine.ensure_loaded("guidance-model")
    # guidance-model needed room on cpu#0: test-model left it; cpu#1 kept ratio-model.
    assert engine.status("test-model").state is LoadState.UNLOADED
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    assert [r.name for r in engine.replicas("guidance-model")] == ["cpu#0"]
    await engine.close()


async def test_single_replica_models_spread_over_the_devices(parts: FakeEngineParts) -> None:
    cat = Catalog([entry(m) for m in ("test-model", "ratio-model", "guidance-model")])
    engine = engine_of(parts, cat)
    placed = {m: [r.name for r in engine.replicas(m)] for m in ("test-model", "ratio-model")}
    assert placed == {"test-model": ["cpu#0"], "ratio-model": ["cpu#1"]}
    everywhere = engine_of(parts, catalog(replicas="all"))
    assert [r.name for r in everywhere.replicas("test-model")] == ["cpu#0", "cpu#1"]
    await engine.close()
    await everywhere.close()


@pytest.mark.parametrize(
    ("changes", "devices", "message"),
    [
        ({"replicas": 3}, CPU2, "replicas = 3, but only 2 device(s)"),
        ({"replicas": 1, "devices": ["cuda:1"]}, CPU2, "'cuda:1' is not one of MURANO_DEVICES"),
        ({"replicas": 2}, None, "replicas = 2, but only 1 device(s)"),
        ({"replicas": 1, "devices": ["cpu"]}, None, "needs MURANO_DEVICES"),
    ],
)
async def test_placements_that_cannot_be_made_are_refused(
    parts: FakeEngineParts, changes: dict[str, Any], devices: list[str] | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Engine(catalog(**changes), parts.factory, devices=devices)


def test_devices_setting() -> None:
    assert parse_devices("auto", cuda_count=lambda: 2) == ["cuda:0", "cuda:1"]
    assert parse_devices("auto", cuda_count=lambda: 0) == ["cpu"]
    assert parse_devices(" cuda:0, cuda:1 ") == ["cuda:0", "cuda:1"]
    assert Settings(devices="cpu,cpu").devices == "cpu,cpu"
    assert Settings(default_replicas="all").default_replicas == "all"
    for bad in ("gpu0", "cuda:x", ","):
        with pytest.raises(ValidationError, match="MURANO_DEVICES"):
            Settings(devices=bad)
    for replicas in (0, "some"):
        with pytest.raises(ValidationError):
            Settings(default_replicas=replicas)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"replicas": 0}, "greater than or equal to 1"),
        ({"replicas": "most"}, "'all'"),
        ({"devices": ["tpu:0"]}, "should match pattern"),
        ({"devices": []}, "at least 1 item"),
        ({"replicas": 3, "devices": ["cuda:0", "cuda:1"]}, "replicas = 3 on 2 devices"),
    ],
)
def test_model_entry_replica_keys_are_checked(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        entry("test-model", **changes)


def test_an_upstream_model_has_no_replicas() -> None:
    upstream = {"kind": "venice", "base_url": "https://api.venice.ai/api/v1", "key_env": "K"}
    with pytest.raises(ValidationError, match="no replicas"):
        entry("up", source="", family="venice-upstream", upstream=upstream, replicas=2)


def test_the_readmes_replicas_entry(tmp_path: Path, parts: FakeEngineParts) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Many devices", 1)[1]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    models = tmp_path / "models.toml"
    models.write_text(textwrap.dedent(toml), encoding="utf-8")
    engine = Engine(build_catalog(models, []), parts.factory, devices=["cuda:0", "cuda:1"])
    assert [r.name for r in engine.replicas("z-image-turbo")] == ["cuda:0", "cuda:1"]
    with pytest.raises(ValueError, match="'cuda:1' is not one of MURANO_DEVICES"):
        Engine(build_catalog(models, []), parts.factory, devices=["cuda:0"])


async def test_cancelling_a_job_interrupts_only_its_replicas_batch(
    parts: FakeEngineParts,
) -> None:
    engine = engine_of(parts)
    await engine.start()
    first, second = parts.backends["test-model@cpu#0"], parts.backends["test-model@cpu#1"]
    gate = await held(first)
    cancelled = job(engine, "cancelled")
    engine.submit(cancelled)
    await asyncio.to_thread(first.started.wait, 10)
    kept = job(engine, "kept")
    engine.submit(kept)
    engine.cancel(cancelled)
    gate.set()
    assert len(await kept.future) == 1
    await asyncio.to_thread(first.ran.wait, 10)
    # The cancelled batch stopped after its first step; the other ran all of its own.
    assert first.steps_run == [1] and second.steps_run == [kept.params.steps]
    await engine.close()


async def test_a_device_thread_finds_the_replica_on_its_own_device(
    parts: FakeEngineParts,
) -> None:
    engine = engine_of(parts)
    await engine.start()
    for worker in engine.workers:
        found = await asyncio.wrap_future(
            worker.executor.submit(engine.local_backend, "test-model")
        )
        assert found is parts.backends[f"test-model@{worker.name}"]
    # Off the device threads: any resident replica's.
    assert engine.local_backend("test-model") is parts.backends["test-model@cpu#0"]
    await engine.close()


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MURANO_DEVICES", "cuda:0,cuda:1")
    monkeypatch.setenv("MURANO_DEFAULT_REPLICAS", "2")
    monkeypatch.setenv("MURANO_TORCH_THREADS", "1")
    settings = Settings()
    assert (settings.devices, settings.default_replicas, settings.torch_threads) == (
        "cuda:0,cuda:1",
        2,
        1,
    )
    monkeypatch.setenv("MURANO_TORCH_THREADS", "0")
    with pytest.raises(ValidationError):
        Settings()


def test_default_replicas_need_devices(tmp_path: Path) -> None:
    from murano.app import build_engine
    from murano.metrics import Metrics

    settings = make_settings(tmp_path, default_replicas=2)
    with pytest.raises(ValueError, match="MURANO_DEFAULT_REPLICAS needs MURANO_DEVICES"):
        build_engine(settings, Metrics(), None)


async def test_a_replica_whose_batch_was_cancelled_while_it_loaded_serves_again(
    parts: FakeEngineParts,
) -> None:
    engine = engine_of(parts)
    parts.load_gate = threading.Event()
    parts.loading.clear()
    gone = GenerationJob(params=generation_params(model_id="ratio-model"), finish=keep)
    engine.submit(gone)
    await asyncio.to_thread(parts.loading.wait, 10)
    engine.cancel(gone)
    parts.load_gate.set()
    later = GenerationJob(params=generation_params(model_id="ratio-model"), finish=keep)
    engine.submit(later)
    assert len(await later.future) == 1
    await engine.close()


def test_an_entry_on_cuda_may_use_every_gpu(parts: FakeEngineParts) -> None:
    cat = Catalog([entry("test-model", device="cuda", replicas="all")])
    engine = Engine(cat, parts.factory, devices=["cpu", "cuda:0", "cuda:1"])
    assert [r.name for r in engine.replicas("test-model")] == ["cuda:0", "cuda:1"]


async def test_the_memory_budget_holds_per_device(parts: FakeEngineParts) -> None:
    def sized(model: Any) -> FakeBackend:
        backend = parts.factory(model)
        backend.memory_bytes = 8  # type: ignore[attr-defined]
        return backend

    cat = Catalog(
        [
            entry("test-model", devices=["cpu#0"]),
            entry("ratio-model", devices=["cpu#1"]),
            entry("guidance-model", devices=["cpu#0"], load="first-use"),
        ],
        "test-model",
    )
    engine = Engine(cat, sized, devices=CPU2, max_resident=5, memory_budget_bytes=10)
    await engine.start()
    # 8 bytes on each device: both fit their own device's 10.
    assert engine.status("test-model").state is LoadState.RESIDENT
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    await engine.ensure_loaded("guidance-model")
    # 16 bytes on cpu#0: its least recently used idle model left; cpu#1 was not touched.
    assert engine.status("test-model").state is LoadState.UNLOADED
    assert engine.status("ratio-model").state is LoadState.RESIDENT
    assert engine.resident_bytes(engine.workers[0]) == engine.resident_bytes(engine.workers[1])
    await engine.close()
