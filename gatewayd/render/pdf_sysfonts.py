"""PDFium's system-font interface in this process: the standard PDF faces that
``pdf_fonts.find`` located, handed to PDFium when a document does not embed them; the
rest from PDFium's default lookup. Kept apart from pdf_fonts.py so that finding the
faces (``gatewayd check-config``) does not load PDFium."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium

from gatewayd.render.pdf_fonts import CJK_CHARSETS, Found, find


class _Face:
    """One font file, handed to PDFium: its address is the handle PDFium holds."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name.encode()
        self.path = path
        self.handle = ctypes.create_string_buffer(1)  # a unique, live address
        self._data: bytes | None = None

    @property
    def address(self) -> int:
        return ctypes.addressof(self.handle)

    @property
    def data(self) -> bytes:
        if self._data is None:
            self._data = self.path.read_bytes()
        return self._data


class _StandardFonts(pdfium.PdfSysfontBase):  # type: ignore[misc]
    """PDFium's system-font interface: the standard faces from files found here, the
    rest from PDFium's default lookup (the base class forwards to it)."""

    def __init__(self, found: Found) -> None:
        super().__init__()
        self.by_name = {name: _Face(name, path) for name, path in found.paths.items()}
        self.by_handle = {face.address: face for face in self.by_name.values()}

    def MapFont(  # noqa: PLR0917 - PDFium's callback, argument for argument
        self, info: Any, weight: int, italic: int, charset: int, pitch: int, face: Any, exact: Any
    ) -> int | None:
        name = ctypes.string_at(face).decode("latin-1") if face else ""
        ours = self.by_name.get(name)
        if ours is not None and charset not in CJK_CHARSETS:
            return ours.address
        result: int | None = super().MapFont(info, weight, italic, charset, pitch, face, exact)
        return result

    def GetFontData(self, info: Any, handle: int | None, table: int, buffer: Any, size: int) -> int:
        ours = self.by_handle.get(handle or 0)
        if ours is None:
            result: int = super().GetFontData(info, handle, table, buffer, size)
            return result
        if table != 0:  # a table of a TrueType collection or a font's name: whole files only
            return 0
        data = ours.data
        if buffer and size >= len(data):
            ctypes.memmove(buffer, data, len(data))
        return len(data)

    def GetFaceName(self, info: Any, handle: int | None, buffer: Any, size: int) -> int:
        ours = self.by_handle.get(handle or 0)
        if ours is None:
            result: int = super().GetFaceName(info, handle, buffer, size)
            return result
        if buffer and size > len(ours.name):
            ctypes.memmove(buffer, ours.name + b"\0", len(ours.name) + 1)
        return len(ours.name) + 1

    def GetFontCharset(self, info: Any, handle: int | None) -> int:
        if (handle or 0) in self.by_handle:
            return 0  # ANSI
        result: int = super().GetFontCharset(info, handle)
        return result

    def DeleteFont(self, info: Any, handle: int | None) -> None:
        if (handle or 0) not in self.by_handle:  # ours live as long as the process
            super().DeleteFont(info, handle)


_installed: Found | None = None


def install() -> Found:
    """Answer PDFium's requests for the standard fonts in this process (once); what
    was found (PDFium's own substitutes draw the families with nothing installed)."""
    global _installed  # noqa: PLW0603 - PDFium's font interface is per process
    if _installed is None:
        found = find()
        if found.paths:
            _StandardFonts(found).setup()
        _installed = found
    return _installed
