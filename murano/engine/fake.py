"""`FakeBackend`: the diffusers backend's twin for tests. Its images are a pure function of
(prompt, negative prompt, seed, size, steps, cfg), so batching can be checked exactly; it
records every batch and can be told to fail or to wait."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image as PILImage
from PIL.Image import Image

from murano.catalog.check import GenerationParams

__all__ = ["FakeBackend"]


class FakeBackend:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.batches: list[list[GenerationParams]] = []
        self.fail_when: Callable[[Sequence[GenerationParams]], bool] = lambda _batch: False
        # Set by a test to hold the device thread until released.
        self.gate: threading.Event | None = None
        self.started = threading.Event()
        self.unloaded = False

    def generate(self, batch: Sequence[GenerationParams]) -> list[list[Image]]:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.batches.append(list(batch))
        if self.fail_when(batch):
            raise RuntimeError("injected failure")
        return [[_image(p, p.seed + i) for i in range(p.images)] for p in batch]

    def unload(self) -> None:
        self.unloaded = True


def _image(params: GenerationParams, seed: int) -> Image:
    key = f"{params.prompt}|{params.negative_prompt}|{seed}|{params.steps}|{params.cfg_scale}"
    if params.is_edit:
        # Edits depend on their inputs too, so a test can tell that the inputs arrived.
        inputs = hashlib.sha256()
        for image in (*params.init_images, *([params.mask] if params.mask else [])):
            inputs.update(image.tobytes())
        key += f"|{params.task}|{params.strength}|{inputs.hexdigest()}"
    digest = hashlib.sha256(key.encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    pixels = rng.integers(0, 256, size=(params.height, params.width, 3), dtype=np.uint8)
    return PILImage.fromarray(pixels, "RGB")
