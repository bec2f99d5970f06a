from __future__ import annotations

import io

import pytest
from PIL import Image, PngImagePlugin

from murano.imaging._exif import user_comment_exif
from murano.imaging.encode import FORMATS, MIME_TYPES, ImageFormat, encode, sniff_format
from murano.imaging.metadata import ImageMetadata
from murano.imaging.samples import synthetic_photo
from tests.imaging._containers import jpeg_markers, png_chunks, webp_chunks

PIL_NAMES = {"webp": "WEBP", "png": "PNG", "jpeg": "JPEG"}
SECRET = "a secret prompt about a lighthouse"


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _image_carrying_metadata() -> Image.Image:
    """An image whose `info` holds every kind of metadata Pillow would copy into a file."""
    source = synthetic_photo(96, 64, seed=3)
    buffer = io.BytesIO()
    source.save(
        buffer,
        "JPEG",
        exif=user_comment_exif(SECRET),
        icc_profile=b"not really an ICC profile " + SECRET.encode(),
        xmp=f"<x:xmpmeta>{SECRET}</x:xmpmeta>".encode(),
    )
    image = _open(buffer.getvalue())
    image.info["parameters"] = SECRET  # as if read from an A1111 PNG
    assert {"exif", "icc_profile", "xmp"} <= image.info.keys()
    return image


@pytest.mark.parametrize("fmt", FORMATS)
def test_output_is_really_that_format_at_the_image_size(fmt: ImageFormat) -> None:
    image = synthetic_photo(640, 384, seed=4)
    data = encode(image, fmt)
    assert sniff_format(data) == fmt
    decoded = _open(data)
    assert decoded.format == PIL_NAMES[fmt]
    assert decoded.size == (640, 384)
    assert decoded.mode == "RGB"


def test_mime_types_cover_every_format() -> None:
    assert dict(MIME_TYPES) == {"webp": "image/webp", "png": "image/png", "jpeg": "image/jpeg"}
    assert set(FORMATS) == set(MIME_TYPES)


@pytest.mark.parametrize(
    "data",
    [b"", b"GIF89a....", b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x89PNG", b"<html>"],
)
def test_sniff_format_rejects_other_bytes(data: bytes) -> None:
    assert sniff_format(data) is None


def test_png_is_lossless() -> None:
    image = synthetic_photo(128, 96, seed=5)
    assert _open(encode(image, "png")).tobytes() == image.tobytes()


def test_unknown_format_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="webp, png, jpeg"):
        encode(synthetic_photo(32, 32), "gif")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_metadata_at_all_when_none_is_asked_for(fmt: ImageFormat) -> None:
    source = _image_carrying_metadata()
    data = encode(source, fmt)
    assert SECRET.encode() not in data
    assert SECRET.encode("utf-16-be") not in data
    decoded = _open(data)
    assert len(decoded.getexif()) == 0
    leaked = {"exif", "icc_profile", "xmp", "parameters", "XML:com.adobe.xmp"} & set(decoded.info)
    assert not leaked
    if fmt == "png":
        assert set(png_chunks(data)) == {"IHDR", "IDAT", "IEND"}
    elif fmt == "jpeg":
        # Only JFIF's APP0; no APP1 (EXIF/XMP), APP2 (ICC) or COM segment.
        assert not {0xE1, 0xE2, 0xFE} & set(jpeg_markers(data))
    else:
        assert webp_chunks(data) in (["VP8 "], ["VP8L"])


def test_encoding_leaves_the_input_image_alone() -> None:
    source = _image_carrying_metadata()
    before = dict(source.info)
    encode(source, "png")
    assert source.info == before


METADATA = ImageMetadata(
    prompt='a lighthouse at dusk, "oil": ünïcödé 灯台 🌅\nsecond line',
    negative_prompt="blurry, low quality",
    model="flux-dev",
    seed=123,
    steps=8,
    cfg_scale=7.5,
    width=1024,
    height=1024,
    style_preset="3D Model",
)


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_round_trips_through_every_format(fmt: ImageFormat) -> None:
    from murano.imaging.metadata import read_metadata

    data = encode(synthetic_photo(64, 64), fmt, metadata=METADATA)
    assert read_metadata(data) == METADATA


def test_png_metadata_is_a1111s_parameters_chunk() -> None:
    data = encode(synthetic_photo(64, 64), "png", metadata=METADATA)
    # Not Latin-1, so Pillow writes it as iTXt; A1111 reads either.
    assert "iTXt" in png_chunks(data)
    assert _open(data).info["parameters"] == METADATA.to_infotext()


def test_latin1_png_metadata_is_a_text_chunk() -> None:
    plain = ImageMetadata("a cat", None, "m", 1, 2, 3.0, 64, 64)
    data = encode(synthetic_photo(64, 64), "png", metadata=plain)
    assert "tEXt" in png_chunks(data)


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_exif_metadata_is_a_unicode_user_comment(fmt: ImageFormat) -> None:
    data = encode(synthetic_photo(64, 64), fmt, metadata=METADATA)
    exif = _open(data).getexif()
    assert exif.endian == ">"
    comment = exif.get_ifd(0x8769)[0x9286]
    assert comment[:8] == b"UNICODE\x00"
    assert comment[8:].decode("utf-16-be") == METADATA.to_infotext()


def test_user_comment_is_typed_undefined() -> None:
    # Entry of the Exif IFD: tag 0x9286, type 7 (UNDEFINED), as the EXIF standard requires.
    exif = user_comment_exif("hello")
    assert b"\x92\x86\x00\x07" in exif


def test_metadata_too_large_for_jpeg_is_refused() -> None:
    huge = ImageMetadata("🌅" * 9000, "🌅" * 9000, "m", 1, 2, 3.0, 64, 64)
    with pytest.raises(ValueError, match="png or webp"):
        encode(synthetic_photo(64, 64), "jpeg", metadata=huge)
    assert sniff_format(encode(synthetic_photo(64, 64), "webp", metadata=huge)) == "webp"


def test_alpha_is_kept_where_the_format_has_it() -> None:
    image = synthetic_photo(64, 64).convert("RGBA")
    image.putpixel((0, 0), (10, 20, 30, 0))
    assert _open(encode(image, "png")).mode == "RGBA"
    assert _open(encode(image, "webp")).mode == "RGBA"
    assert _open(encode(image, "jpeg")).mode == "RGB"


def test_palette_transparency_becomes_alpha() -> None:
    image = Image.new("P", (32, 32), 0)
    image.info["transparency"] = 0
    assert _open(encode(image, "webp")).mode == "RGBA"


def test_png_text_in_the_input_is_not_copied() -> None:
    chunks = PngImagePlugin.PngInfo()
    chunks.add_text("parameters", SECRET)
    buffer = io.BytesIO()
    synthetic_photo(32, 32).save(buffer, "PNG", pnginfo=chunks)
    reopened = _open(buffer.getvalue())
    assert reopened.info["parameters"] == SECRET
    assert SECRET.encode() not in encode(reopened, "png")
