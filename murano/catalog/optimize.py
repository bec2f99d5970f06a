"""A model entry's speed settings: the `[models.optimize]` table of a models file.

    [models.optimize]
    attention = "native"                                  # a diffusers attention backend
    compile = { mode = "regional", dynamic = true }       # or "off", "regional", "full"
    cache = { type = "first-block", threshold = 0.08, allow_request_off = true }
    quantize = { transformer = "float8wo" }               # per component
    vae_tiling = true
    vae_slicing = false
    channels_last = false
    warmup = [{ width = 1024, height = 1024, batch = 1 }]

Every key is optional; an entry without the table runs as diffusers loads it. This module
only checks the shape: whether a backend is installed, a quantization runs on the device or
a family supports a cache is decided at load (`murano.engine.optimize`), where a setting
that cannot be honoured fails the load with an error naming it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "CacheSettings",
    "CompileSettings",
    "OptimizeSettings",
    "QuantizeKind",
    "WarmupShape",
]

# torchao: float8 weights (`float8wo`, memory), float8 weights and activations (`float8dq`,
# per row: memory and speed on fp8 tensor cores), int8 weights (`int8wo`, any device);
# bitsandbytes: 4-bit NF4 weights (`nf4`, CUDA).
QuantizeKind = Literal["float8wo", "float8dq", "int8wo", "nf4"]
CacheKind = Literal["first-block", "taylorseer", "magcache", "faster"]
# The caches whose diffusers config has a `threshold`.
THRESHOLD_CACHES = ("first-block", "magcache")


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CompileSettings(_Settings):
    """`torch.compile` of the denoiser: `regional` compiles each repeated block once
    (diffusers' `compile_repeated_blocks`, seconds instead of a minute), `full` the whole
    transformer or UNet."""

    mode: Literal["off", "regional", "full"] = "regional"
    # Dynamic shapes: Venice's many sizes must not each compile anew.
    dynamic: bool = True
    # torch.compile's own `mode` (e.g. "max-autotune-no-cudagraphs"); None: its default.
    torch_mode: (
        Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] | None
    ) = None
    fullgraph: bool = False


class CacheSettings(_Settings):
    """Step caching through diffusers' cache hooks: later steps reuse earlier blocks'
    outputs where they barely change. `options` go verbatim to the diffusers config
    (`FirstBlockCacheConfig`, `TaylorSeerCacheConfig`, `MagCacheConfig`, `FasterCacheConfig`);
    an option it does not have fails the load, naming it."""

    type: CacheKind
    threshold: float | None = Field(default=None, gt=0)
    # Whether a request may send `step_cache: false` to run this model without the cache.
    allow_request_off: bool = False
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _threshold_applies(self) -> CacheSettings:
        if self.threshold is not None and self.type not in THRESHOLD_CACHES:
            raise ValueError(
                f"cache type {self.type!r} has no threshold (only {', '.join(THRESHOLD_CACHES)}"
                " do); set its options instead"
            )
        return self


class WarmupShape(_Settings):
    """One pipeline call run at load: compilation and autotuning for this size and batch
    happen then, never on a user's request."""

    width: int = Field(ge=8, le=4096)
    height: int = Field(ge=8, le=4096)
    batch: int = Field(default=1, ge=1, le=64)


class OptimizeSettings(_Settings):
    attention: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    compile: CompileSettings | None = None
    cache: CacheSettings | None = None
    # Component name (`transformer`, `unet`, `text_encoder_2`, …) → weight quantization.
    quantize: dict[str, QuantizeKind] = Field(default_factory=dict)
    vae_tiling: bool = False
    vae_slicing: bool = False
    channels_last: bool = False
    warmup: list[WarmupShape] = Field(default_factory=list)

    @field_validator("compile", mode="before")
    @classmethod
    def _compile_shorthand(cls, value: Any) -> Any:
        """`compile = "regional"` (or `true`, meaning regional) for the table's default."""
        if value is True:
            return {"mode": "regional"}
        if value is False or value == "off":
            return None
        if isinstance(value, str):
            return {"mode": value}
        if isinstance(value, dict) and value.get("mode") == "off":
            return None
        return value

    @property
    def empty(self) -> bool:
        return self == OptimizeSettings()

    def report(self) -> dict[str, Any]:
        """What `/models` shows as `model_spec.optimizations`: each setting this entry sets,
        in full (its defaults filled in)."""
        default = OptimizeSettings()
        dump = self.model_dump(mode="json", exclude_none=True)
        return {
            key: value for key, value in dump.items() if getattr(self, key) != getattr(default, key)
        }
