"""`SafetyPolicy.decide`: the one place that says whether a job's images are classified for
safe mode, and whether the response may say they were checked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from PIL.Image import Image

from murano.safety import NOT_ASKED, SafetyPolicy
from tests.conftest import entry
from tests.gateway.conftest import upstream_entry


def flag_none(images: Sequence[Image]) -> list[bool]:
    return [False] * len(images)


def upstream(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "base_url": "http://up.test", "key_env": "K", **fields}


@pytest.mark.parametrize("classifier", [flag_none, None])
def test_safe_mode_off_classifies_nothing_and_is_as_asked(classifier: Any) -> None:
    assert SafetyPolicy(classifier).decide(entry("m"), safe_mode=False) == NOT_ASKED
    assert NOT_ASKED.classifier is None and NOT_ASKED.checked


def test_a_local_model_uses_the_servers_classifier_when_there_is_one() -> None:
    decided = SafetyPolicy(flag_none).decide(entry("m"), safe_mode=True)
    assert decided.classifier is flag_none and decided.checked
    unchecked = SafetyPolicy(None).decide(entry("m"), safe_mode=True)
    assert unchecked.classifier is None and not unchecked.checked


@pytest.mark.parametrize(
    ("kind", "safety_check", "classified", "checked"),
    [
        ("venice", True, True, True),
        ("venice", False, False, True),  # Venice honours safe_mode itself
        ("openai", True, True, True),
        ("openai", False, False, False),  # OpenAI upstreams have no blur
    ],
)
def test_an_upstream_model_is_classified_only_where_its_entry_says(
    kind: str, safety_check: bool, classified: bool, checked: bool
) -> None:
    model = upstream_entry("up", upstream(kind, safety_check=safety_check))
    decided = SafetyPolicy(flag_none).decide(model, safe_mode=True)
    assert (decided.classifier is flag_none) is classified
    assert decided.checked is checked
