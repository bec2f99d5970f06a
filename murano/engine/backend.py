"""The backend interface: one loaded model that turns a batch of compatible requests into
images. The diffusers backend is the real one; `FakeBackend` is its test twin.

`StepControl` is how the scheduler watches and steers a running batch: the backend calls
`on_step` on the device thread after each denoising step, with a lazy preview of the batch's
current images; returning False interrupts the pipeline (every job of the batch was
cancelled), and the backend returns as soon as it can (its images are then discarded).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from PIL.Image import Image

from murano.engine.params import GenerationParams

__all__ = ["Backend", "Preview", "StepControl"]

# Decodes the batch's current latents: one image per image of the batch, in order.
Preview = Callable[[], list[Image]]


class StepControl(Protocol):
    def on_step(self, step: int, steps: int, preview: Preview | None) -> bool:
        """After denoising step `step` (1-based) of `steps`, on the device thread. False
        stops the pipeline."""


class Backend(Protocol):
    model_id: str

    def generate(
        self, batch: Sequence[GenerationParams], control: StepControl | None = None
    ) -> list[list[Image]]:
        """Blocking: the images of each request in `batch`, in order (`params.images` each,
        image i seeded with `params.seed + i`). Runs on the device thread."""

    def unload(self) -> None:
        """Free the model's memory."""
