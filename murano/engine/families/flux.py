"""FLUX.1 (dev, schnell, Krea) and FLUX.2: guidance-distilled transformers.

FLUX.1's `guidance_scale` feeds the distilled guidance embedding (schnell, which has none,
ignores it). Its pipeline also runs true classifier-free guidance when given a negative
prompt and `true_cfg_scale > 1`; murano's one rule: `cfg_scale` is the guidance, and with a
negative prompt it is the true-CFG scale as well (so a negative prompt needs cfg_scale > 1,
and doubles the work of the call). FLUX.2 has only the embedding: no negative prompt, which
the catalog refuses before a job is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from murano.engine.families.base import Adapter
from murano.engine.params import GenerationParams

__all__ = ["Flux2Adapter", "FluxAdapter", "FluxKontextAdapter"]


class FluxAdapter(Adapter):
    def guidance(self, cfg_scale: float, negatives: list[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"guidance_scale": cfg_scale}
        if any(negatives) and cfg_scale > 1:
            kwargs["negative_prompt"] = negatives
            kwargs["true_cfg_scale"] = cfg_scale
        return kwargs


class FluxKontextAdapter(FluxAdapter):
    """FLUX.1 Kontext: FLUX.1's guidance, plus the input image. The output is the asked
    size (`max_area` is its area, else the pipeline aims at 1024²), and the input, already
    within that area, is used at its own size rather than snapped to Kontext's preferred
    resolutions."""

    def call_kwargs(self, batch: Sequence[GenerationParams]) -> dict[str, Any]:
        kwargs = super().call_kwargs(batch)
        kwargs["max_area"] = batch[0].width * batch[0].height
        return kwargs

    def instruct_kwargs(self, head: GenerationParams, kwargs: dict[str, Any]) -> None:
        super().instruct_kwargs(head, kwargs)
        kwargs["_auto_resize"] = False


class Flux2Adapter(Adapter):
    def guidance(self, cfg_scale: float, negatives: list[str]) -> dict[str, Any]:
        if any(negatives):
            raise ValueError(f"the {self.family} family takes no negative prompt")
        return {"guidance_scale": cfg_scale}
