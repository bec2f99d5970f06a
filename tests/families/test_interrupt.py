"""The step control on real tiny pipelines: every family reports each denoising step, and
a control that says stop interrupts the pipeline (diffusers' `callback_on_step_end` and
its interrupt flag), so fewer steps run than were asked."""

from __future__ import annotations

import pytest

from murano.engine.backend import Preview
from murano.engine.diffusers_backend import load_backend
from tests.families.conftest import TinyModels, params, tiny_entry

pytestmark = pytest.mark.slow


class Recorder:
    def __init__(self, stop_after: int | None = None) -> None:
        self.steps: list[tuple[int, int]] = []
        self.stop_after = stop_after
        self.previews = 0

    def on_step(self, step: int, steps: int, preview: Preview | None) -> bool:
        self.steps.append((step, steps))
        if preview is not None and step == 1:
            self.previews = len(preview())
        return self.stop_after is None or step < self.stop_after


def test_every_step_is_reported_and_a_stop_interrupts(family: str, tiny_models: TinyModels) -> None:
    entry = tiny_entry(family, tiny_models.path(family))
    backend = load_backend(entry)
    batch = [params(entry, prompt="a lighthouse", width=64, height=64, steps=3, variants=2)]
    seen = Recorder()
    images = backend.generate(batch, seen)
    assert len(images[0]) == 2
    assert seen.steps == [(1, 3), (2, 3), (3, 3)]
    stopped = Recorder(stop_after=1)
    backend.generate(batch, stopped)
    assert stopped.steps == [(1, 3)]
