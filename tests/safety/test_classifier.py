"""The safety classifier, on a tiny random ViT built offline (see build_tiny_classifier)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from murano.imaging.samples import noise_image, synthetic_photo
from murano.safety import (
    FakeClassifier,
    ImageClassifier,
    TransformersClassifier,
    build_tiny_classifier,
)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_classifier(tmp_path_factory.mktemp("tiny-nsfw"), seed=0)


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    return [
        synthetic_photo(96, 64, seed=1),
        noise_image(64, 64, seed=2),
        synthetic_photo(48, 80, seed=3).convert("RGBA"),
        Image.new("L", (40, 40), 200),
        synthetic_photo(64, 64, seed=4),
    ]


def test_tiny_model_is_laid_out_like_falconsai(tiny_model: Path) -> None:
    assert {p.name for p in tiny_model.iterdir()} >= {
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    }
    config = json.loads((tiny_model / "config.json").read_text())
    assert config["id2label"] == {"0": "normal", "1": "nsfw"}
    processor = json.loads((tiny_model / "preprocessor_config.json").read_text())
    assert processor["image_processor_type"] == "ViTImageProcessor"


def test_threshold_zero_flags_everything(tiny_model: Path, images: list[Image.Image]) -> None:
    assert TransformersClassifier(tiny_model, threshold=0.0).flag(images) == [True] * 5


def test_threshold_above_one_flags_nothing(tiny_model: Path, images: list[Image.Image]) -> None:
    assert TransformersClassifier(tiny_model, threshold=1.01).flag(images) == [False] * 5


def test_flags_follow_the_scores(tiny_model: Path, images: list[Image.Image]) -> None:
    scores = TransformersClassifier(tiny_model).scores(images)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(set(scores)) > 1  # different images, different scores
    middle = sorted(scores)[2]
    flags = TransformersClassifier(tiny_model, threshold=middle).flag(images)
    assert flags == [s >= middle for s in scores]
    assert True in flags and False in flags


def test_one_forward_for_a_batch_gives_the_single_image_results(
    tiny_model: Path, images: list[Image.Image]
) -> None:
    classifier = TransformersClassifier(tiny_model)
    batch_sizes: list[int] = []

    def count(_module: Any, args: Any, kwargs: Any, _output: Any) -> None:
        batch_sizes.append(int(kwargs["pixel_values"].shape[0]))

    handle = classifier._model.register_forward_hook(count, with_kwargs=True)
    try:
        batched = classifier.scores(images)
        assert batch_sizes == [len(images)]
        single = [classifier.scores([image])[0] for image in images]
    finally:
        handle.remove()
    assert batched == pytest.approx(single, abs=1e-5)


def test_no_images_no_forward(tiny_model: Path) -> None:
    classifier = TransformersClassifier(tiny_model)
    calls: list[int] = []
    handle = classifier._model.register_forward_hook(lambda *_: calls.append(1))
    try:
        assert classifier.flag([]) == []
    finally:
        handle.remove()
    assert calls == []


def test_labels_without_an_nsfw_class_are_refused(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="nsfw_labels"):
        TransformersClassifier(tiny_model, nsfw_labels=("porn", "hentai"))
    custom = TransformersClassifier(tiny_model, threshold=0.0, nsfw_labels=("NORMAL",))
    assert custom.flag([synthetic_photo(32, 32)]) == [True]


@pytest.mark.parametrize("threshold", [-0.1, float("nan"), float("inf")])
def test_bad_threshold_is_refused(tiny_model: Path, threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        TransformersClassifier(tiny_model, threshold=threshold)


def test_missing_model_names_what_is_needed(tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"model\.safetensors"):
        TransformersClassifier(tmp_path / "nowhere")


def test_importing_murano_safety_does_not_import_torch() -> None:
    code = "import sys, murano.safety; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.split() == ["False", "False"]


def test_both_classifiers_satisfy_the_protocol(tiny_model: Path) -> None:
    real: ImageClassifier = TransformersClassifier(tiny_model)
    fake: ImageClassifier = FakeClassifier(True)
    assert isinstance(real, ImageClassifier) and isinstance(fake, ImageClassifier)


def test_fake_flags_every_image_alike(images: list[Image.Image]) -> None:
    assert FakeClassifier(True).flag(images) == [True] * 5
    assert FakeClassifier().flag(images) == [False] * 5


def test_fake_hands_out_a_sequence_across_calls(images: list[Image.Image]) -> None:
    fake = FakeClassifier([True, False, False])
    assert fake.flag(images[:2]) == [True, False]
    assert fake.flag(images[:4]) == [False, True, False, False]
    assert fake.calls == [2, 4]


def test_fake_can_decide_per_image(images: list[Image.Image]) -> None:
    fake = FakeClassifier(lambda image: image.mode == "L")
    assert fake.flag(images) == [False, False, False, True, False]


def test_fake_needs_flags() -> None:
    with pytest.raises(ValueError, match="at least one flag"):
        FakeClassifier([])
