"""`FakeBackend`: the diffusers backend's twin for tests. Its images are a pure function of
(prompt, negative prompt, seed, size, steps, cfg), so batching can be checked exactly; it
records every batch and the steps it really ran, and tests can hold it at each stage:

- `gate`: the device thread waits for it before the first step (`started` is set first,
  `ran` once the steps are done);
- `step_hook(step, steps)`: called on the device thread after each step, before the step
  control is asked whether to go on;
- `fail_when(batch)`: raise instead of returning images.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image as PILImage
from PIL.Image import Image

from murano.engine.backend import StepControl
from murano.engine.params import GenerationParams

__all__ = ["FakeBackend"]


class FakeBackend:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.batches: list[list[GenerationParams]] = []
        # The denoising steps each batch ran (fewer than asked when interrupted).
        self.steps_run: list[int] = []
        self.fail_when: Callable[[Sequence[GenerationParams]], bool] = lambda _batch: False
        # Set by a test to hold the device thread until released.
        self.gate: threading.Event | None = None
        self.step_hook: Callable[[int, int], None] | None = None
        self.started = threading.Event()
        # Set each time a batch has run its steps.
        self.ran = threading.Event()
        self.unloaded = False

    def generate(
        self, batch: Sequence[GenerationParams], control: StepControl | None = None
    ) -> list[list[Image]]:
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=30)
        self.batches.append(list(batch))
        images = [[_image(p, p.seed + i) for i in range(p.images)] for p in batch]
        flat = [image for job in images for image in job]
        steps, ran = batch[0].steps, 0
        for step in range(1, steps + 1):
            ran = step
            if self.step_hook is not None:
                self.step_hook(step, steps)
            if control is not None and not control.on_step(step, steps, flat.copy):
                break
        self.steps_run.append(ran)
        self.ran.set()
        if self.fail_when(batch):
            raise RuntimeError("injected failure")
        return images

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
