"""The backend interface: one loaded model that turns a batch of compatible requests into
images. The diffusers backend is the real one; `FakeBackend` is its test twin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL.Image import Image

from murano.catalog.check import GenerationParams

__all__ = ["Backend"]


class Backend(Protocol):
    model_id: str

    def generate(self, batch: Sequence[GenerationParams]) -> list[list[Image]]:
        """Blocking: the images of each request in `batch`, in order (`params.images` each,
        image i seeded with `params.seed + i`). Runs on the device thread."""

    def unload(self) -> None:
        """Free the model's memory."""
