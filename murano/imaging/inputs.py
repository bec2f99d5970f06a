"""Input images for the edit endpoints: an upload's bytes, a base64 string, a `data:` URL or
an http(s) URL, each checked against Venice's input rules before any work is done.

Rules (every refusal is a domain error naming the request field):

* less than 25 MB (`MAX_INPUT_BYTES`) of encoded image → otherwise `PayloadTooLarge` (413);
* a data URL or a fetched response that declares a non-image type → `UnsupportedMediaType`
  (415);
* bytes Pillow can decode as an image → otherwise `InvalidRequest` (400);
* 65,536 to 33,177,600 pixels (`MIN_PIXELS`, `MAX_PIXELS`) → otherwise `InvalidRequest`;
* URLs only from hosts the operator allows (`FetchPolicy`, from `MURANO_FETCH_ALLOW`):
  private, loopback, link-local and reserved addresses are refused unless listed, every
  redirect is checked the same way, the body is capped and the fetch has a timeout.

Decoding runs on a worker thread (`read_image`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import io
import ipaddress
import socket
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image, ImageOps, UnidentifiedImageError

from murano.errors import InvalidRequest, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "MAX_INPUT_BYTES",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "FetchPolicy",
    "decode_image",
    "fetch_url",
    "fit",
    "fit_mask",
    "image_bytes",
    "mask_from_alpha",
    "read_image",
    "within_area",
]

MIN_PIXELS: Final = 65_536
MAX_PIXELS: Final = 33_177_600
MAX_INPUT_BYTES: Final = 25 * 1024 * 1024
_MAX_REDIRECTS: Final = 3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """Which URLs may be fetched, and how much of them.

    `allow` holds host patterns: a hostname (`images.example.com`), a glob
    (`*.example.com`, or `*` for every public host), an IP address or a CIDR range
    (`10.0.0.0/8`). A host must match one; then every address it resolves to must be
    public, or be covered by a listed IP/range, or the hostname itself must be listed
    without a wildcard (`localhost`). An empty `allow` turns URL inputs off."""

    allow: tuple[str, ...] = ()
    max_bytes: int = MAX_INPUT_BYTES
    timeout_s: float = 10.0
    _networks: tuple[Network, ...] = field(init=False, repr=False, compare=False)
    _names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        networks: list[Network] = []
        names: list[str] = []
        for pattern in self.allow:
            pattern = pattern.strip().lower()
            try:
                networks.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                if pattern:
                    names.append(pattern)
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", tuple(names))

    @classmethod
    def from_patterns(
        cls, patterns: Sequence[str], *, max_bytes: int = MAX_INPUT_BYTES, timeout_s: float = 10.0
    ) -> FetchPolicy:
        return cls(tuple(patterns), max_bytes=max_bytes, timeout_s=timeout_s)

    @property
    def enabled(self) -> bool:
        return bool(self.allow)

    def host_allowed(self, host: str) -> bool:
        """Whether `host` (a name or a literal address) matches a pattern."""
        host = host.lower().strip("[]")
        address = _as_address(host)
        if address is not None:
            return any(address in net for net in self._networks) or any(
                fnmatch.fnmatchcase(host, name) for name in self._names
            )
        return any(fnmatch.fnmatchcase(host, name) for name in self._names)

    def address_allowed(self, host: str, address: Address) -> bool:
        """Whether `host`, resolved to `address`, may be contacted."""
        if any(address in net for net in self._networks):
            return True
        if _is_public(address):
            return True
        # A private address only through a hostname listed by name, never by a wildcard.
        return host.lower() in self._names


def _as_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


# -- text forms: base64 and data URLs ------------------------------------------------------


def _check_size(size: int, field: str, limit: int = MAX_INPUT_BYTES) -> None:
    if size >= limit:
        raise PayloadTooLarge(
            field, f"{field}: file exceeds the maximum allowed size of {_mb(limit)}."
        )


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _b64decode(text: str, field: str) -> bytes:
    compact = "".join(text.split())
    # Four base64 characters carry three bytes: refuse before allocating the decoded copy.
    _check_size(len(compact) * 3 // 4, field)
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(compact, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(
            field,
            f"{field} must be an image file, a base64-encoded image, a data URL or an"
            " http(s) URL; this value is none of them.",
        ) from None


def _data_url(text: str, field: str) -> bytes:
    header, sep, payload = text.partition(",")
    if not sep:
        raise InvalidRequest(field, f"{field}: malformed data URL (no ',' before the data).")
    media = header[len("data:") :].split(";")
    mime = media[0].strip().lower()
    if mime and not mime.startswith("image/"):
        raise UnsupportedMediaType(
            field, f"{field}: data URL type '{mime}' is not an image type (image/png, …)."
        )
    if "base64" not in (part.strip().lower() for part in media[1:]):
        raise InvalidRequest(field, f"{field}: only base64 data URLs are supported.")
    return _b64decode(payload, field)


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


# -- URL fetching ----------------------------------------------------------------------------


async def _resolve(host: str, port: int) -> list[Address]:
    literal = _as_address(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for info in infos:
        address = _as_address(str(info[4][0]).split("%")[0])
        if address is not None:
            addresses.append(address)
    return addresses


async def _check_url(url: str, field: str, policy: FetchPolicy) -> None:
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(field, f"{field}: only http and https URLs can be fetched.")
    if not policy.enabled:
        raise InvalidRequest(
            field,
            f"{field}: this server does not fetch image URLs (MURANO_FETCH_ALLOW is empty);"
            " send the image as a file or base64 instead.",
        )
    if not policy.host_allowed(host):
        raise InvalidRequest(field, f"{field}: fetching images from host '{host}' is not allowed.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = await _resolve(host, port)
    except (OSError, ValueError):
        raise InvalidRequest(field, f"{field}: host '{host}' could not be resolved.") from None
    if not addresses or not all(policy.address_allowed(host, a) for a in addresses):
        raise InvalidRequest(
            field,
            f"{field}: host '{host}' resolves to a private or reserved address, which is not"
            " allowed.",
        )


async def fetch_url(url: str, *, field: str, policy: FetchPolicy) -> bytes:
    """The body at `url`, within `policy`: each hop's host checked, at most `max_bytes`,
    within `timeout_s` overall. Refusals and failures are 400s (413 when too large)."""
    try:
        async with asyncio.timeout(policy.timeout_s):
            return await _fetch(url, field, policy)
    except TimeoutError:
        raise InvalidRequest(
            field, f"{field}: fetching the image URL timed out after {policy.timeout_s:g} s."
        ) from None


async def _fetch(url: str, field: str, policy: FetchPolicy) -> bytes:
    timeout = httpx.Timeout(policy.timeout_s)
    async with httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout) as http:
        for _ in range(_MAX_REDIRECTS + 1):
            await _check_url(url, field, policy)
            try:
                async with http.stream("GET", url, headers={"Accept": "image/*"}) as response:
                    if response.is_redirect and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    return await _read_body(response, field, policy)
            except httpx.HTTPError as exc:
                raise InvalidRequest(
                    field, f"{field}: the image URL could not be fetched ({type(exc).__name__})."
                ) from None
    raise InvalidRequest(field, f"{field}: the image URL redirects too many times.")


async def _read_body(response: httpx.Response, field: str, policy: FetchPolicy) -> bytes:
    if response.status_code != 200:
        raise InvalidRequest(
            field, f"{field}: the image URL answered HTTP {response.status_code}, not 200."
        )
    mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if mime and not mime.startswith("image/") and mime != "application/octet-stream":
        raise UnsupportedMediaType(
            field, f"{field}: the image URL returned '{mime}', not an image type."
        )
    length = response.headers.get("content-length", "")
    if length.isdigit():
        _check_size(int(length), field, policy.max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in response.aiter_bytes():
        received += len(chunk)
        _check_size(received, field, policy.max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


# -- decoding ------------------------------------------------------------------------------


async def image_bytes(value: bytes | str, *, field: str, policy: FetchPolicy) -> bytes:
    """The encoded image behind `value`: an upload's bytes as they are, a URL fetched, a
    data URL or base64 string decoded. Size-checked; not yet decoded as an image."""
    if isinstance(value, bytes):
        data = value
    elif _is_url(value.lstrip()):
        data = await fetch_url(value.strip(), field=field, policy=policy)
    elif value.lstrip()[:5].lower() == "data:":
        data = _data_url(value.strip(), field)
    else:
        data = _b64decode(value, field)
    _check_size(len(data), field)
    if not data:
        raise InvalidRequest(field, f"{field} is empty.")
    return data


def decode_image(data: bytes, *, field: str) -> Image.Image:
    """`data` decoded (first frame, EXIF orientation applied), within the pixel limits."""
    _check_size(len(data), field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            _check_pixels(image.size, field)
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _undecodable(field) from None
    except (OSError, ValueError, SyntaxError, EOFError):
        # Truncated or corrupt files; Pillow's messages name in-memory buffers, not the field.
        raise _undecodable(field) from None
    transposed = ImageOps.exif_transpose(image)
    return transposed if transposed is not None else image


def _undecodable(field: str) -> InvalidRequest:
    return InvalidRequest(
        field, f"{field} could not be decoded as an image (PNG, JPEG, WebP, GIF, BMP or TIFF)."
    )


def _check_pixels(size: tuple[int, int], field: str) -> None:
    width, height = size
    pixels = width * height
    if pixels < MIN_PIXELS or pixels > MAX_PIXELS:
        raise InvalidRequest(
            field,
            f"{field} is {width}x{height} ({pixels:,} pixels); images must have between"
            f" {MIN_PIXELS:,} and {MAX_PIXELS:,} pixels.",
        )


async def read_image(value: bytes | str, *, field: str, policy: FetchPolicy) -> Image.Image:
    """`value` (upload bytes, base64, data URL or URL) as a decoded, checked image."""
    data = await image_bytes(value, field=field, policy=policy)
    return await asyncio.to_thread(decode_image, data, field=field)


# -- fitting inputs to an edit ---------------------------------------------------------------


def fit(image: Image.Image, width: int, height: int) -> Image.Image:
    """`image` as RGB at exactly `width`×`height`: scaled to cover, then centre-cropped, so
    nothing is stretched (image-to-image and inpainting start from it pixel for pixel)."""
    return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def fit_mask(mask: Image.Image, width: int, height: int) -> Image.Image:
    """A repaint mask ("L": white = repaint) cropped and scaled like `fit` crops its image."""
    return ImageOps.fit(mask, (width, height), Image.Resampling.NEAREST)


def within_area(image: Image.Image, area: int) -> Image.Image:
    """`image` as RGB, scaled down (never up) to at most `area` pixels, its ratio kept."""
    rgb = image.convert("RGB")
    pixels = rgb.width * rgb.height
    if pixels <= area:
        return rgb
    scale = (area / pixels) ** 0.5
    size = (max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.LANCZOS)


def mask_from_alpha(mask: Image.Image, size: tuple[int, int], *, field: str) -> Image.Image:
    """OpenAI's mask convention (a PNG whose fully transparent pixels mark what to repaint)
    as diffusers' ("L", white = repaint). It must match the image's size and have alpha."""
    if mask.size != size:
        raise InvalidRequest(
            field,
            f"{field} is {mask.width}x{mask.height} but the image is {size[0]}x{size[1]};"
            " they must have the same dimensions.",
        )
    if "A" not in mask.getbands() and not (mask.mode == "P" and "transparency" in mask.info):
        raise InvalidRequest(
            field, f"{field} must have an alpha channel (transparent where the image is edited)."
        )
    alpha = mask.convert("RGBA").getchannel("A")
    return alpha.point(lambda value: 255 if value == 0 else 0)
