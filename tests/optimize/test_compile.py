"""Regional compilation on one tiny family (FLUX): compiled inside the load by the warm-up,
the compiled model gives the eager model's image, and neither a repeat request nor a
`lora_strength` change (0 included) compiles anything again (diffusers' LoRA hotswap
preparation makes adapter scales values, not code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from murano.engine.diffusers_backend import DiffusersBackend, load_backend
from murano.engine.tiny.lora import build_tiny_lora
from tests.families.conftest import TinyModels, pixels, tiny_entry
from tests.optimize.conftest import params

pytestmark = pytest.mark.slow


def graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


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


def test_compile_full_on_a_unet_family_loads(
    tiny_models: TinyModels, loaded: list[DiffusersBackend]
) -> None:
    model = tiny_entry("sd", tiny_models.path("sd"), "full", optimize={"compile": "full"})
    backend = load_backend(model)
    loaded.append(backend)
    assert backend.generate([params(model)])[0][0].size == (64, 64)
