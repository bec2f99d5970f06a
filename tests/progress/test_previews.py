"""Live previews: the latent-to-RGB projection of every layout (plain, packed 2×2 patches,
video-style), the published tables where a model's channels match them, a tiny VAE named in
the entry, and previews produced from inside real tiny pipelines' step callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL.Image import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from murano.catalog.entries import ModelEntry
from murano.engine.previews import (
    LATENT_RGB,
    TinyVaeDecoder,
    latent_grid,
    preview_images,
    preview_size,
)
from murano.engine.tiny import build_tiny


def _pack(latents: torch.Tensor) -> torch.Tensor:
    """What FLUX.1's, Chroma's and Qwen-Image's pipelines do to (B, C, H, W) latents."""
    b, c, h, w = latents.shape
    packed = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return packed.reshape(b, (h // 2) * (w // 2), c * 4)


def test_preview_size_keeps_the_aspect_and_caps_the_longer_side() -> None:
    assert preview_size(1024, 1024) == (256, 256)
    assert preview_size(1360, 768, 256) == (256, 145)
    assert preview_size(768, 1360, 256) == (145, 256)
    assert preview_size(64, 32) == (64, 32)  # never enlarged


def test_packed_latents_unpack_to_the_original_grid() -> None:
    latents = torch.randn(2, 16, 12, 20)  # a 160×96 FLUX image
    assert torch.equal(latent_grid(_pack(latents), 160, 96), latents)


def test_a_video_style_latent_previews_its_first_frame() -> None:
    latents = torch.randn(1, 16, 1, 8, 8)
    assert torch.equal(latent_grid(latents, 64, 64), latents[:, :, 0])


@pytest.mark.parametrize("family", sorted(LATENT_RGB))
def test_every_family_table_projects_its_own_channels(family: str) -> None:
    table = LATENT_RGB[family]
    latents = torch.zeros(2, table.channels, 16, 24)
    images = preview_images(family, latents, width=192, height=128, max_side=96)
    assert [img.size for img in images] == [(96, 64), (96, 64)]
    # Zero latents show the table's bias, not a stretched fallback.
    expected = tuple(round(min(1, max(0, (b + 1) / 2)) * 255) for b in table.bias)
    assert images[0].getpixel((40, 30)) == expected


def test_flux2_packed_tokens_use_the_32_channel_table() -> None:
    latents = torch.zeros(1, 4 * 8, 32, 32)
    latents[:, 3] = 1.0  # channel 3 has the largest (R, G, B) factors of FLUX.2's table
    image = preview_images("flux2", _pack(latents), width=256, height=256)[0]
    r, g, b = LATENT_RGB["flux2"].factors[3]
    br, bg, bb = LATENT_RGB["flux2"].bias
    assert image.getpixel((128, 128)) == tuple(
        round((v + bias + 1) / 2 * 255) for v, bias in ((r, br), (g, bg), (b, bb))
    )


def test_channels_no_table_fits_fall_back_to_a_stretched_view() -> None:
    latents = torch.randn(1, 4, 8, 8)
    # At latent resolution (no resampling) the darkest value is 0, the brightest 255.
    (image,) = preview_images("flux", latents, width=8, height=8)
    pixels = np.asarray(image)
    assert image.size == (8, 8) and pixels.min() == 0 and pixels.max() == 255


def test_latents_that_track_gradients_are_previewed() -> None:
    latents = torch.randn(1, 4, 8, 8, requires_grad=True)
    (image,) = preview_images("sd", latents, width=64, height=64)
    assert isinstance(image, Image)


# -- inside real pipelines ---------------------------------------------------------------

FAMILIES = ["sd", "flux", "z-image", "qwen-image"]


@pytest.fixture(scope="module", params=FAMILIES)
def tiny_pipe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import diffusers

    family: str = request.param
    model_dir = build_tiny(family, tmp_path_factory.mktemp(family) / "model")
    pipe = diffusers.DiffusionPipeline.from_pretrained(model_dir)
    pipe.set_progress_bar_config(disable=True)
    return family, pipe


@pytest.mark.slow
def test_the_step_callback_yields_previews_of_the_image_aspect(tiny_pipe: Any) -> None:
    family, pipe = tiny_pipe
    width, height = 64, 32
    seen: list[tuple[int, list[Image]]] = []

    def on_step(pipeline: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        seen.append((step, preview_images(family, kwargs["latents"], width=width, height=height)))
        return kwargs

    pipe(
        prompt=["a red cat", "a blue dog"],
        width=width,
        height=height,
        num_inference_steps=2,
        generator=[torch.Generator().manual_seed(i) for i in range(2)],
        callback_on_step_end=on_step,
        output_type="pil",
    )
    assert [step for step, _ in seen] == [0, 1]
    for _, images in seen:
        assert [img.size for img in images] == [(64, 32), (64, 32)]


@pytest.mark.slow
def test_a_tiny_vae_named_in_the_entry_decodes_previews(tmp_path: Path) -> None:
    import diffusers

    torch.manual_seed(0)
    vae = diffusers.AutoencoderTiny(
        in_channels=3,
        out_channels=3,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        latent_channels=4,
    )
    vae.save_pretrained(tmp_path / "taesd")
    entry = ModelEntry.model_validate(
        {
            "id": "m",
            "source": "/nowhere",
            "family": "sd",
            "preview_vae": str(tmp_path / "taesd"),
            "model_spec": {"name": "M"},
        }
    )
    assert entry.preview_vae is not None
    decoder = TinyVaeDecoder(entry.preview_vae)
    images = preview_images(
        "sd", torch.randn(1, 4, 4, 8), width=64, height=32, max_side=48, decoder=decoder
    )
    assert [img.size for img in images] == [(48, 24)]


@pytest.mark.slow
def test_the_diffusers_backend_hands_previews_to_the_step_control(tmp_path: Path) -> None:
    from murano.catalog.entries import build_entry
    from murano.engine.diffusers_backend import load_backend
    from murano.engine.params import GenerationParams

    model_dir = build_tiny("flux", tmp_path / "flux")
    entry = build_entry({"id": "t", "source": str(model_dir), "device": "cpu"}, family="flux")
    backend = load_backend(entry)
    seen: list[tuple[int, int, list[tuple[int, int]]]] = []

    class Control:
        def on_step(self, step: int, steps: int, preview: Any) -> bool:
            seen.append((step, steps, [img.size for img in preview()]))
            return True

    params = GenerationParams(
        model_id="t", prompt="a cat", negative_prompt=None, width=64, height=32, steps=2,
        cfg_scale=1.0, seed=1, images=2, lora_strength=None,
    )  # fmt: skip
    backend.generate([params], Control())
    assert seen == [(1, 2, [(64, 32), (64, 32)]), (2, 2, [(64, 32), (64, 32)])]
