"""Each speed setting on the tiny models of the families it applies to: the model loads
with it, generates, and the setting is in effect; what this machine cannot honour fails
the load with an error naming the setting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.optimize import OptimizeError, denoiser, warmup_params
from tests.families.conftest import TinyModels, pixels
from tests.optimize.conftest import optimized, params


def first_image(backend: DiffusersBackend, **fields: object) -> np.ndarray:
    return pixels(backend.generate([params(backend.entry, **fields)])[0][0])


@pytest.mark.parametrize("family", ["flux", "z-image", "sd"])
def test_native_attention_loads_and_gives_the_default_image(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str
) -> None:
    plain = load_backend(optimized(tiny_models, family))
    native = load_backend(optimized(tiny_models, family, "native", attention="native"))
    loaded.extend([plain, native])
    assert np.array_equal(first_image(plain), first_image(native))


@pytest.mark.parametrize(
    ("family", "backend", "why"),
    [
        ("flux", "flash", "needs a CUDA device; this model runs on cpu"),
        ("flux", "sage", "needs a CUDA device"),
        ("z-image", "_flash_3", "needs a CUDA device"),
        ("flux", "flash_hub", "downloads kernels from the hub"),
        ("flux", "bogus", "unknown backend 'bogus'"),
        ("sdxl", "_native_math", "only 'native' applies"),
    ],
)
def test_an_attention_backend_this_machine_cannot_run_fails_the_load(
    tiny_models: TinyModels, family: str, backend: str, why: str
) -> None:
    with pytest.raises(OptimizeError, match=rf"optimize\.attention: .*{why}"):
        load_backend(optimized(tiny_models, family, attention=backend))


@pytest.mark.parametrize(("family", "component"), [("flux", "transformer"), ("sd", "unet")])
def test_int8_weight_only_quantization_runs_on_the_cpu(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str, component: str
) -> None:
    pytest.importorskip("torchao")
    plain = load_backend(optimized(tiny_models, family))
    quantized = load_backend(optimized(tiny_models, family, "int8", quantize={component: "int8wo"}))
    loaded.extend([plain, quantized])
    weights = [
        type(m.weight).__name__
        for m in denoiser(quantized.pipeline).modules()
        if type(m).__name__ == "Linear"
    ]
    assert weights and all(name == "Int8Tensor" for name in weights)
    reference, image = first_image(plain), first_image(quantized)
    assert image.shape == reference.shape
    # Weights rounded to 8 bits: a close image, not the same one (measured: under a level
    # on average on these models; a different seed differs by about 85).
    assert np.abs(image - reference).mean() <= 4


def test_quantizing_the_text_encoder_too(
    tiny_models: TinyModels, loaded: list[DiffusersBackend]
) -> None:
    pytest.importorskip("torchao")
    backend = load_backend(
        optimized(
            tiny_models, "flux", quantize={"transformer": "int8wo", "text_encoder_2": "int8wo"}
        )
    )
    loaded.append(backend)
    encoder = backend.pipeline.text_encoder_2
    assert any(type(p).__name__ == "Int8Tensor" for p in encoder.parameters())
    assert first_image(backend).shape == (64, 64, 3)


@pytest.mark.parametrize(
    ("quantize", "why"),
    [
        ({"transformer": "float8wo"}, "float8wo needs a CUDA GPU; this model runs on cpu"),
        ({"transformer": "nf4"}, r"nf4 \(bitsandbytes\) needs a CUDA device"),
        ({"unet": "int8wo"}, "the pipeline has no unet; it has .*transformer"),
    ],
)
def test_a_quantization_this_machine_cannot_run_fails_the_load(
    tiny_models: TinyModels, quantize: dict[str, str], why: str
) -> None:
    pytest.importorskip("torchao")
    with pytest.raises(OptimizeError, match=rf"optimize\.quantize\.\w+: {why}"):
        load_backend(optimized(tiny_models, "flux", quantize=quantize))


@pytest.mark.parametrize("family", ["flux"])
def test_vae_tiling_and_slicing(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str
) -> None:
    backend = load_backend(optimized(tiny_models, family, vae_tiling=True, vae_slicing=True))
    loaded.append(backend)
    vae = backend.pipeline.vae
    assert vae.use_tiling and vae.use_slicing
    # Two images in one call: slicing decodes them one at a time.
    batch = backend.generate([params(backend.entry, variants=2)])[0]
    assert [image.size for image in batch] == [(64, 64), (64, 64)]


@pytest.mark.parametrize("family", ["sd"])
def test_channels_last(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str
) -> None:
    import torch

    plain = load_backend(optimized(tiny_models, family))
    backend = load_backend(optimized(tiny_models, family, "cl", channels_last=True))
    loaded.extend([plain, backend])
    conv = backend.pipeline.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(first_image(backend) - first_image(plain)).max() <= 1


@pytest.mark.parametrize("family", ["flux", "sd"])
def test_warmup_runs_every_shape_inside_the_load(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str
) -> None:
    import diffusers

    from murano.engine.families import adapter_for

    pipeline_cls = getattr(diffusers, adapter_for(family).pipeline_class)
    original = pipeline_cls.__call__
    shapes = [{"width": 64, "height": 64, "batch": 2}, {"width": 32, "height": 64}]
    entry = optimized(tiny_models, family, warmup=shapes)
    calls: list[tuple[int, int, int]] = []

    def spy(pipe: object, *args: object, **kwargs: object) -> object:
        prompts = kwargs["prompt"]
        assert isinstance(prompts, list)
        calls.append((int(kwargs["width"]), int(kwargs["height"]), len(prompts)))  # type: ignore[call-overload]
        return original(pipe, *args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline_cls, "__call__", spy)
        backend = load_backend(entry)
    loaded.append(backend)
    assert calls == [(64, 64, 2), (32, 64, 1)]
    assert [p.images for p in warmup_params(entry)] == [2, 1]


def test_warmup_also_runs_without_the_cache_where_requests_may_turn_it_off(
    tiny_models: TinyModels,
) -> None:
    entry = optimized(
        tiny_models,
        "flux",
        cache={"type": "first-block", "allow_request_off": True},
        warmup=[{"width": 64, "height": 64}],
    )
    assert [p.step_cache for p in warmup_params(entry)] == [True, False]


def test_quantizing_a_single_file_source_is_refused_before_reading_it(tmp_path: Path) -> None:
    from murano.catalog.entries import build_entry

    missing = tmp_path / "never-read.safetensors"
    model = build_entry(
        {"id": "one-file", "source": str(missing), "device": "cpu",
         "optimize": {"quantize": {"unet": "int8wo"}}},
        family="sd",
    )  # fmt: skip
    with pytest.raises(OptimizeError, match=r"optimize\.quantize: works on diffusers-format"):
        load_backend(model)
