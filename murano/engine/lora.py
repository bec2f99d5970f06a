"""LoRA adapters of a model entry: loaded once with the model, scaled per request.

The strength rule. Venice's `lora_strength` is an integer 0–100 ("only applies if the model
uses additional Loras"); murano maps it to each adapter's PEFT scale as

    scale = entry scale × lora_strength / 50

so 50 (Venice's own example value, and what an absent `lora_strength` means) runs every
adapter at the scale its entry gives, 100 at twice that, and 0 turns them off (the image is
then exactly the base model's). A model without LoRAs ignores `lora_strength`. LoRAs marked
`fixed` (step-distillation LoRAs a model is always run with) are fused into the weights at
load and never rescaled.

Changing the strength between requests costs one `set_adapters` call, never a reload; jobs
with different strengths never share a call (the batch key holds the effective strength).
Importing this module does not import torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from murano.catalog.entries import LoraEntry, ModelEntry

__all__ = [
    "DEFAULT_STRENGTH",
    "LoraScaler",
    "adapter_names",
    "effective_strength",
    "load_loras",
    "scales",
]

log = logging.getLogger("murano.engine")

DEFAULT_STRENGTH = 50


def _variable(entry: ModelEntry) -> list[tuple[str, LoraEntry]]:
    return [(name, lora) for name, lora in _named(entry) if not lora.fixed]


def _named(entry: ModelEntry) -> list[tuple[str, LoraEntry]]:
    return [(lora.adapter_name or f"lora{i}", lora) for i, lora in enumerate(entry.loras)]


def adapter_names(entry: ModelEntry) -> list[str]:
    """The PEFT adapter names of the entry's LoRAs that `lora_strength` scales."""
    return [name for name, _ in _variable(entry)]


def effective_strength(entry: ModelEntry, strength: int | None) -> int | None:
    """The strength a request runs at: None for a model without (variable) LoRAs, else the
    request's, or DEFAULT_STRENGTH when it sends none."""
    if not _variable(entry):
        return None
    return DEFAULT_STRENGTH if strength is None else strength


def scales(entry: ModelEntry, strength: int | None) -> list[float]:
    """Each variable adapter's scale at `strength` (see the module docstring)."""
    chosen = effective_strength(entry, strength)
    if chosen is None:
        return []
    return [lora.scale * chosen / DEFAULT_STRENGTH for _, lora in _variable(entry)]


def load_loras(pipeline: Any, entry: ModelEntry) -> None:
    """Load the entry's LoRAs into `pipeline`: fixed ones first, fused into the weights and
    their layers dropped; then the others as named adapters, left at the default strength."""
    names = _named(entry)
    fixed = [(name, lora) for name, lora in names if lora.fixed]
    for name, lora in fixed:
        _load(pipeline, name, lora)
        pipeline.fuse_lora(adapter_names=[name], lora_scale=lora.scale)
    if fixed:
        # The fused deltas stay in the weights; only the (now idle) LoRA layers go.
        pipeline.unload_lora_weights()
    for name, lora in names:
        if not lora.fixed:
            _load(pipeline, name, lora)


def _load(pipeline: Any, name: str, lora: LoraEntry) -> None:
    source, weight_name = lora.source, lora.weight_name
    path = Path(source)
    if path.is_file():
        source, weight_name = str(path.parent), path.name
    log.info("loading LoRA %s from %s", name, lora.source)
    with warnings.catch_warnings():
        # PEFT warns on every adapter after the first; several adapters are the point here.
        warnings.filterwarnings("ignore", "Already found a `peft_config`", UserWarning)
        pipeline.load_lora_weights(
            source,
            weight_name=weight_name,
            adapter_name=name,
            revision=lora.revision,
            token=os.environ.get("HF_TOKEN"),
        )


class LoraScaler:
    """Sets a pipeline's variable adapters to a request's strength, only when it changes.
    Used on the device thread only."""

    def __init__(self, entry: ModelEntry) -> None:
        self._entry = entry
        self._names = adapter_names(entry)
        self._current: int | None = None
        # A compiled model keeps its LoRA layers at strength 0 (scale 0 adds exactly
        # nothing): bypassing them would change the graph and recompile.
        self._keep_layers = entry.optimize.compile is not None

    def apply(self, pipeline: Any, strength: int | None) -> None:
        chosen = effective_strength(self._entry, strength)
        if chosen is None or chosen == self._current:
            return
        if chosen == 0 and not self._keep_layers:
            # Bypassing the LoRA layers gives the base model's output exactly.
            pipeline.disable_lora()
        else:
            pipeline.enable_lora()
            pipeline.set_adapters(self._names, adapter_weights=scales(self._entry, chosen))
        self._current = chosen
