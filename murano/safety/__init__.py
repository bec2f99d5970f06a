"""The `safe_mode` check: which generated images show adult content. The server blurs the
flagged ones (`murano.imaging.blur`) and says so in `x-venice-is-blurred`.

`ImageClassifier` is the interface; `TransformersClassifier` runs a Hugging Face
image-classification model (`MURANO_SAFETY_CLASSIFIER`, e.g. Falconsai/nsfw_image_detection),
`FakeClassifier` is its twin for tests, and `build_tiny_classifier` writes a tiny random ViT
for tests that need the real code path. `SafetyPolicy` decides, once per job, whether its
images are classified (`murano.safety.policy`). Importing this package does not import torch.
"""

from murano.safety.classifier import (
    DEFAULT_NSFW_LABELS,
    FakeClassifier,
    ImageClassifier,
    TransformersClassifier,
    build_tiny_classifier,
)
from murano.safety.policy import NOT_ASKED, SafetyDecision, SafetyPolicy

__all__ = [
    "DEFAULT_NSFW_LABELS",
    "NOT_ASKED",
    "FakeClassifier",
    "ImageClassifier",
    "SafetyDecision",
    "SafetyPolicy",
    "TransformersClassifier",
    "build_tiny_classifier",
]
