"""Qwen-Image: true classifier-free guidance only (no guidance embedding).

Its pipeline runs CFG only when given both `true_cfg_scale > 1` and a negative prompt, and
its model card always passes one (`" "` when the user has none). murano does the same, so
`cfg_scale` behaves as classic CFG: above 1 it is on, with the request's negative prompt or
`" "`; at 1 or below (a Lightning-distilled model) it is off and the negative prompt unused.
"""

from __future__ import annotations

from typing import Any

from murano.engine.families.base import Adapter

__all__ = ["QwenImageAdapter"]

EMPTY_NEGATIVE = " "


class QwenImageAdapter(Adapter):
    def guidance(self, cfg_scale: float, negatives: list[str]) -> dict[str, Any]:
        if cfg_scale <= 1:
            return {"true_cfg_scale": 1.0}
        return {
            "true_cfg_scale": cfg_scale,
            "negative_prompt": [negative or EMPTY_NEGATIVE for negative in negatives],
        }
