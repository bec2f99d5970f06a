from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from murano import __version__
from murano.imaging.encode import encode
from murano.imaging.metadata import (
    ImageMetadata,
    parse_infotext,
    read_infotext,
    read_metadata,
)
from murano.imaging.samples import synthetic_photo

BASE = ImageMetadata(
    prompt="a lighthouse at dusk",
    negative_prompt="blurry",
    model="flux-dev",
    seed=123,
    steps=8,
    cfg_scale=7.5,
    width=1024,
    height=768,
    style_preset="Anime",
)


def test_infotext_has_a1111s_layout() -> None:
    assert BASE.to_infotext() == (
        "a lighthouse at dusk\n"
        "Negative prompt: blurry\n"
        "Steps: 8, CFG scale: 7.5, Seed: 123, Size: 1024x768, Model: flux-dev, "
        f"Style preset: Anime, Version: murano {__version__}"
    )


def test_missing_negative_prompt_and_style_are_left_out() -> None:
    bare = dataclasses.replace(BASE, negative_prompt=None, style_preset=None)
    assert bare.to_infotext() == (
        "a lighthouse at dusk\n"
        "Steps: 8, CFG scale: 7.5, Seed: 123, Size: 1024x768, Model: flux-dev, "
        f"Version: murano {__version__}"
    )
    assert dataclasses.replace(bare, negative_prompt="").to_infotext() == bare.to_infotext()


def test_values_with_separators_are_json_quoted_and_read_back() -> None:
    odd = dataclasses.replace(BASE, model="org/model:v2, fp16", style_preset='"quoted"')
    text = odd.to_infotext()
    assert 'Model: "org/model:v2, fp16"' in text
    assert parse_infotext(text) == odd


def test_reads_an_infotext_written_by_automatic1111() -> None:
    text = (
        "girl with an artist's beret, determined, blue eyes\n"
        "Negative prompt: ugly, fat, (((deformed)))\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x640, "
        'Model hash: 45dee52b, Model: sd15, Lora hashes: "a: 1, b: 2", Version: v1.10.1'
    )
    parsed = parse_infotext(text)
    assert parsed == ImageMetadata(
        prompt="girl with an artist's beret, determined, blue eyes",
        negative_prompt="ugly, fat, (((deformed)))",
        model="sd15",
        seed=965400086,
        steps=20,
        cfg_scale=7.0,
        width=512,
        height=640,
        style_preset=None,
        version="v1.10.1",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("just a prompt", "no parameter line"),
        ("p\nSteps: 8, CFG scale: 7, Seed: 1, Size: 64x64", "'Model'"),
        ("p\nSteps: 8, CFG scale: 7, Seed: 1, Size: big, Model: m", "WIDTHxHEIGHT"),
        ("p\nSteps: many, CFG scale: 7, Seed: 1, Size: 64x64, Model: m", "'Steps'"),
        ("p\nSteps: 8, CFG scale: high, Seed: 1, Size: 64x64, Model: m", "'CFG scale'"),
    ],
)
def test_malformed_infotext_names_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_infotext(text)


def test_no_metadata_reads_as_none() -> None:
    data = encode(synthetic_photo(64, 64), "webp")
    assert read_infotext(data) is None
    assert read_metadata(data) is None


def test_non_image_bytes_are_refused() -> None:
    with pytest.raises(ValueError, match="not a readable image"):
        read_infotext(b"definitely not an image")


def test_foreign_infotext_is_read_raw_but_not_parsed() -> None:
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", "a prompt\nSteps: 20, Sampler: Euler")
    import io

    buffer = io.BytesIO()
    synthetic_photo(32, 32).save(buffer, "PNG", pnginfo=chunks)
    assert read_infotext(buffer.getvalue()) == "a prompt\nSteps: 20, Sampler: Euler"
    with pytest.raises(ValueError):
        read_metadata(buffer.getvalue())


# Prompts as users type them: any text, except a line that starts like A1111's
# negative-prompt marker (ambiguous in the layout itself).
_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\x00"),
    max_size=60,
).filter(lambda s: not any(line.startswith("Negative prompt:") for line in s.split("\n")))


@settings(max_examples=150, deadline=None)
@given(
    prompt=_text,
    negative=st.one_of(st.none(), _text.filter(bool)),
    model=_text.filter(lambda s: s.strip() == s and s != "" and "\n" not in s),
    seed=st.integers(-999_999_999, 999_999_999),
    steps=st.integers(1, 100),
    cfg=st.floats(0.0, 20.0, allow_nan=False),
    style=st.one_of(st.none(), st.sampled_from(["Anime", "3D Model", "Neon Punk"])),
)
def test_any_metadata_round_trips_through_infotext(
    prompt: str,
    negative: str | None,
    model: str,
    seed: int,
    steps: int,
    cfg: float,
    style: str | None,
) -> None:
    meta = ImageMetadata(prompt, negative, model, seed, steps, cfg, 1024, 768, style)
    assert parse_infotext(meta.to_infotext()) == meta
