"""Writing TIFF Class F: one coded strip per page, the tags fax software reads.

Every page carries NewSubfileType 2 and PageNumber (index, total), written here
directly (Pillow passes PageNumber to libtiff wrongly), min-is-white, FillOrder 1,
one strip, and the resolution of the fax mode.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

COMPRESSION_G3 = 3
COMPRESSION_G4 = 4
T4_2D_FILLBITS = 1 | 4  # T4Options: two-dimensional coding, EOLs byte-aligned

_SHORT, _LONG, _RATIONAL, _ASCII = 3, 4, 5, 2
SOFTWARE = b"gatewayd\x00"


@dataclass(frozen=True, slots=True)
class CodedPage:
    """One fax page, coded (the strip of a TIFF)."""

    width: int
    height: int
    y_resolution: int  # 98 or 196 lines per inch
    compression: int  # COMPRESSION_G3 or COMPRESSION_G4
    data: bytes
    x_resolution: int = 204


def _ifd(
    page: CodedPage, strip_offset: int, index: int, total: int, ifd_offset: int
) -> tuple[bytes, int]:
    """The page's IFD placed at ``ifd_offset``, and where its next-IFD pointer sits."""
    entries: list[tuple[int, int, int, bytes]] = [
        (254, _LONG, 1, struct.pack("<I", 2)),
        (256, _LONG, 1, struct.pack("<I", page.width)),
        (257, _LONG, 1, struct.pack("<I", page.height)),
        (258, _SHORT, 1, struct.pack("<HH", 1, 0)),
        (259, _SHORT, 1, struct.pack("<HH", page.compression, 0)),
        (262, _SHORT, 1, struct.pack("<HH", 0, 0)),  # min-is-white
        (266, _SHORT, 1, struct.pack("<HH", 1, 0)),  # FillOrder: MSB first
        (273, _LONG, 1, struct.pack("<I", strip_offset)),
        (277, _SHORT, 1, struct.pack("<HH", 1, 0)),
        (278, _LONG, 1, struct.pack("<I", page.height)),  # one strip
        (279, _LONG, 1, struct.pack("<I", len(page.data))),
        (282, _RATIONAL, 1, struct.pack("<II", page.x_resolution, 1)),
        (283, _RATIONAL, 1, struct.pack("<II", page.y_resolution, 1)),
        (284, _SHORT, 1, struct.pack("<HH", 1, 0)),
        (
            292 if page.compression == COMPRESSION_G3 else 293,
            _LONG,
            1,
            struct.pack("<I", T4_2D_FILLBITS if page.compression == COMPRESSION_G3 else 0),
        ),
        (296, _SHORT, 1, struct.pack("<HH", 2, 0)),  # inches
        (297, _SHORT, 2, struct.pack("<HH", index, total)),
        (305, _ASCII, len(SOFTWARE), SOFTWARE),
    ]
    head = struct.pack("<H", len(entries))
    values_at = ifd_offset + 2 + 12 * len(entries) + 4
    body, extra = bytearray(), bytearray()
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
        else:
            body += struct.pack("<HHII", tag, kind, count, values_at + len(extra))
            extra += value + (b"\x00" if len(value) % 2 else b"")
    next_at = ifd_offset + 2 + len(body)
    return head + bytes(body) + b"\x00\x00\x00\x00" + bytes(extra), next_at


def write(pages: Sequence[CodedPage], out: BinaryIO) -> int:
    """Write a multi-page Class F TIFF; returns the bytes written."""
    if not pages:
        raise ValueError("a TIFF needs at least one page")
    out.write(b"II*\x00\x00\x00\x00\x00")  # the first IFD's offset is patched below
    position = 8
    previous_pointer = 4
    for index, page in enumerate(pages):
        strip_offset = position
        out.write(page.data)
        position += len(page.data)
        if position % 2:
            out.write(b"\x00")
            position += 1
        ifd, next_pointer = _ifd(page, strip_offset, index, len(pages), position)
        out.write(ifd)
        here = out.tell()
        out.seek(previous_pointer)
        out.write(struct.pack("<I", position))
        out.seek(here)
        previous_pointer = next_pointer
        position += len(ifd)
    return position


def write_file(pages: Sequence[CodedPage], path: Path) -> int:
    with path.open("wb") as out:
        return write(pages, out)
