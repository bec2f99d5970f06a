"""HiDream-I1: classic CFG, and one sizing quirk.

Its pipeline ignores the requested area: it rescales width × height to
`(default_sample_size × vae_scale_factor)²` (1024² for the real model), keeping the aspect
ratio. murano serves exactly the size asked for, so before each call it sets
`default_sample_size` to the side of a square of (just over) the requested area; the
pipeline's scale factor is then 1 + ε, which its floor-to-16 rounding maps back to the
requested width and height (both multiples of 16, which the catalog has checked).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from murano.engine.families.base import ClassicCfgAdapter
from murano.engine.params import GenerationParams

__all__ = ["HiDreamAdapter", "sample_size_for"]


def sample_size_for(width: int, height: int, vae_scale_factor: int) -> float:
    """The `default_sample_size` under which HiDream keeps `width` × `height` as is. Half a
    pixel of extra area keeps float error from rounding a side down by 16."""
    return math.sqrt(width * height + 0.5) / vae_scale_factor


class HiDreamAdapter(ClassicCfgAdapter):
    def before_call(self, pipeline: Any, batch: Sequence[GenerationParams]) -> None:
        head = batch[0]
        pipeline.default_sample_size = sample_size_for(
            head.width, head.height, pipeline.vae_scale_factor
        )
