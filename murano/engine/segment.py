"""Background removal: a salient-object segmentation (matting) model exported to ONNX, run
with ONNX Runtime. The image is resized to the model's input, normalised, run, and the
model's first output becomes the alpha channel of the original image at its own size.

Any export with one image input (N×3×H×W) and an alpha map as its first output works, with
the preprocessing in the `preprocessor_config.json` beside the `.onnx` file (transformers'
format: `size`, `image_mean`, `image_std`, `rescale_factor`) or ImageNet's defaults:

- `briaai/RMBG-1.4`, `weight_name = "onnx/model.onnx"` (outputs probabilities;
  non-commercial licence),
- `onnx-community/BiRefNet_lite-ONNX` and BiRefNet exports (`onnx/model.onnx`, logits;
  `activation = "sigmoid"`, or leave "auto"),
- rembg's U²-Net / IS-Net `.onnx` files (`activation = "minmax"`, `size = 320` or 1024).

ONNX graphs carry their whole architecture, so no model code is downloaded or trusted
(unlike the PyTorch BiRefNet / RMBG-2.0 repos, which need `trust_remote_code`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from PIL.Image import Image

from murano.catalog.entries import ModelEntry
from murano.catalog.postops import SegmentOptions, segment_options
from murano.engine._weights import weights_file
from murano.engine.params import GenerationParams

__all__ = ["Matting", "SegmentBackend", "cut_out", "load_matting", "load_segment_backend"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_DEFAULT_SIZE = 1024


def _model_file(entry: ModelEntry) -> Path:
    """The `.onnx` file: `source` itself, `weight_name` (else `model.onnx` or
    `onnx/model.onnx`) in folder `source`, or that file of hub repo `source`."""
    path = Path(entry.source)
    if path.is_file():
        return path
    if path.is_dir():
        names = [entry.weight_name] if entry.weight_name else ["model.onnx", "onnx/model.onnx"]
        for name in names:
            if (path / name).is_file():
                return path / name
        raise FileNotFoundError(f"model {entry.id!r}: no {' or '.join(names)} in {path}")
    return weights_file(entry.source, entry.weight_name or "onnx/model.onnx", entry.revision)


def _preprocessor(entry: ModelEntry, model_file: Path) -> dict[str, Any]:
    """The `preprocessor_config.json` beside the model file or at the top of its folder or
    repo; empty when there is none."""
    for folder in (model_file.parent, model_file.parent.parent):
        candidate = folder / "preprocessor_config.json"
        if candidate.is_file():
            loaded: dict[str, Any] = json.loads(candidate.read_text(encoding="utf-8"))
            return loaded
    if not Path(entry.source).exists():
        try:
            found = weights_file(entry.source, "preprocessor_config.json", entry.revision)
        except Exception:  # the repo has none: ImageNet's defaults
            return {}
        hub: dict[str, Any] = json.loads(found.read_text(encoding="utf-8"))
        return hub
    return {}


def _input_size(session: Any, config: dict[str, Any], options: SegmentOptions) -> tuple[int, int]:
    """(height, width) the model takes: static in the graph, else the options' or the
    preprocessor's size, else 1024."""
    shape = session.get_inputs()[0].shape
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
        return shape[2], shape[3]
    if options.size is not None:
        return options.size, options.size
    size = config.get("size") or {}
    if isinstance(size, dict) and "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if isinstance(size, dict) and "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    return _DEFAULT_SIZE, _DEFAULT_SIZE


class Matting:
    """A loaded ONNX matting model: `alpha(image)` is an "L" image of the image's size."""

    def __init__(self, model_file: Path, config: dict[str, Any], options: SegmentOptions):
        import onnxruntime as ort

        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider",) if p in available]
        providers.append("CPUExecutionProvider")
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        # Idle worker threads must not spin: the CPU is shared with torch and the
        # post-processing pool.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(model_file), sess_options=session_options, providers=providers
        )
        self.input_name = self.session.get_inputs()[0].name
        self.size = _input_size(self.session, config, options)
        self.mean = tuple(float(v) for v in config.get("image_mean", _IMAGENET_MEAN))
        self.std = tuple(float(v) for v in config.get("image_std", _IMAGENET_STD))
        self.rescale = float(config.get("rescale_factor", 1 / 255))
        self.activation = options.activation
        self.memory_bytes = model_file.stat().st_size

    def _inputs(self, image: Image) -> Any:
        import numpy as np

        height, width = self.size
        resized = image.convert("RGB").resize((width, height), PILImage.Resampling.BILINEAR)
        array: Any = np.asarray(resized, dtype=np.float32) * self.rescale
        array = (array - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return array.transpose(2, 0, 1)[None].astype(np.float32)

    def _alpha(self, raw: Any) -> Any:
        import numpy as np

        values: Any = np.asarray(raw, dtype=np.float32)
        while values.ndim > 2:
            values = values[0]
        activation = self.activation
        if activation == "auto":
            outside = values.size and (values.min() < 0.0 or values.max() > 1.0)
            activation = "sigmoid" if outside else "none"
        if activation == "sigmoid":
            values = 1.0 / (1.0 + np.exp(-values))
        elif activation == "minmax":
            low, high = float(values.min()), float(values.max())
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
        return np.clip(values, 0.0, 1.0)

    def alpha(self, image: Image) -> Image:
        import numpy as np

        raw = self.session.run(None, {self.input_name: self._inputs(image)})[0]
        mask = np.round(self._alpha(raw) * 255).astype(np.uint8)
        return PILImage.fromarray(mask, "L").resize(image.size, PILImage.Resampling.BILINEAR)


def cut_out(image: Image, alpha: Image) -> Image:
    """`image` as RGBA with `alpha` (multiplied into any alpha it already has)."""
    rgba = image.convert("RGBA")
    if "A" in image.getbands():
        from PIL import ImageChops

        alpha = ImageChops.multiply(alpha, image.getchannel("A"))
    rgba.putalpha(alpha)
    return rgba


def load_matting(entry: ModelEntry) -> Matting:
    model_file = _model_file(entry)
    return Matting(model_file, _preprocessor(entry, model_file), segment_options(entry))


class SegmentBackend:
    """The engine's backend of a background remover: each job's `init_images[0]` cut out."""

    def __init__(self, entry: ModelEntry, matting: Matting) -> None:
        self.model_id = entry.id
        self.matting: Matting | None = matting
        self.memory_bytes = matting.memory_bytes

    def generate(
        self, batch: Sequence[GenerationParams], control: object | None = None
    ) -> list[list[Image]]:
        if self.matting is None:
            raise RuntimeError(f"model {self.model_id} was unloaded")
        results: list[list[Image]] = []
        for params in batch:
            image = params.init_images[0]
            results.append([cut_out(image, self.matting.alpha(image))])
        return results

    def unload(self) -> None:
        self.matting = None


def load_segment_backend(entry: ModelEntry) -> SegmentBackend:
    return SegmentBackend(entry, load_matting(entry))
