"""Edits on tiny real pipelines through `load_backend`: image-to-image and inpainting on the
generation families (diffusers' pipelines made with `from_pipe`, sharing the weights) and
instruction edits on the families built for them (FLUX.1 Kontext; FLUX.2 reference images),
each keeping the shared invariants: same seed → same image, batched == alone, and the input
(and mask) visibly steers the result."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from murano.catalog.editing import attach_inputs, check_edit
from murano.catalog.entries import ModelEntry
from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.params import GenerationParams
from tests.families.conftest import BATCH_TOLERANCE, TinyModels, max_diff, tiny_entry

# (family, task) pairs; the task follows from the family and whether a mask is given.
CASES = [("sd", "img2img"), ("sd", "inpaint"), ("flux-kontext", "edit"), ("flux2", "edit")]
SIZE = 64
pytestmark = pytest.mark.slow
DIFFERENT = 10


def _source(color: tuple[int, int, int], size: tuple[int, int] = (320, 256)) -> Image.Image:
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 8):
        for y in range(0, size[1], 8):
            if (x + y) % 16 == 0:
                image.putpixel((x, y), (255 - color[0], 255 - color[1], 255 - color[2]))
    return image


RED, BLUE = _source((200, 30, 30)), _source((20, 40, 210))


def _mask(left: bool) -> Image.Image:
    """White (repaint) over a 16-px square in the top-left or the bottom-right corner.
    Small: a random VAE's group norms let a large repainted area drown the kept one."""
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, 16, 16) if left else (SIZE - 16, SIZE - 16, SIZE, SIZE))
    return mask


def edit(
    entry: ModelEntry,
    *,
    images: tuple[Image.Image, ...] = (RED,),
    mask: Image.Image | None = None,
    **changes: Any,
) -> GenerationParams:
    params = check_edit(
        entry,
        prompt=changes.pop("prompt", "make it blue"),
        aspect_ratio=None,
        resolution=None,
        first_size=images[0].size,
        inputs=len(images),
        masked=mask is not None,
    )
    fields: dict[str, Any] = {
        "width": SIZE,
        "height": SIZE,
        "steps": 2,
        "seed": 1,
        "cfg_scale": entry.family_info.cfg_off_at,
    }
    params = dataclasses.replace(params, **{**fields, **changes})
    return attach_inputs(params, images, mask)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    # Tiny kernels gain nothing from threads; on a shared machine they wait on each other.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    return TinyModels(tmp_path_factory.mktemp("tiny-edit-families"))


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{t}" for f, t in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str]:
    family, task = request.param
    return str(family), str(task)


@pytest.fixture(scope="module")
def entry(case: tuple[str, str], tiny_models: TinyModels) -> ModelEntry:
    family = case[0]
    return tiny_entry(family, tiny_models.path(family))


@pytest.fixture(scope="module")
def backend(entry: ModelEntry) -> Iterator[DiffusersBackend]:
    loaded = load_backend(entry)
    yield loaded
    loaded.unload()


@pytest.fixture
def job(case: tuple[str, str], entry: ModelEntry) -> GenerationParams:
    params = edit(entry, mask=_mask(left=True) if case[1] == "inpaint" else None)
    assert params.task == case[1]
    return params


def one(backend: DiffusersBackend, params: GenerationParams) -> Image.Image:
    return backend.generate([params])[0][0]


def test_same_seed_same_image_another_seed_another(
    backend: DiffusersBackend, job: GenerationParams
) -> None:
    first = one(backend, job)
    assert first.size == (SIZE, SIZE)
    assert max_diff(first, one(backend, job)) == 0
    assert max_diff(first, one(backend, dataclasses.replace(job, seed=2))) > DIFFERENT


def test_the_input_steers_the_result(
    backend: DiffusersBackend, entry: ModelEntry, job: GenerationParams
) -> None:
    other = edit(entry, images=(BLUE,), mask=job.mask)
    # Random tiny weights pass an input's colours on only faintly (a level or two for the
    # transformers); the same call repeats exactly, so any change proves the input is used.
    assert max_diff(one(backend, job), one(backend, other)) > 0


def test_batched_gives_what_alone_gives(
    backend: DiffusersBackend, entry: ModelEntry, job: GenerationParams
) -> None:
    if job.task == "edit":
        # An instruction edit's inputs are its call's: it batches with itself (variants).
        batched = backend.generate([dataclasses.replace(job, images=2)])[0]
        alone = [one(backend, job), one(backend, dataclasses.replace(job, seed=2))]
    else:
        other = edit(entry, images=(BLUE,), mask=job.mask, prompt="a ship", seed=5)
        batched = [images[0] for images in backend.generate([job, other])]
        alone = [one(backend, job), one(backend, other)]
    for together, single in zip(batched, alone, strict=True):
        assert max_diff(together, single) <= BATCH_TOLERANCE


def test_edits_reuse_the_loaded_weights(backend: DiffusersBackend, job: GenerationParams) -> None:
    before = backend.memory_bytes
    pipe = backend.pipeline_for(job.task)
    assert (
        pipe.transformer is backend.pipeline.transformer
        if hasattr(pipe, "transformer")
        else (pipe.unet is backend.pipeline.unet)
    )
    assert pipe.vae is backend.pipeline.vae
    assert backend.memory_bytes == before


def test_inpainting_follows_the_mask(
    backend: DiffusersBackend, entry: ModelEntry, case: tuple[str, str]
) -> None:
    if case[1] != "inpaint":
        pytest.skip("masks are for inpainting")
    left = one(backend, edit(entry, mask=_mask(left=True)))
    right = one(backend, edit(entry, mask=_mask(left=False)))
    assert max_diff(left, right) > DIFFERENT


def test_flux2_takes_several_reference_images(tiny_models: TinyModels) -> None:
    entry = tiny_entry("flux2", tiny_models.path("flux2"))
    backend = load_backend(entry)
    try:
        both = one(backend, edit(entry, images=(RED, BLUE)))
        first = one(backend, edit(entry, images=(RED,)))
        assert both.size == (SIZE, SIZE)
        assert max_diff(both, first) > 0
    finally:
        backend.unload()


def test_the_cli_builds_the_edit_families(tmp_path: Path) -> None:
    from murano.cli import main

    out = tmp_path / "kontext"
    assert main(["models", "tiny", "--family", "flux-kontext", "--out", str(out)]) == 0
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "FluxKontextPipeline"
