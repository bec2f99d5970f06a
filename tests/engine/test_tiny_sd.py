"""The tiny SD pipelines: reproducible builds, offline round trips through diffusers'
loaders (folder and single file), prompt conditioning, and the embedded default model."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from murano.engine import tiny
from murano.engine.tiny import (
    DEFAULT_MODEL_CFG,
    DEFAULT_MODEL_STEPS,
    FAMILIES,
    build_default_model,
    build_tiny,
)
from murano.engine.tiny._tokenizers import CLIP_BOS, CLIP_EOS, build_clip_tokenizer
from murano.engine.tiny.sd import build_sd
from murano.engine.tiny.single_file import export_single_file

# Everything here must work with no hub access. Set before diffusers is first imported
# (the helpers import it lazily), since huggingface_hub reads it once at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Image = NDArray[np.float32]


def _diffusers() -> Any:
    return importlib.import_module("diffusers")


def _load(model_dir: Path) -> Any:
    pipe = _diffusers().DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _render(
    pipe: Any,
    prompt: str = "a red cat on a sofa",
    *,
    height: int | None = 64,
    width: int | None = 64,
    steps: int = 2,
    cfg: float = 1.0,
    seed: int = 0,
) -> Image:
    import torch

    result = pipe(
        prompt,
        height=height,
        width=width,
        num_inference_steps=steps,
        guidance_scale=cfg,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(result.images[0], dtype=np.float32)


@pytest.fixture(scope="module")
def test_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("sd", tmp_path_factory.mktemp("sd-test") / "model")


@pytest.fixture(scope="module")
def default_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_default_model(tmp_path_factory.mktemp("sd-default") / "model")


@pytest.fixture(scope="module")
def test_pipe(test_model: Path) -> Any:
    return _load(test_model)


@pytest.fixture(scope="module")
def default_pipe(default_model: Path) -> Any:
    return _load(default_model)


# --- tokenizer -------------------------------------------------------------------------


def test_clip_tokenizer_pads_to_77_and_round_trips(tmp_path: Path) -> None:
    tokenizer = build_clip_tokenizer(tmp_path / "vocab")
    ids = tokenizer("A red cat!", padding="max_length", max_length=77).input_ids
    assert len(ids) == 77
    assert ids[0] == tokenizer.convert_tokens_to_ids(CLIP_BOS)
    assert ids[-1] == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids(CLIP_EOS)
    tokenizer.save_pretrained(tmp_path / "saved")
    reloaded = importlib.import_module("transformers").AutoTokenizer.from_pretrained(
        tmp_path / "saved"
    )
    assert reloaded("A red cat!").input_ids == tokenizer("A red cat!").input_ids


def test_clip_tokenizer_pads_with_the_token_asked_for(tmp_path: Path) -> None:
    tokenizer = build_clip_tokenizer(tmp_path, pad_token="!")
    assert tokenizer.pad_token == "!"
    with pytest.raises(ValueError, match="pad_token"):
        build_clip_tokenizer(tmp_path, pad_token="<pad>")


# --- building and loading ----------------------------------------------------------------


def test_families_include_sd() -> None:
    assert "sd" in FAMILIES


def test_unknown_family_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'sdxxl'.*known families: .*\bsd\b"):
        build_tiny("sdxxl", tmp_path)


def test_unknown_profile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="profile 'huge'"):
        build_sd(tmp_path, profile="huge")  # type: ignore[arg-type]


def test_same_seed_gives_identical_weights_and_image(test_model: Path, tmp_path: Path) -> None:
    again = build_sd(tmp_path / "again", seed=0)
    other = build_sd(tmp_path / "other", seed=1)
    weights = sorted(p.relative_to(test_model) for p in test_model.rglob("*.safetensors"))
    assert len(weights) == 3  # text encoder, UNet, VAE
    for relative in weights:
        assert (again / relative).read_bytes() == (test_model / relative).read_bytes()
    unet = Path("unet/diffusion_pytorch_model.safetensors")
    assert (other / unet).read_bytes() != (test_model / unet).read_bytes()
    np.testing.assert_array_equal(_render(_load(again)), _render(_load(test_model)))


def test_saved_pipeline_loads_back_as_stable_diffusion(test_pipe: Any) -> None:
    diffusers = _diffusers()
    assert isinstance(test_pipe, diffusers.StableDiffusionPipeline)
    assert isinstance(test_pipe.unet, diffusers.UNet2DConditionModel)
    assert test_pipe.safety_checker is None
    assert test_pipe.vae_scale_factor == 8
    image = _render(test_pipe)
    assert image.shape == (64, 64, 3)
    assert np.isfinite(image).all()
    assert image.std() > 0.01  # an image, not a flat fill


def test_pipeline_default_size_is_64_for_test_profile(test_pipe: Any) -> None:
    image = _render(test_pipe, height=None, width=None)
    assert image.shape == (64, 64, 3)


@pytest.mark.parametrize("pipe_fixture", ["test_pipe", "default_pipe"])
def test_prompt_conditions_the_image(pipe_fixture: str, request: pytest.FixtureRequest) -> None:
    pipe = request.getfixturevalue(pipe_fixture)
    cat = _render(pipe, "a red cat")
    np.testing.assert_array_equal(_render(pipe, "a red cat"), cat)
    assert np.abs(_render(pipe, "a blue dog") - cat).max() > 1e-3


# --- single file -------------------------------------------------------------------------


def test_single_file_export_loads_and_matches_folder(
    test_model: Path, test_pipe: Any, tmp_path: Path
) -> None:
    from safetensors import safe_open

    checkpoint = export_single_file(test_model, tmp_path / "tiny-sd.safetensors")
    with safe_open(str(checkpoint), framework="pt") as handle:
        keys = set(handle.keys())
    # The original LDM layout, as community fine-tunes ship it.
    assert {
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.1.conv.weight",
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "first_stage_model.decoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
    } <= keys
    single = _diffusers().StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(test_model), local_files_only=True
    )
    single.set_progress_bar_config(disable=True)
    assert np.abs(_render(single) - _render(test_pipe)).max() <= 1e-5


def test_single_file_export_refuses_other_pipelines(tmp_path: Path) -> None:
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(ValueError, match=r"WanPipeline.*supported:.*StableDiffusionPipeline"):
        export_single_file(tmp_path, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


# --- the embedded default model ----------------------------------------------------------


@pytest.mark.parametrize(("height", "width"), [(64, 64), (64, 128), (136, 72)])
def test_default_model_renders_any_multiple_of_8(
    default_pipe: Any, height: int, width: int
) -> None:
    image = _render(
        default_pipe, height=height, width=width, steps=DEFAULT_MODEL_STEPS, cfg=DEFAULT_MODEL_CFG
    )
    assert image.shape == (height, width, 3)
    assert np.isfinite(image).all()


def test_default_model_defaults_to_1024(default_pipe: Any) -> None:
    assert default_pipe.unet.config.sample_size * default_pipe.vae_scale_factor == 1024


def test_default_model_is_built_once(default_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_rebuild(out_dir: Path, **_: object) -> Path:
        raise AssertionError("rebuilt a complete model")

    monkeypatch.setattr(tiny.sd, "build_sd", no_rebuild)
    assert build_default_model(default_model) == default_model
    assert sorted(p.name for p in default_model.parent.iterdir()) == ["model"]


def test_interrupted_default_build_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(out_dir: Path, **_: object) -> Path:
        (out_dir / "model_index.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(tiny.sd, "build_sd", crash)
    with pytest.raises(KeyboardInterrupt):
        build_default_model(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_default_build_never_overwrites_a_foreign_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake(out_dir: Path, **_: object) -> Path:
        (out_dir / "model_index.json").write_text("{}")
        return out_dir

    monkeypatch.setattr(tiny.sd, "build_sd", fake)
    mine = tmp_path / "model" / "notes.txt"
    mine.parent.mkdir()
    mine.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a complete murano default model"):
        build_default_model(mine.parent)
    assert mine.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_importing_the_package_does_not_import_torch() -> None:
    code = "import sys, murano.engine.tiny; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
