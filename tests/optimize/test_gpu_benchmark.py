"""`benchmarks/gpu.py` without a GPU: its full-size shapes have the published parameter
counts (built on the meta device), and `--smoke` runs the whole script on the CPU with the
tiny models and writes its report. Its numbers mean nothing, so none is checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import gpu  # noqa: E402

# Published sizes (billions of parameters, 3 decimals) of each component.
PUBLISHED = {
    "FLUX.1-dev": {
        "transformer": 11.901,
        "text_encoder_2": 4.762,
        "text_encoder": 0.123,
        "vae": 0.084,
    },
    "Z-Image-Turbo": {"transformer": 6.155, "text_encoder": 4.022, "vae": 0.084},
    "SDXL": {"unet": 2.567, "text_encoder_2": 0.695, "text_encoder": 0.123, "vae": 0.084},
}


@pytest.mark.parametrize("shape", gpu.SHAPES, ids=lambda s: s.name)
def test_full_size_shapes_have_the_published_parameter_counts(shape: gpu.Shape) -> None:
    counts = gpu.parameter_counts(shape)
    assert {name: round(n / 1e9, 3) for name, n in counts.items()} == PUBLISHED[shape.name]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_smoke_run_writes_the_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu.py"), "--smoke", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    text = (tmp_path / "gpu.md").read_text()
    assert "smoke run" in text
    for name in ("FLUX.1-dev", "Z-Image-Turbo", "SDXL", "Serving"):
        assert f"## {name}" in text
    # The cache runs on flux and is refused, as such, on the families without cache hooks.
    assert "not supported: diffusers' sdxl pipeline has no cache hooks" in text
    assert "| 4 |" in text  # the 4-client serving row


@pytest.mark.slow
def test_only_runs_the_named_stage_and_says_the_others_were_not_run(tmp_path: Path) -> None:
    path = gpu.run(gpu.SMOKE, tmp_path, log=lambda _: None, only=frozenset({"SDXL"}))
    text = path.read_text()
    sdxl = text[text.index("## SDXL") :]
    flux = text[text.index("## FLUX.1-dev") : text.index("## Z-Image-Turbo")]
    assert "not run: another stage was asked for" in flux
    assert "| baseline (bf16, SDPA) | n/a" not in sdxl  # measured
    assert "| 1 |" not in text  # no serving rows
