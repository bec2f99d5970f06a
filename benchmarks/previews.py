"""Live previews: denoising steps per second with previews on and off, in one run.

    .venv/bin/python benchmarks/previews.py [--quick] [--out DIR]

Each pipeline runs the same request (same seed, size and steps) with a step callback that
does nothing ("off") and with one that makes a preview of every image of the batch
(`murano.engine.previews.preview_images`, the per-family latent-to-RGB projection) every
step or every fourth step. Runs alternate between the settings so that a noisy neighbour
slows them alike; the table shows the median of the runs and the ratio to "off".

Pipelines: the SD-Turbo-shaped one at 256² in its miniature topology (a step far cheaper
than a real model's, so a preview's share is overstated; `run(full=True)` uses SD 2.1's
real UNet and VAE configs at 384², too slow for a shared 2-core machine), and the embedded
tiny model at 256², whose steps are so cheap that it shows the worst case.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import Outcome, Table, benchmark_main, fmt, median, write_result
from _models import CACHE_DIR, FULL, MINI, build_tiny, build_turbo_shaped, load_pipeline

__all__ = ["run"]

StepCallback = Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]


def _callback(every: int, width: int, height: int, made: list[int]) -> StepCallback:
    from murano.engine.previews import preview_images

    def on_step(_pipe: Any, step: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if every and (step + 1) % every == 0:
            made.append(len(preview_images("sd", kwargs["latents"], width=width, height=height)))
        return kwargs

    return on_step


def _steps_per_s(pipe: Any, size: int, steps: int, batch: int, every: int) -> tuple[float, int]:
    import torch

    made: list[int] = []
    began = time.perf_counter()
    pipe(
        prompt=["a lighthouse at dusk"] * batch,
        width=size,
        height=size,
        num_inference_steps=steps,
        guidance_scale=0.0,
        generator=[torch.Generator().manual_seed(i) for i in range(batch)],
        callback_on_step_end=_callback(every, size, size, made),
        output_type="latent",
    )
    return steps / (time.perf_counter() - began), sum(made)


def _measure(
    name: str, pipe: Any, size: int, steps: int, batch: int, repeats: int
) -> list[list[str]]:
    settings = {"off": 0, "every step": 1, "every 4th step": 4}
    rates: dict[str, list[float]] = {label: [] for label in settings}
    previews: dict[str, int] = {}
    _steps_per_s(pipe, size, 1, batch, 1)  # warm-up
    for _ in range(repeats):
        for label, every in settings.items():
            rate, made = _steps_per_s(pipe, size, steps, batch, every)
            rates[label].append(rate)
            previews[label] = made
    base = median(rates["off"])
    return [
        [
            name,
            f"{size}² × {batch}, {steps} steps",
            label,
            str(previews[label]),
            fmt(median(rates[label]), 2),
            fmt(median(rates[label]) / base, 3),
        ]
        for label in settings
    ]


def run(
    quick: bool, out: Path, log: Callable[[str], None] = print, *, full: bool = False
) -> Outcome:
    import torch

    torch.manual_seed(0)
    repeats = 1 if quick else 3
    rows: list[list[str]] = []
    log("previews: the SD-Turbo-shaped pipeline")
    shape = MINI if quick or not full else FULL
    turbo = load_pipeline(build_turbo_shaped(shape, CACHE_DIR))
    size = 64 if quick else (384 if full else 256)
    rows += _measure(f"SD-Turbo-shaped ({shape.name})", turbo, size, 2 if quick else 8, 1, repeats)
    del turbo
    log("previews: the embedded tiny model")
    tiny = load_pipeline(build_tiny(CACHE_DIR / "tiny-data"))
    rows += _measure("murano-tiny", tiny, 64 if quick else 256, 2 if quick else 8, 2, repeats)
    table = Table(
        ["pipeline", "request", "previews", "previews made", "steps/s (median)", "vs off"],
        rows,
    )
    real = [row for row in rows if row[0].startswith("SD-Turbo") and row[2] == "every step"]
    body = (
        f"{__doc__.split(chr(10) + chr(10), 2)[2]}\n\n{table.markdown()}\n\n"
        f"Runs per setting: {repeats}. Every ratio compares runs of the same process.\n"
    )
    path = write_result(out, "previews", "Live previews: steps/s with previews on and off", body)
    summary = f"previews every step on the SD-Turbo-shaped pipeline: {real[0][5]}× the steps/s"
    return Outcome(path, summary)


if __name__ == "__main__":
    sys.exit(benchmark_main(run, __doc__.split("\n\n")[0], sys.argv[1:]))
