"""Loading real pipelines offline: single-file fine-tunes (family detected from the
checkpoint, configs from `config`), `--model ID=SOURCE`, components from elsewhere, a
scheduler override, dtype on the CPU and the sequence-length override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from murano.catalog.build import build_catalog, single_file_family
from murano.catalog.families import get_family
from murano.engine.diffusers_backend import load_backend
from murano.engine.tiny import PIPELINE_CLASSES, build_tiny
from murano.engine.tiny.lora import LORA_WEIGHT_NAME, build_tiny_lora
from murano.engine.tiny.single_file import SINGLE_FILE_PIPELINES, export_single_file
from tests.families.conftest import (
    TINY_FAMILIES,
    Renderer,
    TinyModels,
    generate_one,
    max_diff,
    params,
    tiny_entry,
)
from tests.families.test_invariants import CallSpy

SINGLE_FILE_FAMILIES = [f for f in TINY_FAMILIES if PIPELINE_CLASSES[f] in SINGLE_FILE_PIPELINES]


@pytest.fixture(scope="module", params=SINGLE_FILE_FAMILIES)
def checkpoint(
    request: pytest.FixtureRequest,
    tiny_models: TinyModels,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, Path, Path]:
    """(family, its diffusers folder, its single-file LDM export)."""
    family = str(request.param)
    folder = tiny_models.path(family)
    out = tmp_path_factory.mktemp(f"single-{family}") / "fine-tune.safetensors"
    return family, folder, export_single_file(folder, out)


def test_single_file_family_is_detected(checkpoint: tuple[str, Path, Path]) -> None:
    family, _, file = checkpoint
    assert single_file_family(str(file)) == family


def test_single_file_loads_with_its_config_and_matches_the_folder(
    checkpoint: tuple[str, Path, Path],
) -> None:
    family, folder, file = checkpoint
    single = load_backend(tiny_entry(family, file, "fine-tune", config=str(folder)))
    from_folder = load_backend(tiny_entry(family, folder))
    p = params(single.entry, width=128, height=64)
    image = generate_one(single, p)[0]
    assert image.size == (128, 64)
    assert max_diff(image, generate_one(from_folder, p)[0]) <= 1


def test_model_flag_takes_a_single_file(checkpoint: tuple[str, Path, Path]) -> None:
    family, _, file = checkpoint
    catalog = build_catalog(None, [f"fine-tune={file}"])
    entry = catalog.get("fine-tune")
    info = get_family(family)
    assert (entry.family, entry.source, entry.load) == (family, str(file), "start")
    constraints = entry.constraints
    assert constraints.widthHeightDivisor == info.divisor
    assert (constraints.steps.default, constraints.steps.max) == (
        info.default_steps,
        info.max_steps,
    )
    assert constraints.promptCharacterLimit == info.prompt_limit


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_model_flag_reads_the_family_of_a_folder(family: str, tiny_models: TinyModels) -> None:
    catalog = build_catalog(None, [f"m={tiny_models.path(family)}"])
    assert catalog.get("m").family == family


def test_a_checkpoint_that_is_no_stable_diffusion_is_refused(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    lora = build_tiny_lora("sd", tiny_models.path("sd"), tmp_path) / LORA_WEIGHT_NAME
    with pytest.raises(ValueError, match="not a Stable Diffusion checkpoint"):
        single_file_family(str(lora))
    with pytest.raises(ValueError, match="not a Stable Diffusion checkpoint"):
        build_catalog(None, [f"lora={lora}"])


def test_single_file_of_a_family_without_single_files_is_refused(tmp_path: Path) -> None:
    entry = tiny_entry("flux", tmp_path / "flux.safetensors")
    with pytest.raises(ValueError, match=r"flux family does not load from one \.safetensors"):
        load_backend(entry)


def test_scheduler_override(tiny_models: TinyModels) -> None:
    entry = tiny_entry(
        "sd",
        tiny_models.path("sd"),
        scheduler="EulerAncestralDiscreteScheduler",
        scheduler_config={"timestep_spacing": "trailing"},
    )
    backend = load_backend(entry)
    scheduler = backend.pipeline.scheduler
    assert type(scheduler).__name__ == "EulerAncestralDiscreteScheduler"
    assert scheduler.config.timestep_spacing == "trailing"
    assert generate_one(backend, params(entry))[0].size == (64, 64)
    with pytest.raises(ValueError, match="unknown diffusers scheduler 'NoSuchScheduler'"):
        load_backend(tiny_entry("sd", tiny_models.path("sd"), scheduler="NoSuchScheduler"))


def test_component_from_elsewhere_replaces_the_models_own(
    tiny_models: TinyModels, tmp_path: Path
) -> None:
    other = build_tiny("sd", tmp_path / "other", seed=1)
    vae = {"source": str(other), "subfolder": "vae", "class": "AutoencoderKL"}
    backend = load_backend(tiny_entry("sd", tiny_models.path("sd"), components={"vae": vae}))
    reference = load_backend(tiny_entry("sd", other))
    for mine, theirs in zip(
        backend.pipeline.vae.state_dict().values(),
        reference.pipeline.vae.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    bad = {"source": str(other), "subfolder": "vae", "class": "NoSuchModel"}
    with pytest.raises(ValueError, match="component vae names 'NoSuchModel'"):
        load_backend(tiny_entry("sd", tiny_models.path("sd"), components={"vae": bad}))


def test_half_precision_entries_run_in_float32_on_the_cpu(tiny_models: TinyModels) -> None:
    backend = load_backend(tiny_entry("sd", tiny_models.path("sd"), dtype="bfloat16"))
    assert backend.pipeline.unet.dtype == torch.float32
    image = generate_one(backend, params(backend.entry))[0]
    assert np.asarray(image).std() > 1


LONG_TEXT = [f for f in TINY_FAMILIES if get_family(f).max_sequence_length is not None]


@pytest.mark.skipif(not LONG_TEXT, reason="no tiny family with a long text encoder yet")
def test_max_sequence_length_override_reaches_the_pipeline(
    tiny_models: TinyModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    family = LONG_TEXT[0]
    backend = load_backend(tiny_entry(family, tiny_models.path(family), max_sequence_length=64))
    spy = CallSpy(monkeypatch, backend.pipeline)
    Renderer(backend).image(params(backend.entry))
    assert spy.calls[0]["max_sequence_length"] == 64


# --- hub repos, offline: the cache, revision pins, the token --------------------------------

REPO = "murano-tests/tiny-sd"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding the tiny SD as `REPO` at `COMMIT` (its `main`), as a
    download would have left it; HF_HUB_OFFLINE keeps every lookup local."""
    import shutil

    import huggingface_hub.constants

    repo = tmp_path / "hub" / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(tiny_models.path("sd"), repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT, encoding="utf-8")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo


