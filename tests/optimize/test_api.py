"""What a client and an operator see of the speed settings over HTTP: `/models` reports them,
a setting the machine cannot honour leaves the model `failed` with the reason (and the server
up), `/readyz` stays 503 until the default model is warm, and `step_cache: false` is a 400
where the model does not allow it, with nothing charged."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from murano.accounts import SqlAccounts
from murano.catalog.entries import Catalog, ModelEntry
from murano.engine.diffusers_backend import load_backend
from murano.engine.engine import Engine, LoadState
from murano.engine.families import batch_key
from murano.errors import ModelUnavailable
from tests.accounts.conftest import make_database
from tests.conftest import (
    AUTH,
    FakeEngineParts,
    entry,
    fake_engine,
    generation_params,
    make_settings,
    running,
)
from tests.families.conftest import TinyModels
from tests.optimize.conftest import optimized

URL = "/api/v1/image/generate"
CACHED = {"cache": {"type": "first-block", "threshold": 0.1}}
CACHED_OPTIONAL = {"cache": {"type": "first-block", "allow_request_off": True}}


def speed_catalog() -> Catalog:
    return Catalog(
        [
            entry("test-model", model_spec={"traits": ["default"]}, optimize=CACHED),
            entry("optional", optimize=CACHED_OPTIONAL),
            entry("plain"),
        ]
    )


async def models(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    data = (await client.get("/api/v1/models", params={"type": "image"})).json()["data"]
    return {m["id"]: m["model_spec"] for m in data}


async def test_models_report_each_models_optimizations(
    tmp_path: Path, parts: FakeEngineParts
) -> None:
    engine = fake_engine(parts, catalog=speed_catalog())
    async with running(make_settings(tmp_path), engine) as client:
        specs = await models(client)
    assert specs["test-model"]["optimizations"] == {
        "cache": {
            "type": "first-block",
            "threshold": 0.1,
            "allow_request_off": False,
            "options": {},
        }
    }
    assert specs["optional"]["optimizations"]["cache"]["allow_request_off"] is True
    assert specs["plain"]["optimizations"] == {}


@pytest.fixture
async def accounts(tmp_path: Path) -> AsyncIterator[SqlAccounts]:
    async with make_database("sqlite", tmp_path) as database:
        yield database.accounts(default_rpm=1000, failure_budget=1000)


async def test_step_cache_off_where_not_allowed_is_400_and_charges_nothing(
    tmp_path: Path, parts: FakeEngineParts, accounts: SqlAccounts
) -> None:
    engine = fake_engine(parts, catalog=speed_catalog())
    body = {"prompt": "a boat", "width": 64, "height": 64, "step_cache": False}
    async with running(make_settings(tmp_path), engine, accounts) as client:
        created = await accounts.create_key(name="t", balance_usd=Decimal("1"))
        key = {"Authorization": f"Bearer {created.secret}"}
        refused = await client.post(URL, json={**body, "model": "test-model"}, headers=key)
        assert refused.status_code == 400
        error = refused.json()
        assert error["details"]["step_cache"]["_errors"] == [
            "Model 'test-model' does not allow turning its step cache off per request."
        ]
        assert (await accounts.authenticate(created.secret)).balance_usd == Decimal("1")
        assert "test-model" not in parts.backends or not parts.backends["test-model"].batches

        wrong_type = await client.post(
            URL, json={**body, "model": "optional", "step_cache": "no"}, headers=key
        )
        assert wrong_type.status_code == 400 and "step_cache" in wrong_type.json()["details"]

        allowed = await client.post(URL, json={**body, "model": "optional"}, headers=key)
        assert allowed.status_code == 200
        assert [p.step_cache for p in parts.backends["optional"].batches[0]] == [False]
        # Turning off a cache the model does not have changes nothing.
        plain = await client.post(URL, json={**body, "model": "plain"}, headers=key)
        assert plain.status_code == 200
        assert [p.step_cache for p in parts.backends["plain"].batches[0]] == [True]


def test_requests_with_and_without_the_cache_never_share_a_call() -> None:
    model = entry("optional", optimize=CACHED_OPTIONAL)
    on, off = generation_params(), generation_params(step_cache=False)
    assert batch_key(model, on) != batch_key(model, off)


async def test_a_setting_the_machine_cannot_honour_leaves_the_model_failed_with_the_reason(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    good = optimized(tiny_models, "flux", "good", attention="native")
    bad = optimized(tiny_models, "flux", "fast", attention="flash")
    engine = Engine(Catalog([good, bad], "good"), load_backend)
    async with running(make_settings(tmp_path), engine) as client:
        with pytest.raises(ModelUnavailable):
            await engine.ensure_loaded("fast")
        specs = await models(client)
        assert specs["fast"]["loadState"] == "failed" and specs["fast"]["offline"] is True
        assert specs["fast"]["loadError"] == (
            "OptimizeError: model 'fast': optimize.attention: backend 'flash' needs a CUDA"
            " device; this model runs on cpu (on any device: _native_math, native)"
        )
        assert specs["good"]["loadState"] == "resident"
        assert specs["good"]["optimizations"] == {"attention": "native"}
        response = await client.post(
            URL, json={"model": "fast", "prompt": "x", "width": 64, "height": 64}, headers=AUTH
        )
        assert response.status_code == 503
        assert (await client.get("/readyz")).status_code == 200


async def test_the_default_model_is_ready_only_once_warm(
    tmp_path: Path, tiny_models: TinyModels
) -> None:
    model: ModelEntry = optimized(
        tiny_models, "sd", "warm", warmup=[{"width": 64, "height": 64, "batch": 2}]
    )
    seen: list[tuple[LoadState, bool, int]] = []

    def factory(loading: ModelEntry) -> Any:
        backend = load_backend(loading)
        seen.append((engine.status("warm").state, engine.ready, len(seen)))
        return backend

    # A spy on the pipeline call: what the engine says while the warm-up runs.
    def during_warmup(loading: ModelEntry) -> Any:
        import diffusers

        pipeline_cls = diffusers.StableDiffusionPipeline
        original = pipeline_cls.__call__

        def spy(pipe: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append((engine.status("warm").state, engine.ready, len(kwargs["prompt"])))
            return original(pipe, *args, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pipeline_cls, "__call__", spy)
            return factory(loading)

    engine = Engine(Catalog([model]), during_warmup)
    settings = make_settings(tmp_path)
    from murano.app import create_app

    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://murano.test") as client:
        assert (await client.get("/readyz")).status_code == 503
        async with app.router.lifespan_context(app):
            await engine.ensure_loaded("warm")
            assert (await client.get("/readyz")).status_code == 200
    # The warm-up call (two images) ran while the model was still loading and not ready.
    assert seen[0] == (LoadState.LOADING, False, 2)
