"""`murano watermark check` and `murano metadata`, driven through `murano.cli.main`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from murano.cli import main
from murano.imaging.encode import encode
from murano.imaging.metadata import ImageMetadata
from murano.imaging.samples import synthetic_photo
from murano.imaging.watermark import apply_watermark

META = ImageMetadata(
    prompt="a red fox in snow, 35mm",
    negative_prompt="blurry",
    model="venice-sd35",
    seed=42,
    steps=20,
    cfg_scale=6.5,
    width=512,
    height=512,
    style_preset="Analog Film",
)


@pytest.fixture
def photo(photo_512: Image.Image) -> Image.Image:
    return photo_512


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_watermark_check_finds_the_mark(
    tmp_path: Path, photo: Image.Image, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path / "marked.webp", encode(apply_watermark(photo), "webp"))
    assert main(["watermark", "check", str(file)]) == 0
    out = capsys.readouterr().out
    assert "murano watermark found" in out and "64/64" in out


def test_watermark_check_reports_unmarked_images(
    tmp_path: Path, photo: Image.Image, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path / "plain.jpg", encode(photo, "jpeg"))
    assert main(["watermark", "check", str(file)]) == 1
    assert "no murano watermark" in capsys.readouterr().out


def test_watermark_check_explains_small_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path / "small.png", encode(synthetic_photo(128, 128), "png"))
    assert main(["watermark", "check", str(file)]) == 1
    assert "256 px" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"not an image", None])
def test_watermark_check_unreadable_file_exits_2(
    tmp_path: Path, content: bytes | None, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "broken.png"
    if content is not None:
        file.write_bytes(content)
    assert main(["watermark", "check", str(file)]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_metadata_prints_the_infotext(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = encode(synthetic_photo(64, 64), fmt, metadata=META)  # type: ignore[arg-type]
    file = _write(tmp_path / f"meta.{fmt}", data)
    assert main(["metadata", str(file)]) == 0
    assert capsys.readouterr().out == META.to_infotext() + "\n"


def test_metadata_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path / "meta.webp", encode(synthetic_photo(64, 64), "webp", metadata=META))
    assert main(["metadata", str(file), "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["prompt"] == META.prompt
    assert fields["seed"] == 42 and fields["cfg_scale"] == 6.5
    assert fields["model"] == "venice-sd35" and fields["style_preset"] == "Analog Film"


def test_metadata_absent_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = _write(tmp_path / "plain.png", encode(synthetic_photo(64, 64), "png"))
    assert main(["metadata", str(file)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no embedded metadata" in captured.err


def test_metadata_json_refuses_a_foreign_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import PngImagePlugin

    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", "a prompt\nSteps: 20, Sampler: Euler a, CFG scale: 7")
    file = tmp_path / "other.png"
    synthetic_photo(32, 32).save(file, "PNG", pnginfo=chunks)
    assert main(["metadata", str(file)]) == 0
    capsys.readouterr()
    assert main(["metadata", str(file), "--json"]) == 1
    assert "not murano's layout" in capsys.readouterr().err


def test_metadata_unreadable_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = _write(tmp_path / "junk.jpg", b"\xff\xd8\xff garbage")
    assert main(["metadata", str(file)]) == 2
    assert "cannot read" in capsys.readouterr().err
