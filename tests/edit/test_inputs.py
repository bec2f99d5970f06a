"""Input images: every accepted form decodes to the same pixels, and every input rule is a
domain error naming the field (400, 413 or 415) with a message a user can act on."""

from __future__ import annotations

import base64
import threading

import pytest

from murano.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from murano.imaging.inputs import (
    MAX_INPUT_BYTES,
    MAX_PIXELS,
    MIN_PIXELS,
    FetchPolicy,
    decode_image,
    read_image,
)
from tests.edit.images import Route, data_url, encoded, png_claiming, served

LOCAL = FetchPolicy.from_patterns(["127.0.0.1"])


async def test_every_form_decodes_to_the_same_image() -> None:
    png = encoded(320, 256)
    with served({"/a.png": Route(png)}) as base:
        forms: list[bytes | str] = [
            png,
            base64.b64encode(png).decode(),
            data_url(png),
            f"{base}/a.png",
        ]
        images = [await read_image(form, field="image", policy=LOCAL) for form in forms]
    assert {image.size for image in images} == {(320, 256)}
    assert len({image.tobytes() for image in images}) == 1


async def test_base64_with_line_breaks_and_no_padding_is_accepted() -> None:
    text = base64.encodebytes(encoded(256, 256, "JPEG")).decode().rstrip("=\n")
    image = await read_image(text, field="image", policy=LOCAL)
    assert image.size == (256, 256)


@pytest.mark.parametrize(
    ("size", "ok"),
    [((256, 256), True), ((255, 256), False), ((128, 512), True), ((100, 100), False)],
)
def test_minimum_pixels(size: tuple[int, int], ok: bool) -> None:
    data = encoded(*size)
    if ok:
        assert decode_image(data, field="image").size == size
        return
    with pytest.raises(InvalidRequest) as caught:
        decode_image(data, field="image")
    assert caught.value.field == "image"
    assert f"{MIN_PIXELS:,}" in caught.value.message


def test_too_many_pixels_is_refused_before_decoding() -> None:
    assert MAX_PIXELS == 5760 * 5760
    with pytest.raises(InvalidRequest) as caught:
        decode_image(png_claiming(5761, 5760), field="images.1")
    assert caught.value.field == "images.1"
    assert "5761x5760" in caught.value.message
    # The largest allowed size passes the check and fails only for lack of pixel data.
    with pytest.raises(InvalidRequest) as caught:
        decode_image(png_claiming(5760, 5760), field="image")
    assert "could not be decoded" in caught.value.message


@pytest.mark.parametrize(
    "data",
    [b"not an image at all", encoded()[:200], b"\x89PNG\r\n\x1a\n" + b"\0" * 64],
    ids=["text", "truncated-png", "bad-header"],
)
def test_undecodable_bytes_are_a_400_without_python_reprs(data: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        decode_image(data, field="image")
    assert caught.value.field == "image"
    assert "could not be decoded as an image" in caught.value.message
    assert "BytesIO" not in caught.value.message and "<" not in caught.value.message


async def test_25_mb_or_more_is_a_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        await read_image(b"\0" * MAX_INPUT_BYTES, field="image", policy=LOCAL)
    assert caught.value.field == "image"
    assert "25 MB" in caught.value.message
    # A base64 string is refused by its length, before it is decoded.
    with pytest.raises(PayloadTooLarge):
        await read_image("A" * (MAX_INPUT_BYTES * 4 // 3 + 8), field="image", policy=LOCAL)


async def test_bad_text_forms() -> None:
    with pytest.raises(InvalidRequest) as caught:
        await read_image("this is not base64!", field="image", policy=LOCAL)
    assert "base64" in caught.value.message
    with pytest.raises(UnsupportedMediaType) as media:
        await read_image(data_url(b"hello", "text/plain"), field="image", policy=LOCAL)
    assert media.value.field == "image" and "text/plain" in media.value.message
    with pytest.raises(InvalidRequest):
        await read_image("data:image/png,rawbytes", field="image", policy=LOCAL)
    with pytest.raises(InvalidRequest) as caught:
        await read_image("", field="image", policy=LOCAL)
    assert caught.value.field == "image"


# -- URLs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "allow",
    [
        [],  # URL inputs off
        ["example.com"],  # another host
        ["*"],  # any public host: loopback is not public
        ["*.0.0.1"],  # a wildcard never reaches a private address
    ],
)
async def test_refused_hosts(allow: list[str]) -> None:
    with served({"/a.png": Route(encoded())}) as base, pytest.raises(InvalidRequest) as caught:
        await read_image(f"{base}/a.png", field="image", policy=FetchPolicy(tuple(allow)))
    assert caught.value.field == "image"
    assert "127.0.0.1" in caught.value.message or "MURANO_FETCH_ALLOW" in caught.value.message


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["localhost"]])
async def test_listed_private_hosts_are_fetched(allow: list[str]) -> None:
    with served({"/a.png": Route(encoded(300, 300))}) as base:
        url = f"{base}/a.png"
        if allow == ["localhost"]:
            url = url.replace("127.0.0.1", "localhost")
        image = await read_image(url, field="image", policy=FetchPolicy(tuple(allow)))
    assert image.size == (300, 300)


