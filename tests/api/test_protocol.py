"""Request models make their own jobs (`to_job`, as vLLM's `to_sampling_params`)."""

from __future__ import annotations

import pytest

from murano.api.protocol import GenerateImageRequest, JobRequest, OpenAIImageRequest
from murano.catalog.entries import Catalog
from murano.errors import InvalidRequest, UnsupportedFeature
from tests.conftest import entry

MODEL = entry("m", model_spec={"traits": ["default"]})


def test_a_native_request_fills_in_the_models_defaults() -> None:
    body = GenerateImageRequest(model="m", prompt="a boat", seed=7, format="png")
    job = body.to_job(MODEL)
    assert (job.params.model_id, job.params.width, job.params.height) == ("m", 1024, 1024)
    assert (job.params.steps, job.params.seed, job.params.images) == (4, 7, 1)
    assert job.output.fmt == "png" and job.output.safe_mode and job.output.as_base64
    assert body.echo(job.params)["steps"] == 4


def test_a_native_request_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        GenerateImageRequest(model="m", prompt="p", steps=50).to_job(MODEL)
    assert caught.value.field == "steps"
    with pytest.raises(UnsupportedFeature):
        GenerateImageRequest(model="m", prompt="p", quality="high").to_job(MODEL)


def test_an_async_jobs_echo_leaves_out_the_webhook() -> None:
    body = JobRequest(model="m", prompt="p", webhook_url="https://hooks.test/x")
    echo = body.echo(body.to_job(MODEL).params)
    assert "webhook_url" not in echo and echo["prompt"] == "p"


def test_an_openai_request_is_checked_like_a_native_one() -> None:
    catalog = Catalog([MODEL])
    body = OpenAIImageRequest(prompt="a boat", model="dall-e-3", size="1792x1024")
    assert body.entry_in(catalog) is catalog.default
    job = body.to_job(MODEL)
    # OpenAI's sizes go beyond the native endpoint's 1280 px.
    assert (job.params.width, job.params.height) == (1792, 1024)
    assert job.output.fmt == "png" and job.output.safe_mode
    low = OpenAIImageRequest(prompt="p", moderation="low").to_job(MODEL)
    assert not low.output.safe_mode
