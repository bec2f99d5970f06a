"""Adult-content classifiers for `safe_mode`.

`TransformersClassifier` wraps any Hugging Face image-classification checkpoint whose labels
include NSFW classes — Falconsai/nsfw_image_detection ("normal"/"nsfw") out of the box,
GantMan-style five-class models ("drawings", "hentai", "neutral", "porn", "sexy") too. An
image is flagged when the probabilities of its NSFW labels add up to at least `threshold`.
All images of a call go through the model in one batched forward pass, because the server
checks a whole generation batch at once.

Preprocessing uses transformers' PIL image-processor backend, so torchvision is never
needed. torch and transformers are imported when a classifier is built, not with this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final, Protocol, runtime_checkable

from PIL import Image

__all__ = [
    "DEFAULT_NSFW_LABELS",
    "FakeClassifier",
    "ImageClassifier",
    "TransformersClassifier",
    "build_tiny_classifier",
]

DEFAULT_NSFW_LABELS: Final = ("nsfw", "porn", "hentai", "sexy")


@runtime_checkable
class ImageClassifier(Protocol):
    def flag(self, images: Sequence[Image.Image]) -> list[bool]:
        """One flag per image, in order: True when it shows adult content."""
        ...


class TransformersClassifier:
    """A `transformers` image-classification model (hub repo id or local directory,
    safetensors weights only) used as an `ImageClassifier`."""

    def __init__(
        self,
        source: str | Path,
        *,
        threshold: float = 0.5,
        device: str = "cpu",
        nsfw_labels: Sequence[str] = DEFAULT_NSFW_LABELS,
    ) -> None:
        if not math.isfinite(threshold) or threshold < 0.0:
            raise ValueError(
                f"threshold must be a probability >= 0 (above 1 flags nothing), got {threshold}"
            )
        import torch

        hf = _transformers()
        self.source = str(source)
        self.threshold = threshold
        self.device = _resolve_device(device, torch)
        try:
            self._processor = hf.AutoImageProcessor.from_pretrained(self.source, **_pil_backend())
            model = hf.AutoModelForImageClassification.from_pretrained(
                self.source, use_safetensors=True
            )
        except OSError as exc:
            raise OSError(
                f"cannot load the safety classifier {self.source!r} (a hub repo id needs "
                f"network access or a filled cache; a directory needs config.json, "
                f"model.safetensors and preprocessor_config.json): {exc}"
            ) from exc
        self._model = model.to(self.device).eval()
        self._nsfw = _nsfw_indices(self.labels, nsfw_labels, self.source)
        self._multi_label = model.config.problem_type == "multi_label_classification"

    @property
    def labels(self) -> dict[int, str]:
        return {int(i): str(name) for i, name in self._model.config.id2label.items()}

    def scores(self, images: Sequence[Image.Image]) -> list[float]:
        """Each image's NSFW score (summed NSFW-label probability; the largest NSFW-label
        probability for multi-label models), from one batched forward pass."""
        if not images:
            return []
        import torch

        rgb = [image.convert("RGB") for image in images]
        batch = self._processor(images=rgb, return_tensors="pt")
        pixels = batch["pixel_values"].to(self.device, dtype=self._model.dtype)
        with torch.inference_mode():
            logits = self._model(pixel_values=pixels).logits.float()
        if self._multi_label:
            values = logits.sigmoid()[:, self._nsfw].max(dim=-1).values
        else:
            values = logits.softmax(dim=-1)[:, self._nsfw].sum(dim=-1)
        result: list[float] = values.cpu().tolist()
        return result

    def flag(self, images: Sequence[Image.Image]) -> list[bool]:
        return [score >= self.threshold for score in self.scores(images)]

    def __repr__(self) -> str:
        return f"TransformersClassifier({self.source!r}, threshold={self.threshold})"


class FakeClassifier:
    """`ImageClassifier` twin for tests. `flags` is one bool for every image, a sequence
    handed out image by image across calls (cycling), or a function of the image.
    `calls` records each call's batch size."""

    def __init__(
        self, flags: bool | Sequence[bool] | Callable[[Image.Image], bool] = False
    ) -> None:
        if isinstance(flags, bool):
            self._decide: Callable[[Image.Image], bool] = lambda _image: flags
        elif callable(flags):
            self._decide = flags
        else:
            if not flags:
                raise ValueError("FakeClassifier needs at least one flag, e.g. [True, False]")
            sequence = _cycle(list(flags))
            self._decide = lambda _image: next(sequence)
        self.calls: list[int] = []

    def flag(self, images: Sequence[Image.Image]) -> list[bool]:
        self.calls.append(len(images))
        return [bool(self._decide(image)) for image in images]


def build_tiny_classifier(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight ViT NSFW classifier (labels "normal"/"nsfw", 32-px input,
    hidden size 32, 2 layers) to `out_dir` in the layout of Falconsai/nsfw_image_detection,
    and return `out_dir`. Its scores are arbitrary but deterministic for a seed: tests reach
    both outcomes through the threshold (0.0 flags everything, above 1 nothing)."""
    import torch

    hf = _transformers()
    config = hf.ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
        num_labels=2,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    torch.manual_seed(seed)
    model = hf.ViTForImageClassification(config).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    _vit_processor(size={"height": 32, "width": 32}).save_pretrained(out_dir)
    return out_dir


def _nsfw_indices(labels: dict[int, str], wanted: Sequence[str], source: str) -> list[int]:
    names = {name.lower() for name in wanted}
    indices = sorted(i for i, name in labels.items() if name.lower() in names)
    if not indices:
        raise ValueError(
            f"none of {source!r}'s labels {sorted(labels.values())} is an NSFW label "
            f"{sorted(names)}; pass nsfw_labels= with the model's adult-content labels"
        )
    return indices


def _resolve_device(device: str, torch_module: Any) -> str:
    if device == "auto":
        return "cuda" if torch_module.cuda.is_available() else "cpu"
    return device


def _transformers() -> Any:
    """The transformers module, typed loosely: its own annotations are partial."""
    import transformers

    return transformers


def _pil_backend() -> dict[str, Any]:
    """AutoImageProcessor options that pick the PIL/numpy implementation: without them
    transformers 5 wants torchvision (and 4.x may pick a torchvision "fast" processor)."""
    major = int(_transformers().__version__.split(".")[0])
    return {"backend": "pil"} if major >= 5 else {"use_fast": False}


def _vit_processor(**kwargs: Any) -> Any:
    """ViT's PIL-backed image processor (transformers 5 names it ViTImageProcessorPil;
    in 4.x the plain ViTImageProcessor is the PIL one)."""
    hf = _transformers()
    cls = getattr(hf, "ViTImageProcessorPil", None) or hf.ViTImageProcessor
    return cls(**kwargs)


def _cycle(values: list[bool]) -> Iterator[bool]:
    while True:
        yield from values