def test_public_addresses_pass_a_wildcard() -> None:
    import ipaddress

    policy = FetchPolicy(("*",))
    assert policy.host_allowed("images.example.com")
    assert policy.address_allowed("images.example.com", ipaddress.ip_address("93.184.215.14"))
    for private in ("10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "::ffff:127.0.0.1"):
        assert not policy.address_allowed("images.example.com", ipaddress.ip_address(private))


async def test_redirects_are_checked_hop_by_hop() -> None:
    moved = Route(status=302, headers={"Location": "/a.png"})
    with served({"/go": moved, "/a.png": Route(encoded())}) as base:
        image = await read_image(f"{base}/go", field="image", policy=LOCAL)
        assert image.size == (256, 256)
        moved.headers["Location"] = "http://169.254.169.254/latest/meta-data"
        with pytest.raises(InvalidRequest) as caught:
            await read_image(f"{base}/go", field="image", policy=LOCAL)
    assert "169.254.169.254" in caught.value.message


async def test_url_failures() -> None:
    routes = {
        "/missing": Route(status=404, content_type="text/plain", body=b"no"),
        "/html": Route(body=b"<html></html>", content_type="text/html"),
        "/big": Route(body=encoded(512, 512)),
        "/junk": Route(body=b"junk", content_type="application/octet-stream"),
    }
    with served(routes) as base:
        with pytest.raises(InvalidRequest) as caught:
            await read_image(f"{base}/missing", field="image", policy=LOCAL)
        assert "404" in caught.value.message
        with pytest.raises(UnsupportedMediaType) as media:
            await read_image(f"{base}/html", field="image", policy=LOCAL)
        assert "text/html" in media.value.message
        small_cap = FetchPolicy(("127.0.0.1",), max_bytes=1000)
        with pytest.raises(PayloadTooLarge) as large:
            await read_image(f"{base}/big", field="image", policy=small_cap)
        assert large.value.field == "image"
        with pytest.raises(InvalidRequest) as caught:
            await read_image(f"{base}/junk", field="image", policy=LOCAL)
        assert "could not be decoded" in caught.value.message
        with pytest.raises(InvalidRequest) as caught:
            await read_image("ftp://127.0.0.1/a.png", field="image", policy=LOCAL)


async def test_a_fetch_that_never_answers_times_out() -> None:
    hold = threading.Event()
    with served({"/slow": Route(encoded(), hold=hold)}) as base:
        policy = FetchPolicy(("127.0.0.1",), timeout_s=0.2)
        with pytest.raises(InvalidRequest) as caught:
            await read_image(f"{base}/slow", field="image", policy=policy)
        hold.set()
    assert "timed out" in caught.value.message
