"""The one EXIF field murano writes — UserComment — built by hand rather than through
`PIL.Image.Exif`, which types a bytes value as BYTE instead of the UNDEFINED the EXIF
standard requires for UserComment, and writes little-endian, while AUTOMATIC1111 (through
piexif) reads a "UNICODE" comment as big-endian UTF-16. A big-endian file makes both kinds of
reader agree: the EXIF spec says UNICODE text follows the file's byte order."""

from __future__ import annotations

import struct
from typing import Final

from PIL import Image

__all__ = ["read_user_comment", "user_comment_exif"]

_EXIF_IFD: Final = 0x8769  # pointer from IFD0 to the Exif IFD
_USER_COMMENT: Final = 0x9286
_LONG: Final = 4
_UNDEFINED: Final = 7
_ENTRY_IFD_SIZE: Final = 2 + 12 + 4  # entry count, one entry, next-IFD offset

# The 8-byte character-code prefixes EXIF defines for UserComment.
_UNICODE: Final = b"UNICODE\x00"
_ASCII: Final = b"ASCII\x00\x00\x00"
_UNDEFINED_CODE: Final = b"\x00" * 8


def user_comment_exif(text: str) -> bytes:
    """An EXIF block (with Pillow's "Exif\\0\\0" prefix) holding only `text` as a UNICODE
    UserComment, the way AUTOMATIC1111 stores its infotext in JPEG and WebP files."""
    comment = _UNICODE + text.encode("utf-16-be")
    ifd0 = 8
    exif_ifd = ifd0 + _ENTRY_IFD_SIZE
    data = exif_ifd + _ENTRY_IFD_SIZE
    return b"".join(
        [
            b"Exif\x00\x00",
            b"MM\x00\x2a" + struct.pack(">I", ifd0),
            struct.pack(">HHHII I", 1, _EXIF_IFD, _LONG, 1, exif_ifd, 0),
            struct.pack(">HHHII I", 1, _USER_COMMENT, _UNDEFINED, len(comment), data, 0),
            comment,
        ]
    )


def read_user_comment(image: Image.Image) -> str | None:
    """The EXIF UserComment of `image` as text, or None when it has none."""
    exif = image.getexif()
    raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if isinstance(raw, str):  # some writers store it as ASCII despite the standard
        return raw.rstrip("\x00") or None
    if not isinstance(raw, bytes) or not raw:
        return None
    code, body = raw[:8], raw[8:]
    if code == _UNICODE:
        # Follow the file's byte order, but trust a byte-order mark if a writer added one.
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            return body.decode("utf-16", errors="replace")
        encoding = "utf-16-le" if exif.endian == "<" else "utf-16-be"
        return body.decode(encoding, errors="replace").rstrip("\x00") or None
    if code in (_ASCII, _UNDEFINED_CODE):
        return body.decode("utf-8", errors="replace").rstrip("\x00") or None
    return raw.decode("utf-8", errors="replace").rstrip("\x00") or None
