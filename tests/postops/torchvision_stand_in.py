"""A stand-in `torchvision` so that `import spandrel` works where torchvision cannot be
installed (CPU torch from PyPI has no matching torchvision wheel there).

spandrel imports torchvision at import time only for two architectures murano never loads
(LaMa's `rotate`, RestoreFormer's `normalize`); the stand-in provides those names (raising
if they are ever called) while spandrel is imported, and is removed from `sys.modules`
right after, so that no other library takes it for torchvision. With a real torchvision
installed it is not used.
"""

from __future__ import annotations

import enum
import importlib.util
import sys
import types
from typing import Any

__all__ = ["ensure_spandrel_importable"]


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _unavailable(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("torchvision is not installed; this architecture needs it")


def ensure_spandrel_importable() -> None:
    """Import spandrel (standing in for torchvision when it is missing); skip the calling
    test when spandrel itself is not installed (scripts/test.sh installs it)."""
    if importlib.util.find_spec("spandrel") is None:
        import pytest

        pytest.skip("spandrel is not installed (scripts/test.sh installs it)")
    if "spandrel" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return
    root = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    functional.InterpolationMode = _InterpolationMode  # type: ignore[attr-defined]
    functional.rotate = _unavailable  # type: ignore[attr-defined]
    functional.normalize = _unavailable  # type: ignore[attr-defined]
    transforms.functional = functional  # type: ignore[attr-defined]
    root.transforms = transforms  # type: ignore[attr-defined]
    stand_ins = {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.transforms.functional": functional,
    }
    sys.modules.update(stand_ins)
    try:
        importlib.import_module("spandrel")
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
