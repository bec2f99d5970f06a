"""Minimal readers of the three container formats, independent of Pillow, so tests can
see exactly which chunks and segments an encoded file holds."""

from __future__ import annotations

import struct


def png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    names, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        names.append(data[pos + 4 : pos + 8].decode("ascii"))
        pos += 12 + length
    return names


def jpeg_markers(data: bytes) -> list[int]:
    """Marker bytes of the segments before the image data (0xE0 = APP0, 0xE1 = APP1, ...)."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


def webp_chunks(data: bytes) -> list[str]:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    names, pos = [], 12
    while pos < len(data):
        fourcc = data[pos : pos + 4].decode("ascii")
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        names.append(fourcc)
        pos += 8 + size + (size & 1)
    return names