@pytest.mark.parametrize("revision", [None, "main", COMMIT])
def test_a_cached_repo_loads_offline_at_its_pinned_revision(
    hub_cache: Path, revision: str | None
) -> None:
    backend = load_backend(tiny_entry("sd", REPO, revision=revision))
    assert generate_one(backend, params(backend.entry))[0].size == (64, 64)


def test_a_revision_not_in_the_cache_fails_to_load(hub_cache: Path) -> None:
    with pytest.raises(OSError, match="not fully cached"):
        load_backend(tiny_entry("sd", REPO, revision="1" * 40))


def test_model_flag_reads_the_family_of_a_cached_repo(hub_cache: Path) -> None:
    assert build_catalog(None, [f"m={REPO}"]).get("m").family == "sd"


def test_repo_loads_pass_revision_token_and_safetensors_only(
    hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import diffusers

    calls: list[dict[str, object]] = []
    original: Any = diffusers.StableDiffusionPipeline.from_pretrained

    def spy(source: str, **kwargs: object) -> object:
        calls.append(kwargs)
        return original(source, **kwargs)

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_pretrained", spy)
    monkeypatch.setenv("HF_TOKEN", "hf_murano_test_token")
    load_backend(tiny_entry("sd", REPO, revision=COMMIT))
    (call,) = calls
    assert call["revision"] == COMMIT
    assert call["token"] == "hf_murano_test_token"
    assert call["use_safetensors"] is True
