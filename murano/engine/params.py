"""`GenerationParams`: the engine's input, what one job asks of its model, checked and with
every default filled in (by `murano.catalog.check` and `murano.catalog.editing`, or the
post-processing endpoints). A plain dataclass: importing it imports neither torch nor
anything of HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["GenerationParams", "Task"]

# What a job asks of its model: text-to-image, image-to-image from `init_images[0]`,
# inpainting of `init_images[0]` where `mask` is white, or an instruction edit of
# `init_images` (the families built for it: Kontext, Qwen-Image-Edit, FLUX.2); on an
# upscaler, `init_images[0]` enlarged to (width, height), and on a background remover,
# `init_images[0]` cut out.
Task = Literal["generate", "img2img", "inpaint", "edit", "upscale", "background-remove"]


@dataclass(frozen=True, slots=True)
class GenerationParams:
    """Everything the engine needs to make one request's images. Image i uses seed + i.
    The input-image fields default to "no input" (text-to-image)."""

    model_id: str
    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    steps: int
    cfg_scale: float
    seed: int
    images: int
    lora_strength: int | None
    resolution: str | None = None
    task: Task = "generate"
    # Decoded RGB inputs, already at the output size for img2img and inpainting.
    init_images: tuple[Image, ...] = field(default=(), compare=False, repr=False)
    # Inpainting: white where the image is repainted, black where it is kept ("L" mode).
    mask: Image | None = field(default=None, compare=False, repr=False)
    # img2img / inpainting: how far from the input the result may go (0–1); on an
    # upscaler, the creativity pass's strength (0: none).
    strength: float | None = None
    # False: run without the model's step cache (a request's `step_cache`, where allowed).
    step_cache: bool = True

    @property
    def is_edit(self) -> bool:
        return self.task != "generate"
