"""PDF pages onto fax pages, with PDFium.

Each page is drawn once, straight into a 1728-dot-wide grey bitmap at the fax's
vertical resolution (PDFium stretches a page into any box, so non-square fax pixels
cost nothing), fitted whole and centred, landscape pages turned. Text and vector
paths are drawn without anti-aliasing, which keeps thin strokes, serifs and
punctuation at 98 lines per inch about as well as Ghostscript's fax devices. Images
are sampled without smoothing: two to three times faster for scans and photographs,
no visible difference once halftoned, and a scan's text keeps sharp edges instead of
grey fringes that would look like a photograph to the block classifier. Annotations
and form fields are drawn as printed.

At normal resolution PDFium loses a third of the strokes thinner than about 0.7 pt
(its minimum stroke width is measured along the wider axis, 204 dpi, so at 98 lines
per inch a hairline is half a row tall and drawn only where it covers half a row).
Such pages are drawn at fine as well, and the long horizontal runs found there are put
back (``_fax.add_rules``): every rule, underline and box edge stays, while text keeps
the crisper glyphs drawn at its own resolution.

PDFium is not thread-safe: one process renders one document at a time.
"""

from __future__ import annotations

import ctypes
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from gatewayd.errors import RenderError
from gatewayd.render import _fax
from gatewayd.render.raster import THRESHOLD, FaxFormat, Grey, encode_grey, place
from gatewayd.render.tiff import CodedPage

_FILE_ERROR, _PASSWORD_ERROR = 2, 4  # FPDF_ERR_FILE, FPDF_ERR_PASSWORD
FINE_DPI = 196
RULE_RUN = 24  # dots (3 mm): a black run this long at fine is a rule, not glyphs
_FLAGS = (
    pdfium_c.FPDF_ANNOT
    | pdfium_c.FPDF_PRINTING
    | pdfium_c.FPDF_GRAYSCALE
    | pdfium_c.FPDF_RENDER_NO_SMOOTHTEXT
    | pdfium_c.FPDF_RENDER_NO_SMOOTHPATH
    | pdfium_c.FPDF_RENDER_NO_SMOOTHIMAGE
)


def open_pdf(source: Path | bytes) -> pdfium.PdfDocument:
    """The document, or RenderError saying why it cannot be read."""
    # PDFium sets its last error only on some failures and never clears it: a file it
    # refuses without setting one (no page tree) would show the error of an earlier
    # document. Loading a file that does not exist sets a known one first.
    pdfium_c.FPDF_LoadDocument(b"/nonexistent/gatewayd", None)
    try:
        document = pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        code = getattr(exc, "err_code", None)
        if code == _PASSWORD_ERROR:
            raise RenderError("the PDF is password-protected") from exc
        if code == _FILE_ERROR:  # still ours: refused without an error of its own
            raise RenderError("the PDF has no pages") from exc
        raise RenderError("the PDF is damaged") from exc
    if len(document) == 0:
        document.close()
        raise RenderError("the PDF has no pages")
    return document


class _Canvas:
    """A reusable grey bitmap the size of a fax page."""

    def __init__(self, fax: FaxFormat) -> None:
        self.fax = fax
        self.bitmap = pdfium_c.FPDFBitmap_CreateEx(
            fax.width, fax.height, pdfium_c.FPDFBitmap_Gray, None, 0
        )
        if not self.bitmap:
            raise RenderError("cannot allocate a page bitmap")
        stride = pdfium_c.FPDFBitmap_GetStride(self.bitmap)
        buffer = ctypes.cast(
            pdfium_c.FPDFBitmap_GetBuffer(self.bitmap), ctypes.POINTER(ctypes.c_ubyte)
        )
        self.pixels: Grey = np.ctypeslib.as_array(buffer, shape=(fax.height, stride))[
            :, : fax.width
        ]

    def clear(self) -> None:
        pdfium_c.FPDFBitmap_FillRect(self.bitmap, 0, 0, self.fax.width, self.fax.height, 0xFFFFFFFF)

    def close(self) -> None:
        pdfium_c.FPDFBitmap_Destroy(self.bitmap)


class PdfPages:
    """One open PDF, rendering pages as fax pages."""

    def __init__(self, source: Path | bytes) -> None:
        self.document = open_pdf(source)
        self.document.init_forms()
        self._canvases: dict[tuple[FaxFormat, int], _Canvas] = {}

    def __len__(self) -> int:
        return len(self.document)

    def close(self) -> None:
        for canvas in self._canvases.values():
            canvas.close()
        self._canvases.clear()
        self.document.close()

    def _canvas(self, fax: FaxFormat, buffer: int) -> _Canvas:
        if (fax, buffer) not in self._canvases:
            self._canvases[fax, buffer] = _Canvas(fax)
        return self._canvases[fax, buffer]

    def grey(self, index: int, fax: FaxFormat, *, buffer: int = 0) -> Grey:
        """Page ``index`` drawn on a fax page: a view of bitmap ``buffer``, which the
        next page drawn into the same buffer overwrites. At normal resolution the page
        is drawn at fine too, for the thin rules PDFium loses at 98 lines per inch."""
        canvas = self._canvas(fax, buffer)
        forms = self.document.formenv
        if forms is not None:
            # The helper runs the form hooks a page with fields needs.
            page = self.document[index]
            raw, close = page.raw, page.close
        else:
            raw = pdfium_c.FPDF_LoadPage(self.document.raw, index)
            if not raw:
                raise RenderError(f"the PDF is damaged (page {index + 1} cannot be read)")
            close = partial(pdfium_c.FPDF_ClosePage, raw)
        try:
            size = pdfium_c.FPDF_GetPageWidthF(raw) / 72, pdfium_c.FPDF_GetPageHeightF(raw) / 72
            self._draw(raw, canvas, size)
            if fax.y_dpi < FINE_DPI:
                fine = self._canvas(replace(fax, y_dpi=FINE_DPI), buffer)
                self._draw(raw, fine, size)
                pixels, high = canvas.pixels, fine.pixels
                _fax.add_rules(pixels, high, fax.width, fax.height, pixels.strides[0],
                               high.strides[0], RULE_RUN, THRESHOLD)  # fmt: skip
        finally:
            close()
        return canvas.pixels

    def _draw(self, raw: Any, canvas: _Canvas, size: tuple[float, float]) -> None:
        where = place(*size, canvas.fax)
        canvas.clear()
        arguments: tuple[Any, ...] = (
            canvas.bitmap, raw, where.x, where.y, where.width, where.height, where.rotate,
            _FLAGS,
        )  # fmt: skip
        pdfium_c.FPDF_RenderPageBitmap(*arguments)
        forms = self.document.formenv
        if forms is not None:
            pdfium_c.FPDF_FFLDraw(forms.raw, *arguments)

    def render(self, index: int, fax: FaxFormat) -> CodedPage:
        return encode_grey(self.grey(index, fax), fax)
