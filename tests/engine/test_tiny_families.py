"""The tiny pipelines of every family: built offline, loaded back by diffusers, rendering
reproducibly; their LoRAs, SDXL's single-file export, the tokenizers, and the CLI.

Each family is built once per session (the module-scoped, parametrized `model_dir`), and
pytest groups the tests by family so that only one family's pipeline is alive at a time.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from murano.cli import main
from murano.engine.tiny import FAMILIES, PIPELINE_CLASSES, build_tiny
from murano.engine.tiny._tokenizers import (
    build_llama_tokenizer,
    build_mistral_tokenizer,
    build_qwen2_tokenizer,
    build_t5_tokenizer,
)
from murano.engine.tiny.lora import LORA_WEIGHT_NAME, build_tiny_lora
from murano.engine.tiny.single_file import export_single_file

# Everything here must work with no hub access. Set before diffusers is first imported
# (the builders import it lazily), since huggingface_hub reads it once at import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

Image = NDArray[np.float32]

ALL_FAMILIES = ("sd", "sdxl", "sd3", "flux", "flux2", "chroma", "z-image", "qwen-image", "hidream")
PROMPT = "a red cat on a sofa"


def _diffusers() -> Any:
    return importlib.import_module("diffusers")


def _load(model_dir: Path, family: str) -> Any:
    pipe = _diffusers().DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    if family == "hidream":
        # HiDream renders at the area of (default_sample_size × 8)², whatever the size
        # asked for; the attribute is saved in no config.
        pipe.default_sample_size = 8
    return pipe


def _render(pipe: Any, prompt: str = PROMPT, *, size: int = 64, seed: int = 0) -> Image:
    import torch

    # `prompt=` by name: Flux2Pipeline's first positional parameter is `image`.
    result = pipe(
        prompt=prompt,
        height=size,
        width=size,
        num_inference_steps=2,
        generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )
    return np.asarray(result.images[0], dtype=np.float32)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny models' kernels are far too small to gain from threads; on a shared machine
    # each op otherwise waits for a descheduled worker thread.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def model_dir(family: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(family, tmp_path_factory.mktemp(family) / "model")


@pytest.fixture(scope="module")
def pipe(model_dir: Path, family: str) -> Any:
    return _load(model_dir, family)


@pytest.fixture(scope="module")
def base_image(pipe: Any) -> Image:
    return _render(pipe)


# --- the registry ------------------------------------------------------------------------


def test_every_family_is_registered_with_its_pipeline_class() -> None:
    assert FAMILIES == ALL_FAMILIES
    assert tuple(PIPELINE_CLASSES) == ALL_FAMILIES


def test_unknown_family_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'flux3'.*known families: sd, sdxl, sd3, .*hidream"):
        build_tiny("flux3", tmp_path)


# --- every family ------------------------------------------------------------------------


def test_loads_back_as_the_family_pipeline(model_dir: Path, pipe: Any, family: str) -> None:
    index = json.loads((model_dir / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASSES[family]
    assert type(pipe) is getattr(_diffusers(), PIPELINE_CLASSES[family])
    assert pipe.vae_scale_factor == 8  # a 4-level VAE, as in the real models
    assert list(model_dir.rglob("*.safetensors"))
    assert not list(model_dir.rglob("*.bin"))


def test_renders_a_finite_64px_image(base_image: Image) -> None:
    assert base_image.shape == (64, 64, 3)
    assert np.isfinite(base_image).all()
    assert base_image.std() > 0.01  # an image, not a flat fill


def test_same_seed_same_image_and_the_prompt_matters(pipe: Any, base_image: Image) -> None:
    np.testing.assert_array_equal(_render(pipe), base_image)
    assert not np.array_equal(_render(pipe, seed=1), base_image)
    assert not np.array_equal(_render(pipe, "a blue dog"), base_image)


def test_same_build_seed_same_weights(model_dir: Path, family: str, tmp_path: Path) -> None:
    again = build_tiny(family, tmp_path / "again", seed=0)
    other = build_tiny(family, tmp_path / "other", seed=1)
    weights = sorted(path.relative_to(model_dir) for path in model_dir.rglob("*.safetensors"))
    assert weights == sorted(path.relative_to(again) for path in again.rglob("*.safetensors"))
    for relative in weights:
        assert (again / relative).read_bytes() == (model_dir / relative).read_bytes(), relative
    denoiser = next(p for p in weights if p.parts[0] in ("unet", "transformer"))
    assert (other / denoiser).read_bytes() != (model_dir / denoiser).read_bytes()


def test_lora_scales_from_no_effect_to_a_change(
    model_dir: Path, family: str, base_image: Image, tmp_path: Path
) -> None:
    lora_dir = build_tiny_lora(family, model_dir, tmp_path / "lora")
    assert sorted(path.name for path in lora_dir.iterdir()) == [LORA_WEIGHT_NAME]
    fresh = _load(model_dir, family)
    fresh.load_lora_weights(lora_dir, adapter_name="tiny")
    fresh.set_adapters(["tiny"], adapter_weights=[0.0])
    np.testing.assert_array_equal(_render(fresh), base_image)
    fresh.set_adapters(["tiny"], adapter_weights=[1.0])
    assert not np.array_equal(_render(fresh), base_image)


# --- family quirks -----------------------------------------------------------------------


@pytest.mark.parametrize("family", ["hidream"], indirect=True)
def test_hidream_renders_its_default_area_whatever_the_size(pipe: Any) -> None:
    pipe.default_sample_size = 16
    try:
        assert _render(pipe, size=64).shape == (128, 128, 3)
    finally:
        pipe.default_sample_size = 8


@pytest.mark.parametrize("family", ["z-image"], indirect=True)
def test_z_image_pad_tokens_are_defined(pipe: Any) -> None:
    # Some diffusers releases allocate them uninitialised (garbage, even NaN).
    assert bool((pipe.transformer.x_pad_token == 1).all())
    assert bool((pipe.transformer.cap_pad_token == 1).all())


def test_lora_refuses_an_unknown_family_or_a_folder_without_a_pipeline(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown model family 'sd4'; known families: sd, "):
        build_tiny_lora("sd4", tmp_path, tmp_path / "lora")
    with pytest.raises(FileNotFoundError, match=r"no model_index\.json"):
        build_tiny_lora("flux", tmp_path, tmp_path / "lora")


@pytest.mark.parametrize("family", ["sd"], indirect=True)
def test_lora_names_the_pipeline_it_found(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds a StableDiffusionPipeline, not the FluxPipeline"):
        build_tiny_lora("flux", model_dir, tmp_path / "lora")
    assert not (tmp_path / "lora").exists()


# --- SDXL single file --------------------------------------------------------------------


@pytest.mark.parametrize("family", ["sdxl"], indirect=True)
def test_sdxl_single_file_loads_and_matches_folder(
    model_dir: Path, base_image: Image, tmp_path: Path
) -> None:
    from safetensors import safe_open

    checkpoint = export_single_file(model_dir, tmp_path / "tiny-sdxl.safetensors")
    with safe_open(str(checkpoint), framework="pt") as handle:
        keys = set(handle.keys())
    assert {
        "model.diffusion_model.label_emb.0.0.weight",
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight",
        "first_stage_model.quant_conv.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight",
        "conditioner.embedders.1.model.text_projection",
    } <= keys
    single = _diffusers().StableDiffusionXLPipeline.from_single_file(
        str(checkpoint), config=str(model_dir), local_files_only=True
    )
    single.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(_render(single), base_image)


@pytest.mark.parametrize("family", ["flux"], indirect=True)
def test_single_file_export_refuses_transformer_families(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"FluxPipeline.*supported: .*StableDiffusionXLPipeline"):
        export_single_file(model_dir, tmp_path / "flux.safetensors")


# --- tokenizers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [build_t5_tokenizer, build_qwen2_tokenizer, build_llama_tokenizer, build_mistral_tokenizer],
)
def test_tokenizers_round_trip_through_auto_tokenizer(build: Any, tmp_path: Path) -> None:
    tokenizer = build()
    tokenizer.save_pretrained(tmp_path)
    reloaded = importlib.import_module("transformers").AutoTokenizer.from_pretrained(tmp_path)
    text = "A red cat, naïve 🐈!"
    assert reloaded(text).input_ids == tokenizer(text).input_ids
    assert reloaded.chat_template == tokenizer.chat_template
    assert tokenizer.pad_token_id is not None


def test_t5_tokenizer_ends_with_eos_and_pads_with_zero() -> None:
    tokenizer = build_t5_tokenizer()
    ids = tokenizer("a cat", padding="max_length", max_length=8).input_ids
    assert ids[-3:] == [0, 0, 0]
    assert tokenizer.eos_token_id in ids
    assert len(tokenizer) == 192


def test_qwen2_chat_template_thinks_only_when_asked() -> None:
    tokenizer: Any = build_qwen2_tokenizer()  # apply_chat_template's stubs want str content
    messages = [{"role": "user", "content": [{"type": "text", "text": "a cat"}]}]
    render = tokenizer.apply_chat_template
    thinking = render(messages, tokenize=False, add_generation_prompt=True, enable_thinking=True)
    assert thinking == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    plain = render(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert plain == thinking + "<think>\n\n</think>\n\n"
    ids = tokenizer(thinking).input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")  # a single token


def test_mistral_chat_template_wraps_system_and_user() -> None:
    tokenizer: Any = build_mistral_tokenizer()  # apply_chat_template's stubs want str content
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {"role": "user", "content": [{"type": "text", "text": "a cat"}]},
    ]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]a cat[/INST]"
    inputs = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, padding="max_length", max_length=64
    )
    assert len(inputs["input_ids"]) == 64
    opening = tokenizer.convert_tokens_to_ids(["<s>", "[SYSTEM_PROMPT]"])
    assert inputs["input_ids"][:2] == opening  # special tokens, not spelled out in bytes


def test_llama_tokenizer_starts_with_begin_of_text() -> None:
    tokenizer = build_llama_tokenizer()
    ids = tokenizer("a cat").input_ids
    assert ids[0] == tokenizer.bos_token_id == tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    assert tokenizer.pad_token == tokenizer.eos_token == "<|end_of_text|>"


# --- the CLI -----------------------------------------------------------------------------


def test_cli_builds_a_tiny_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "chroma"
    assert main(["models", "tiny", "--family", "chroma", "--out", str(out), "--seed", "3"]) == 0
    assert str(out) in capsys.readouterr().out
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "ChromaPipeline"


def test_cli_refuses_an_unknown_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["models", "tiny", "--family", "sd4", "--out", str(tmp_path / "x")])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "'sd4'" in error
    assert all(name in error for name in ALL_FAMILIES)
    assert not (tmp_path / "x").exists()


def test_cli_never_writes_over_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    assert main(["models", "tiny", "--family", "flux", "--out", str(tmp_path)]) == 1
    assert "not an empty folder" in capsys.readouterr().err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("family", ["flux"], indirect=True)
def test_cli_builds_a_tiny_lora(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lora"
    argv = ["models", "tiny-lora", "--family", "flux", "--model", str(model_dir), "--out"]
    assert main([*argv, str(out)]) == 0
    assert (out / LORA_WEIGHT_NAME).is_file()
    wrong = ["models", "tiny-lora", "--family", "sdxl", "--model", str(model_dir), "--out"]
    assert main([*wrong, str(tmp_path / "wrong")]) == 2
    assert "holds a FluxPipeline, not the StableDiffusionXLPipeline" in capsys.readouterr().err
