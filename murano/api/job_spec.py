"""What a request asks for, once its model checked it: the engine's parameters and the
response's output options. Each request model makes its own (`to_job(entry)`, as vLLM's
`to_sampling_params()`); the generation service turns it into an engine job."""

from __future__ import annotations

from dataclasses import dataclass

from murano.engine.params import GenerationParams
from murano.imaging.encode import ImageFormat

__all__ = ["JobSpec", "OutputRequest"]


@dataclass(frozen=True, slots=True)
class OutputRequest:
    fmt: ImageFormat
    safe_mode: bool
    hide_watermark: bool
    embed_metadata: bool
    style_preset: str | None = None
    binary: bool = False
    # Also base64-encode the images on the post-processing pool (JSON responses).
    as_base64: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A checked request: what the model makes (`params`) and how it is sent (`output`)."""

    params: GenerationParams
    output: OutputRequest
