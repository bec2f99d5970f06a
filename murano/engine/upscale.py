"""Upscaling: a super-resolution model, run in tiles, then (when `creativity` asks for it) a
low-strength image-to-image pass on the default generation model.

Two kinds of checkpoint load (`family` of the entry, see `murano.catalog.postops`):

- `swin2sr`: a transformers Swin2SR folder or hub repo (`caidas/swin2SR-*`), loaded with
  `Swin2SRForImageSuperResolution.from_pretrained` (safetensors only);
- `spandrel`: one `.pth`/`.safetensors` file of any architecture spandrel detects (ESRGAN,
  Real-ESRGAN and its Compact variant, SwinIR, HAT, DAT, SPAN, OmniSR, …), loaded with
  `spandrel.ModelLoader` the way ComfyUI loads its `upscale_models`. spandrel needs
  torchvision, so it is an optional extra: `pip install "murano-server[spandrel]"` with the
  torchvision build that matches your torch.

A model enlarges by its own factor (2 or 4 as a rule). The requested size is reached with as
many passes as needed, then a Lanczos resize to the exact size: an x4 model asked for 2x
runs once and is scaled down; an x2 model asked for 4x runs twice. Each pass goes through the
image in overlapping tiles of at most `tile` pixels a side, blended linearly across the
overlap, so memory does not grow with the image. Alpha, when the input has it, is resized
with Lanczos and put back.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

from PIL import Image as PILImage
from PIL.Image import Image

from murano.catalog.entries import ModelEntry
from murano.catalog.postops import upscale_options
from murano.engine._weights import weights_file
from murano.engine.params import GenerationParams

__all__ = [
    "CREATIVITY_TO_STRENGTH",
    "Refiner",
    "SuperResolution",
    "UpscaleBackend",
    "creativity_refiner",
    "load_super_resolution",
    "load_upscale_backend",
    "run_tiled",
    "upscale_image",
]

# The creativity pass: (upscaled image, the job's params) → the refined image.
Refiner = Callable[[Image, GenerationParams], Image]


class SuperResolution(Protocol):
    """A loaded super-resolution network: (1, 3, h, w) floats in 0–1 → (1, 3, h·s, w·s)."""

    scale: int
    # Input sides are padded (by edge replication) to a multiple of this.
    multiple: int

    def __call__(self, pixels: Any) -> Any: ...

    @property
    def memory_bytes(self) -> int: ...


@dataclasses.dataclass
class _TorchSR:
    module: Any
    scale: int
    multiple: int
    output: Callable[[Any], Any]

    def __call__(self, pixels: Any) -> Any:
        return self.output(self.module(pixels))

    @property
    def memory_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.module.state_dict().values())


def _load_swin2sr(entry: ModelEntry, device: str) -> SuperResolution:
    from transformers import Swin2SRForImageSuperResolution

    kwargs: dict[str, Any] = {"revision": entry.revision, "token": os.environ.get("HF_TOKEN")}
    model: Any = Swin2SRForImageSuperResolution.from_pretrained(
        entry.source, use_safetensors=True, **kwargs
    )
    model = model.eval().to(device)
    config = model.config
    return _TorchSR(
        module=model,
        scale=int(config.upscale),
        multiple=int(config.window_size),
        output=lambda out: out.reconstruction,
    )


def _load_spandrel(entry: ModelEntry, device: str) -> SuperResolution:
    try:
        from spandrel import ImageModelDescriptor, ModelLoader, UnsupportedModelError
    except ImportError as exc:
        raise RuntimeError(
            f"model {entry.id!r}: spandrel checkpoints need the optional extra"
            ' `pip install "murano-server[spandrel]"` (spandrel and a torchvision matching'
            f" your torch): {exc}"
        ) from exc
    path = weights_file(entry.source, entry.weight_name, entry.revision)
    try:
        descriptor = ModelLoader(device=device).load_from_file(path)
    except UnsupportedModelError:
        raise ValueError(
            f"model {entry.id!r}: {path.name} is not an architecture spandrel supports"
        ) from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.scale < 2:
        raise ValueError(
            f"model {entry.id!r}: {path.name} is a {descriptor.architecture.name} model"
            f" ({descriptor.purpose}), not a super-resolution one"
        )
    descriptor.eval()
    multiple = max(descriptor.size_requirements.multiple_of, 1)
    return _TorchSR(
        module=descriptor.model,
        scale=int(descriptor.scale),
        multiple=multiple,
        output=lambda out: out,
    )


def load_super_resolution(entry: ModelEntry, device: str) -> SuperResolution:
    if entry.family == "spandrel":
        return _load_spandrel(entry, device)
    if entry.family == "swin2sr":
        return _load_swin2sr(entry, device)
    raise ValueError(f"model {entry.id!r}: no upscaler engine for family {entry.family!r}")


# -- running ----------------------------------------------------------------------------


def _run_padded(model: SuperResolution, pixels: Any) -> Any:
    import torch.nn.functional as F

    _, _, height, width = pixels.shape
    pad_h, pad_w = -height % model.multiple, -width % model.multiple
    if pad_h or pad_w:
        pixels = F.pad(pixels, (0, pad_w, 0, pad_h), mode="replicate")
    out = model(pixels)
    return out[:, :, : height * model.scale, : width * model.scale]


def _starts(length: int, tile: int, step: int) -> Iterator[int]:
    """Tile origins along one side: every `step`, the last one flush with the end."""
    if length <= tile:
        yield 0
        return
    position = 0
    while position + tile < length:
        yield position
        position += step
    yield length - tile


def _ramp(length: int, overlap: int, at_start: bool, at_end: bool) -> Any:
    """Blend weights along one side of a tile: rising over the overlap on sides that meet a
    neighbour, flat (1) on sides at the image edge; never zero."""
    import torch

    weights = torch.ones(length)
    if overlap <= 0:
        return weights
    ramp = torch.arange(1, overlap + 1, dtype=torch.float32) / (overlap + 1)
    span = min(overlap, length)
    if not at_start:
        weights[:span] = torch.minimum(weights[:span], ramp[:span])
    if not at_end:
        weights[-span:] = torch.minimum(weights[-span:], ramp[:span].flip(0))
    return weights


def run_tiled(model: SuperResolution, pixels: Any, *, tile: int, overlap: int) -> Any:
    """One pass of `model` over `pixels` (1, C, H, W), in tiles of at most `tile` a side that
    overlap by `overlap` pixels, blended. Equal to one call on the whole image for a model
    that looks at each pixel alone."""
    import torch

    _, channels, height, width = pixels.shape
    if height <= tile and width <= tile:
        return _run_padded(model, pixels)
    scale = model.scale
    overlap = min(overlap, tile // 2)
    step = tile - overlap
    out = torch.zeros(1, channels, height * scale, width * scale, dtype=pixels.dtype)
    total = torch.zeros(1, 1, height * scale, width * scale, dtype=pixels.dtype)
    for y in _starts(height, tile, step):
        for x in _starts(width, tile, step):
            th, tw = min(tile, height - y), min(tile, width - x)
            patch = _run_padded(model, pixels[:, :, y : y + th, x : x + tw]).to(out.device)
            rows = _ramp(th * scale, overlap * scale, y == 0, y + th >= height)
            cols = _ramp(tw * scale, overlap * scale, x == 0, x + tw >= width)
            weight = (rows[:, None] * cols[None, :])[None, None].to(out.dtype)
            rows_at, cols_at = (
                slice(y * scale, (y + th) * scale),
                slice(x * scale, (x + tw) * scale),
            )
            region = (slice(None), slice(None), rows_at, cols_at)
            out[region] += patch.float() * weight
            total[region] += weight
    return out / total


def _to_tensor(image: Image, device: str, dtype: Any) -> Any:
    import numpy as np
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1)[None].to(device=device, dtype=dtype)


def _to_image(pixels: Any) -> Image:
    import numpy as np

    array = pixels[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return PILImage.fromarray(np.round(array * 255).astype(np.uint8), "RGB")


def upscale_image(
    model: SuperResolution,
    image: Image,
    size: tuple[int, int],
    *,
    tile: int,
    overlap: int,
    device: str = "cpu",
    dtype: Any = None,
) -> Image:
    """`image` enlarged to exactly `size` (width, height): model passes until it is at
    least that large, then a Lanczos resize. Alpha is resized alone and put back."""
    import torch

    width, height = size
    factor = max(width / image.width, height / image.height)
    passes = max(1, math.ceil(math.log(factor, model.scale) - 1e-9)) if factor > 1 else 0
    pixels = _to_tensor(image, device, dtype or torch.float32)
    with torch.inference_mode():
        for _ in range(passes):
            pixels = run_tiled(model, pixels, tile=tile, overlap=overlap)
    result = _to_image(pixels)
    if result.size != size:
        result = result.resize(size, PILImage.Resampling.LANCZOS)
    if "A" in image.getbands():
        alpha = image.getchannel("A").resize(size, PILImage.Resampling.LANCZOS)
        result.putalpha(alpha)
    return result


# -- backend ----------------------------------------------------------------------------


class UpscaleBackend:
    """The engine's backend of an upscaler entry. Each job is one image: its
    `init_images[0]`, enlarged to (`width`, `height`); `strength` > 0 adds the creativity
    pass through `refiner`."""

    def __init__(
        self,
        entry: ModelEntry,
        model: SuperResolution,
        *,
        device: str,
        refiner: Refiner | None = None,
    ) -> None:
        options = upscale_options(entry)
        self.model_id = entry.id
        self.model: SuperResolution | None = model
        self.device = device
        self.refiner = refiner
        self.tile, self.overlap = options.tile, options.tile_overlap
        self.memory_bytes = model.memory_bytes

    def generate(
        self, batch: Sequence[GenerationParams], control: object | None = None
    ) -> list[list[Image]]:
        if self.model is None:
            raise RuntimeError(f"model {self.model_id} was unloaded")
        results: list[list[Image]] = []
        for params in batch:
            source = params.init_images[0]
            image = upscale_image(
                self.model,
                source,
                (params.width, params.height),
                tile=self.tile,
                overlap=self.overlap,
                device=self.device,
            )
            if params.strength:
                if self.refiner is None:
                    raise RuntimeError(f"model {self.model_id} has no creativity pass")
                refined = self.refiner(image.convert("RGB"), params)
                if "A" in image.getbands():
                    refined.putalpha(image.getchannel("A"))
                image = refined
            results.append([image])
        return results

    def unload(self) -> None:
        import gc

        self.model = None
        gc.collect()


def load_upscale_backend(
    entry: ModelEntry, device: str, refiner: Refiner | None = None
) -> UpscaleBackend:
    return UpscaleBackend(
        entry, load_super_resolution(entry, device), device=device, refiner=refiner
    )


# -- creativity -------------------------------------------------------------------------

# Venice's creativity runs 0–0.02; the image-to-image strength is ten times that (0.01, the
# default, is strength 0.1: about a tenth of the schedule is re-run).
CREATIVITY_TO_STRENGTH = 10.0


def creativity_refiner(image_model: ModelEntry, resident: Callable[[], Any]) -> Refiner:
    """The creativity pass on `image_model`: its image-to-image pipeline (made from the
    loaded one with diffusers' `from_pipe`, no second copy of the weights) at the job's
    strength, with an empty prompt and guidance off. `resident()` is the model's loaded
    backend or None; the route loads it before queueing the job."""

    def refine(image: Image, params: GenerationParams) -> Image:
        from murano.errors import ModelUnavailable

        backend = resident()
        if backend is None:
            raise ModelUnavailable(image_model.id, "not resident for the creativity pass")
        strength = float(params.strength or 0.0)
        divisor = image_model.constraints.widthHeightDivisor
        width, height = (max(divisor, round(side / divisor) * divisor) for side in image.size)
        work = image if image.size == (width, height) else image.resize((width, height))
        steps = max(image_model.constraints.steps.default, math.ceil(1 / strength))
        job = dataclasses.replace(
            params,
            model_id=image_model.id,
            prompt="",
            negative_prompt=None,
            width=width,
            height=height,
            steps=steps,
            cfg_scale=image_model.family_info.cfg_off_at,
            task="img2img",
            init_images=(work,),
            strength=strength,
        )
        refined: Image = backend.generate([job])[0][0]
        if refined.size != image.size:
            refined = refined.resize(image.size, PILImage.Resampling.LANCZOS)
        return refined

    return refine
