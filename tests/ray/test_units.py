"""The Ray mode's parts that need no cluster: the refusal without shared state, the
mapping of `[models.ray]` to Serve's options, and the ingress's remote queue driven by a
scripted replica."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from murano.catalog.entries import Catalog
from murano.cli import main
from murano.distributed._wire import Event, Failed, Generated, Progress, RemoteJob, Running
from murano.distributed.application import model_deployment_options
from murano.distributed.cluster import SharedStateMissing, check_shared_state
from murano.distributed.local import InProcessHandle
from murano.distributed.remote import ServeEngine
from murano.distributed.replica import ModelReplica
from murano.engine.engine import Engine
from murano.engine.fake import FakeBackend
from murano.engine.job import GenerationJob, JobState
from murano.engine.scheduler import SchedulerConfig
from murano.errors import InferenceFailed, JobCancelled, ModelAtCapacity
from murano.settings import Settings
from tests.conftest import entered, entry, generation_params

PG = "postgresql://postgres@/murano?host=/var/run/postgresql"


# -- refusing to start without shared state --------------------------------------------


def test_ray_refuses_sqlite_and_no_redis_saying_what_to_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--ray", "--data-dir", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert "--database-url (MURANO_DATABASE_URL)" in message and "postgresql://" in message
    assert "--redis-url (MURANO_REDIS_URL)" in message


def test_ray_refuses_a_sqlite_url_and_a_static_backend() -> None:
    with pytest.raises(SharedStateMissing, match="SQLite"):
        check_shared_state(
            Settings(database_url="sqlite:///x.db", redis_url="redis://127.0.0.1:6379/0")
        )
    with pytest.raises(SharedStateMissing, match="MURANO_ACCOUNTS_BACKEND=static"):
        check_shared_state(
            Settings(accounts_backend="static", database_url=PG, redis_url="redis://r:6379/0")
        )
    with pytest.raises(SharedStateMissing, match="redis") as raised:
        check_shared_state(Settings(database_url=PG))
    assert "database-url" not in str(raised.value)
    check_shared_state(Settings(database_url=PG, redis_url="redis://127.0.0.1:6379/0"))


def test_the_serve_config_application_refuses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from murano.distributed.application import app_builder

    monkeypatch.delenv("MURANO_DATABASE_URL", raising=False)
    monkeypatch.delenv("MURANO_REDIS_URL", raising=False)
    with pytest.raises(SharedStateMissing, match="--database-url"):
        app_builder({"database_url": "sqlite:///murano.db"})


# -- [models.ray] → Serve options ---------------------------------------------------------


def test_fixed_replicas_gpus_and_threads_map_to_serve_options() -> None:
    model = entry("m", ray={"num_replicas": 3, "num_gpus": 0.5, "num_cpus": 2})
    options = model_deployment_options(model, Settings(max_queue=10), cluster_gpus=8)
    assert options["num_replicas"] == 3
    assert options["ray_actor_options"] == {"num_cpus": 2, "num_gpus": 0.5}
    # Serve lets a replica hold its whole queue and a batch: murano's scheduler batches.
    assert options["max_ongoing_requests"] == 10 + Settings().max_batch_images
    assert options["health_check_period_s"] <= 1
    assert "autoscaling_config" not in options


def test_autoscaling_and_gpu_defaults() -> None:
    scaling = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 6}
    model = entry("m", ray={"autoscaling": scaling})
    options = model_deployment_options(model, Settings(), cluster_gpus=2)
    assert options["autoscaling_config"] == scaling
    assert "num_replicas" not in options
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
    cpu_only = model_deployment_options(entry("c", device="cpu"), Settings(), cluster_gpus=2)
    assert cpu_only["ray_actor_options"]["num_gpus"] == 0
    no_gpus = model_deployment_options(entry("n"), Settings(), cluster_gpus=0)
    assert no_gpus["ray_actor_options"]["num_gpus"] == 0 and no_gpus["num_replicas"] == 1


def test_ray_table_is_checked() -> None:
    with pytest.raises(ValidationError, match="either num_replicas or an"):
        entry("m", ray={"num_replicas": 2, "autoscaling": {"max_replicas": 3}})
    with pytest.raises(ValidationError, match="min_replicas"):
        entry("m", ray={"autoscaling": {"min_replicas": 4, "max_replicas": 2}})
    with pytest.raises(ValidationError):
        entry("m", ray={"replicas": 2})


# -- the ingress's remote queue --------------------------------------------------------


class ScriptedStream:
    """One replica call whose events the test pushes (an exception is raised instead)."""

    def __init__(self, request: RemoteJob) -> None:
        self.request = request
        self.events: asyncio.Queue[Event | BaseException] = asyncio.Queue()
        self.cancelled = False

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            item = await self.events.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    def cancel(self) -> None:
        self.cancelled = True


class ScriptedReplica:
    def __init__(self) -> None:
        self.calls: list[ScriptedStream] = []
        self.called = asyncio.Event()

    def generate(self, request: RemoteJob) -> ScriptedStream:
        self.calls.append(ScriptedStream(request))
        self.called.set()
        return self.calls[-1]


def _engine(replica: ScriptedReplica, capacity: int = 4) -> ServeEngine:
    catalog = Catalog([entry("test-model")])
    return ServeEngine(catalog, {"test-model": replica}, capacity={"test-model": capacity})


def _job(preview_every: int = 0, **changes: Any) -> GenerationJob:
    def finish(images: Any, flags: Any) -> dict[str, Any]:
        return {"images": len(images), "flags": flags}

    return GenerationJob(
        params=generation_params(**changes), finish=finish, preview_every=preview_every
    )


async def test_a_job_follows_its_replica_and_is_post_processed_here() -> None:
    replica = ScriptedReplica()
    engine = _engine(replica)
    job = _job(images=2)
    engine.submit(job)
    await replica.called.wait()
    stream = replica.calls[0]
    assert stream.request.params == job.params and stream.request.timeout_s is not None
    assert engine.status("test-model").state.value == "resident" and engine.ready
    stream.events.put_nowait(Running())
    stream.events.put_nowait(Progress(1, 4))
    await entered(job, JobState.RUNNING)
    image = Image.new("RGB", (8, 8))
    stream.events.put_nowait(Generated([image, image], [False, True]))
    assert await job.future == {"images": 2, "flags": [False, True]}
    assert job.progress == (1, 4)
    assert engine.deliver(job)
    await engine.close()


async def test_a_lost_replica_fails_the_job_with_inference_failed() -> None:
    replica = ScriptedReplica()
    engine = _engine(replica)
    job = _job()
    engine.submit(job)
    await replica.called.wait()
    replica.calls[0].events.put_nowait(RuntimeError("ActorDiedError: the actor died"))
    with pytest.raises(InferenceFailed) as raised:
        await job.future
    assert raised.value.message == "Inference processing failed"
    assert job.state is JobState.FAILED and engine.in_flight == 0
    await engine.close()


async def test_replica_errors_come_back_as_domain_errors() -> None:
    replica = ScriptedReplica()
    engine = _engine(replica)
    job = _job()
    engine.submit(job)
    await replica.called.wait()
    replica.calls[0].events.put_nowait(Failed("capacity", "test-model"))
    with pytest.raises(ModelAtCapacity):
        await job.future
    await engine.close()


async def test_cancelling_a_job_cancels_its_replica_call() -> None:
    replica = ScriptedReplica()
    engine = _engine(replica)
    job = _job()
    engine.submit(job)
    await replica.called.wait()
    assert engine.cancel(job)
    with pytest.raises(JobCancelled):
        await job.future
    await asyncio.sleep(0)  # the follower task sees its cancellation
    assert replica.calls[0].cancelled and job.state is JobState.CANCELLED
    await engine.close()


async def test_jobs_in_flight_are_bounded_per_model() -> None:
    replica = ScriptedReplica()
    engine = _engine(replica, capacity=1)
    engine.submit(_job())
    with pytest.raises(ModelAtCapacity):
        engine.check_room("test-model")
    await engine.close()


# -- ingress and replica together, in one process ------------------------------------------


def _replica_pair(max_queue: int = 64) -> tuple[ServeEngine, Engine, FakeBackend]:
    backend = FakeBackend("test-model")
    catalog = Catalog([entry("test-model")])
    inner = Engine(catalog, lambda _entry: backend, config=SchedulerConfig(max_queue=max_queue))
    replica = ModelReplica.on_engine("test-model", inner, Settings())
    outer = ServeEngine(
        catalog, {"test-model": InProcessHandle(replica)}, capacity={"test-model": 8}
    )
    return outer, inner, backend


async def test_the_replica_batches_and_streams_progress_back() -> None:
    outer, inner, backend = _replica_pair()
    backend.gate = threading.Event()
    jobs = [_job(seed=i, preview_every=2) for i in range(3)]
    outer.submit(jobs[0])
    await asyncio.to_thread(backend.started.wait, 5)
    for job in jobs[1:]:
        outer.submit(job)
    while inner.queue_depth("test-model") < 2:  # both wait behind the running batch
        await asyncio.sleep(0)
    backend.gate.set()
    results = await asyncio.gather(*(job.future for job in jobs))
    assert [r["images"] for r in results] == [1, 1, 1]
    # The replica's scheduler batched the two that queued behind the first.
    assert [len(batch) for batch in backend.batches] == [1, 2]
    assert jobs[0].progress == (4, 4) and jobs[0].preview is not None
    assert all(job.stamps[JobState.RUNNING] for job in jobs)
    await outer.close()
    await inner.close()


async def test_cancelling_in_the_ingress_interrupts_the_replicas_batch() -> None:
    outer, inner, backend = _replica_pair()
    backend.gate = threading.Event()
    job = _job(steps=20)
    outer.submit(job)
    await asyncio.to_thread(backend.started.wait, 5)
    assert outer.cancel(job)
    while inner.in_flight:  # the replica's job is cancelled in turn
        await asyncio.sleep(0)
    backend.gate.set()
    await asyncio.to_thread(backend.ran.wait, 5)
    assert backend.steps_run == [1]  # interrupted at its first step
    await outer.close()
    await inner.close()


async def test_the_replicas_errors_reach_the_ingress_as_they_were() -> None:
    outer, inner, backend = _replica_pair()
    backend.fail_when = lambda _batch: True
    job = _job()
    outer.submit(job)
    with pytest.raises(InferenceFailed) as raised:
        await job.future
    assert "injected failure" in raised.value.cause
    await outer.close()
    await inner.close()

    outer, inner, backend = _replica_pair(max_queue=0)
    job = _job()
    outer.submit(job)
    with pytest.raises(ModelAtCapacity):
        await job.future
    await outer.close()
    await inner.close()


async def test_a_replica_classifies_only_the_jobs_whose_decision_asks_for_it() -> None:
    backend = FakeBackend("test-model")
    catalog = Catalog([entry("test-model")])
    inner = Engine(catalog, lambda _entry: backend)
    replica = ModelReplica.on_engine("test-model", inner, Settings())
    replica.classifier = lambda images: [True] * len(images)  # the replica's own copy
    outer = ServeEngine(
        catalog, {"test-model": InProcessHandle(replica)}, capacity={"test-model": 8}
    )

    def ingress_classifier(images: Any) -> list[bool]:
        raise AssertionError("a function does not travel: the replica classifies")

    not_asked = _job(seed=7)
    asked = GenerationJob(
        params=not_asked.params, finish=not_asked.finish, classifier=ingress_classifier
    )
    outer.submit(asked)
    outer.submit(not_asked)
    assert (await asked.future)["flags"] == [True]
    assert (await not_asked.future)["flags"] is None
    await outer.close()
    await inner.close()
