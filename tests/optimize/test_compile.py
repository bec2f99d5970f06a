"""Compilation. Regional on one tiny family (FLUX, slow: inductor on a CPU takes minutes):
compiled inside the load by the warm-up, the compiled model gives the eager model's image,
and neither a repeat request nor a `lora_strength` change (0 included) compiles anything
again (diffusers' LoRA hotswap preparation makes adapter scales values, not code). Fast:
`full` and `regional` put torch.compile where they say, and compile nothing before the first
call when no warm-up is asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.tiny.lora import build_tiny_lora
from tests.families.conftest import TinyModels, pixels, tiny_entry
from tests.optimize.conftest import params


def graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_regional_compile_warms_at_load_and_lora_strength_never_recompiles(
    tiny_models: TinyModels, tmp_path: Path, loaded: list[DiffusersBackend]
) -> None:
    source = tiny_models.path("flux")
    lora = build_tiny_lora("flux", source, tmp_path / "lora")
    raw = {"loras": [{"source": str(lora)}]}
    eager = load_backend(tiny_entry("flux", source, "eager", **raw))
    loaded.append(eager)
    before = graphs()
    model = tiny_entry(
        "flux",
        source,
        "compiled",
        optimize={"compile": "regional", "warmup": [{"width": 64, "height": 64}]},
        **raw,
    )
    backend = load_backend(model)
    loaded.append(backend)
    compiled_at_load = graphs()
    assert compiled_at_load > before  # the warm-up compiled the blocks

    for strength in (None, 80, 0, 50):
        image = pixels(backend.generate([params(model, lora_strength=strength)])[0][0])
        reference = pixels(eager.generate([params(eager.entry, lora_strength=strength)])[0][0])
        # Inductor fuses float32 ops in another order: a level at most here.
        assert np.abs(image - reference).max() <= 2
    assert graphs() == compiled_at_load


@pytest.mark.parametrize(("family", "mode"), [("sd", "full"), ("z-image", "regional")])
def test_compile_is_applied_at_load_and_compiles_lazily_without_warmup(
    tiny_models: TinyModels, loaded: list[DiffusersBackend], family: str, mode: str
) -> None:
    from murano.engine.optimize import denoiser

    model = tiny_entry(family, tiny_models.path(family), "c", optimize={"compile": mode})
    before = graphs()
    backend = load_backend(model)
    loaded.append(backend)
    compiled = [
        m for m in denoiser(backend.pipeline).modules() if m._compiled_call_impl is not None
    ]
    # Full: the denoiser itself; regional: each repeated block, and not the denoiser.
    assert compiled and (compiled[0] is denoiser(backend.pipeline)) == (mode == "full")
    assert graphs() == before  # nothing compiled yet: no warm-up asked for
