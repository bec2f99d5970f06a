"""The upscaling and background-removal engines on tiny real models, loaded the way real
checkpoints are: Swin2SR through transformers, a Real-ESRGAN Compact file through spandrel,
ONNX matting models through ONNX Runtime; tiling, sizing and Venice's pixel cap."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from murano.catalog.postops import (
    MAX_UPSCALE_PIXELS,
    build_postop_entry,
    tiny_entry,
    upscale_size,
    upscale_tier,
)
from murano.engine.params import GenerationParams
from murano.engine.segment import load_matting, load_segment_backend
from murano.engine.tiny.segmenter import build_segmenter, save_segmenter
from murano.engine.upscale import load_upscale_backend, run_tiled, upscale_image
from tests.postops.torchvision_stand_in import ensure_spandrel_importable


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    channels = [x, y, (x + y) / 2] + ([255 - x] if mode == "RGBA" else [])
    return Image.fromarray(np.stack(channels, -1).astype(np.uint8), mode)


def job(image: Image.Image, size: tuple[int, int], task: Any = "upscale") -> GenerationParams:
    return GenerationParams(
        model_id="m",
        prompt="",
        negative_prompt=None,
        width=size[0],
        height=size[1],
        steps=1,
        cfg_scale=0.0,
        seed=1,
        images=1,
        lora_strength=None,
        task=task,
        init_images=(image,),
    )


def digest(folder: Path) -> str:
    hashed = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        hashed.update(path.name.encode() + path.read_bytes())
    return hashed.hexdigest()


# -- sizing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((256, 256), 2, (512, 512)),
        ((256, 256), 4, (1024, 1024)),
        ((1024, 1024), 4, (4096, 4096)),  # exactly at the cap
        ((2048, 2048), 4, (4096, 4096)),  # 4x reduced to 2x
        ((1100, 1000), 4, (4295, 3905)),
        ((4096, 4096), 2, (4096, 4096)),  # at the cap already: 1x
    ],
)
def test_upscale_size_stays_within_the_cap(
    size: tuple[int, int], scale: int, expected: tuple[int, int]
) -> None:
    out = upscale_size(*size, scale)
    assert out == expected
    assert out[0] * out[1] <= MAX_UPSCALE_PIXELS


def test_an_input_over_the_cap_cannot_be_upscaled() -> None:
    with pytest.raises(ValueError, match="16,777,216"):
        upscale_size(4100, 4100, 2)


def test_price_tier_follows_the_factor_delivered() -> None:
    assert upscale_tier(256, 512) == "2x"
    assert upscale_tier(256, 1024) == "4x"
    assert upscale_tier(2048, 4096) == "2x"  # asked 4x, reduced to 2x: priced 2x


# -- tiling -------------------------------------------------------------------------------


class Nearest:
    """A per-pixel "model": nearest-neighbour enlargement, counting its calls."""

    def __init__(self, scale: int, multiple: int = 1) -> None:
        self.scale, self.multiple, self.calls = scale, multiple, 0
        self.memory_bytes = 0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert pixels.shape[-1] % self.multiple == 0 and pixels.shape[-2] % self.multiple == 0
        return pixels.repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2)


@pytest.mark.parametrize(("tile", "overlap"), [(64, 16), (50, 7), (96, 0)])
def test_tiles_blend_to_the_whole_image_result(tile: int, overlap: int) -> None:
    pixels = torch.rand(1, 3, 150, 201)
    model = Nearest(2, multiple=8)
    tiled = run_tiled(model, pixels, tile=tile, overlap=overlap)
    whole = run_tiled(Nearest(2, multiple=8), pixels, tile=1000, overlap=0)
    assert model.calls > 1
    assert tiled.shape == (1, 3, 300, 402)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("model_scale", "factor", "passes"), [(4, 2, 1), (2, 4, 2), (4, 4, 1)])
def test_passes_then_an_exact_resize(model_scale: int, factor: int, passes: int) -> None:
    model = Nearest(model_scale)
    image = gradient(40, 30)
    out = upscale_image(model, image, (40 * factor, 30 * factor), tile=1000, overlap=0)
    assert out.size == (40 * factor, 30 * factor)
    assert model.calls == passes


def test_alpha_survives_the_upscale() -> None:
    out = upscale_image(Nearest(2), gradient(40, 30, "RGBA"), (80, 60), tile=1000, overlap=0)
    assert out.mode == "RGBA"
    alpha = np.asarray(out.getchannel("A"), dtype=np.int16)
    assert alpha[:, 0].mean() > 200 and alpha[:, -1].mean() < 50  # 255 - x, enlarged


# -- tiny real upscalers ------------------------------------------------------------------


def test_tiny_builds_are_reproducible(tmp_path: Path) -> None:
    from murano.engine.tiny import build_tiny

    for family in ("swin2sr", "spandrel", "onnx"):
        again = build_tiny(family, tmp_path / f"{family}-a")
        other = build_tiny(family, tmp_path / f"{family}-b")
        assert digest(again) == digest(other), family
        reseeded = build_tiny(family, tmp_path / f"{family}-c", seed=1)
        assert digest(reseeded) != digest(again), family


def test_swin2sr_loads_with_from_pretrained_and_upscales(tiny_models: dict[str, Path]) -> None:
    entry = tiny_entry("upscale", "up", tiny_models["swin2sr"], "swin2sr")
    backend = load_upscale_backend(entry, "cpu")
    assert backend.model is not None and backend.model.scale == 4
    image = gradient(256, 200)
    (first,), (second,) = backend.generate([job(image, (512, 400)), job(image, (512, 400))])
    assert first.size == (512, 400) and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))  # deterministic
    assert backend.memory_bytes > 0


def test_swin2sr_in_tiles(tiny_models: dict[str, Path]) -> None:
    entry = build_postop_entry(
        {
            "id": "up",
            "type": "upscale",
            "source": str(tiny_models["swin2sr"]),
            "options": {"tile": 128, "tile_overlap": 16},
        }
    )
    assert entry.family == "swin2sr"
    backend = load_upscale_backend(entry, "cpu")
    ((out,),) = backend.generate([job(gradient(300, 256), (600, 512))])
    assert out.size == (600, 512)
    assert np.isfinite(np.asarray(out, dtype=np.float32)).all()


def test_spandrel_loads_a_compact_checkpoint_and_runs_it_twice_for_4x(
    tiny_models: dict[str, Path],
) -> None:
    ensure_spandrel_importable()
    entry = build_postop_entry(
        {
            "id": "esrgan",
            "type": "upscale",
            "source": str(tiny_models["spandrel"]),
            "weight_name": "model.safetensors",
        }
    )
    assert entry.family == "spandrel"
    backend = load_upscale_backend(entry, "cpu")
    assert backend.model is not None and backend.model.scale == 2
    ((out,),) = backend.generate([job(gradient(64, 48), (256, 192))])
    assert out.size == (256, 192)


def test_spandrel_refuses_a_file_that_is_no_upscaler(tmp_path: Path) -> None:
    ensure_spandrel_importable()
    from safetensors.torch import save_file

    save_file({"nothing.weight": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    entry = build_postop_entry(
        {"id": "x", "type": "upscale", "source": str(tmp_path / "x.safetensors")}
    )
    with pytest.raises(Exception, match="not an architecture spandrel supports"):
        load_upscale_backend(entry, "cpu")


# -- background removal -------------------------------------------------------------------


def red_model(tmp_path: Path, *, logits: bool = False, mean: float = 0.0, std: float = 1.0) -> Path:
    """An ONNX model whose alpha is the (normalised) red channel, as logits if asked."""
    kernel = np.zeros((1, 3, 3, 3), np.float32)
    kernel[0, 0, 1, 1] = 8.0 if logits else 1.0
    bias = np.asarray([-4.0 if logits else 0.0], np.float32)
    return save_segmenter(
        tmp_path / "red",
        [("Conv", ["pixel_values", "w", "b"], ["alphas"])],
        {"w": kernel, "b": bias},
        size=64,
        mean=mean,
        std=std,
    )


def remover(folder: Path, **options: Any) -> Any:
    entry = build_postop_entry(
        {"id": "bg", "type": "background-remove", "source": str(folder), "options": options}
    )
    return load_segment_backend(entry)


def test_alpha_is_the_models_output_at_the_images_size(tmp_path: Path) -> None:
    image = gradient(64, 64)
    ((cut,),) = remover(red_model(tmp_path)).generate([job(image, image.size, "background-remove")])
    assert cut.mode == "RGBA" and cut.size == (64, 64)
    alpha = np.asarray(cut.getchannel("A"), dtype=np.int16)
    red = np.asarray(image.getchannel("R"), dtype=np.int16)
    assert np.abs(alpha - red).max() <= 1
    assert np.array_equal(np.asarray(cut.convert("RGB")), np.asarray(image))


def test_logits_get_a_sigmoid_automatically(tmp_path: Path) -> None:
    image = gradient(64, 64)
    matting = load_matting(
        build_postop_entry(
            {
                "id": "bg",
                "type": "background-remove",
                "source": str(red_model(tmp_path, logits=True)),
            }
        )
    )
    alpha = np.asarray(matting.alpha(image), dtype=np.float32) / 255
    red = np.asarray(image.getchannel("R"), dtype=np.float32) / 255
    expected = 1 / (1 + np.exp(-(8 * red - 4)))
    assert np.abs(alpha - expected).max() < 0.01


def test_minmax_and_the_preprocessor_config(tmp_path: Path) -> None:
    image = gradient(64, 64)
    folder = red_model(tmp_path, mean=0.5, std=0.25)  # alpha = (r - 0.5) / 0.25, in -2..2
    alpha = np.asarray(remover(folder, activation="minmax").matting.alpha(image), np.float32)
    assert alpha.min() == 0 and alpha.max() == 255
    clipped = np.asarray(remover(folder, activation="none").matting.alpha(image), np.float32)
    red = np.asarray(image.getchannel("R"), dtype=np.float32) / 255
    expected = np.clip((red - 0.5) / 0.25, 0, 1) * 255
    assert np.abs(clipped - expected).max() <= 1.5


def test_tiny_segmenter_on_any_size_and_existing_alpha(tiny_models: dict[str, Path]) -> None:
    backend = remover(tiny_models["onnx"])
    image = gradient(300, 256, "RGBA")
    ((cut,),) = backend.generate([job(image, image.size, "background-remove")])
    assert cut.size == (300, 256) and cut.mode == "RGBA"
    # The input's own transparency stays transparent.
    assert np.asarray(cut.getchannel("A"))[:, -1].max() <= 1


def test_a_folder_without_an_onnx_file_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        remover(tmp_path / "empty")


def test_build_segmenter_writes_a_loadable_model(tmp_path: Path) -> None:
    folder = build_segmenter(tmp_path / "seg")
    assert {p.name for p in folder.iterdir()} == {"model.onnx", "preprocessor_config.json"}
    assert remover(folder).matting.size == (64, 64)
