"""The stream events as the official `openai` SDK decodes them: its SSE decoder, then its
own pydantic types for `ImageGenStreamEvent`, validated strictly."""

from __future__ import annotations

import pytest
from openai._streaming import SSEDecoder
from openai.types import ImageGenCompletedEvent, ImageGenPartialImageEvent
from pydantic import TypeAdapter

from murano.api.streaming import (
    openai_completed,
    openai_error,
    openai_partial,
    partial_steps,
    sse,
)


def decode(raw: bytes) -> list[tuple[str | None, str | None, str]]:
    return [(e.event, e.id, e.data) for e in SSEDecoder().iter_bytes(iter([raw]))]


def test_partial_and_completed_events_validate_as_the_sdk_types() -> None:
    raw = openai_partial(
        "AAAA", 1, width=64, height=32, output_format="webp", quality="hd", background=None
    ) + openai_completed("BBBB", width=64, height=32, output_format="png", quality="low")
    (partial, completed) = SSEDecoder().iter_bytes(iter([raw]))
    assert partial.event == "image_generation.partial_image"
    event = TypeAdapter(ImageGenPartialImageEvent).validate_python(partial.json())
    assert (event.b64_json, event.partial_image_index, event.size) == ("AAAA", 1, "64x32")
    assert (event.quality, event.background, event.output_format) == ("auto", "auto", "webp")
    done = TypeAdapter(ImageGenCompletedEvent).validate_python(completed.json())
    assert (done.type, done.b64_json, done.quality, done.usage.total_tokens) == (
        "image_generation.completed",
        "BBBB",
        "low",
        0,
    )


def test_framing_has_id_event_and_one_data_line() -> None:
    framed = sse("progress", {"step": 1}, event_id=7)
    assert framed == b'id: 7\nevent: progress\ndata: {"step":1}\n\n'
    assert decode(sse(None, {"a": 1})) == [(None, None, '{"a":1}')]


def test_an_error_event_carries_openais_error_body() -> None:
    ((event, _, data),) = decode(openai_error("Inference processing failed", status=500))
    assert event == "error" and '"type":"server_error"' in data


@pytest.mark.parametrize(
    ("steps", "partials", "expected"),
    [(8, 3, [2, 4, 6]), (8, 1, [4]), (4, 2, [1, 3]), (2, 3, [1]), (1, 2, []), (8, 0, [])],
)
def test_partial_images_are_evenly_spaced_before_the_last_step(
    steps: int, partials: int, expected: list[int]
) -> None:
    assert partial_steps(steps, partials) == expected
