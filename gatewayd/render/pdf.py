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

At normal resolution PDFium fills only the pixels whose centre a shape covers, so a
stroke about half a row tall (a hairline rule, the top arch of a 6 pt n, a serif)
vanishes where it falls between two centres. Such pages are drawn at fine as well, and
every black run of a column there that the normal page shows nowhere near is put back
(``raster.add_strokes``), beside the black of its neighbours when it can be: strokes
come back, while the gaps and counters of the normal drawing stay open. (Folding the
fine drawing two rows into one, by any rule, read far worse: it closes the gap over an
i and inside an e.)

At normal resolution the text in Helvetica that the PDF does not embed is drawn
by FreeType at its true size, as Ghostscript draws it (``pdf_text``): PDFium draws
the page without it, at normal and at fine, the glyphs are drawn onto both, and then
the strokes are put back.

Images on the page that are photographs (by the share of mid-grey they are drawn
with, as for image files) are given to the coder as regions to screen whole; the rest
of the page is judged block by block.

The standard PDF fonts, when not embedded, are drawn with the faces ``pdf_fonts``
finds on the machine.

PDFium is not thread-safe: one process renders one document at a time.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from gatewayd.errors import RenderError
from gatewayd.render import pdf_sysfonts, pdf_text
from gatewayd.render.raster import (
    PHOTO_REGION,
    FaxFormat,
    Grey,
    Placement,
    Rect,
    add_strokes,
    encode_grey,
    has_midtones,
    place,
    region_midtone_share,
)
from gatewayd.render.tiff import CodedPage

_FILE_ERROR, _PASSWORD_ERROR = 2, 4  # FPDF_ERR_FILE, FPDF_ERR_PASSWORD
FINE_DPI = 196
STROKE_SLACK = 1  # rows: a stroke drawn a row off at normal is there, not lost
_IMAGE, _FORM = pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_FORM
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
    pdf_sysfonts.install()  # once per process, before the first document
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
        next page drawn into the same buffer overwrites."""
        return self.draw(index, fax, buffer=buffer).pixels

    def draw(self, index: int, fax: FaxFormat, *, buffer: int = 0) -> Drawn:
        """Page ``index`` drawn on a fax page (a view of bitmap ``buffer``, as
        :meth:`grey`), with the rectangles of the photographs on it."""
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
            where = place(*size, fax)
            if fax.y_dpi < FINE_DPI:
                fine = self._canvas(replace(fax, y_dpi=FINE_DPI), buffer)
                text = pdf_text.collect(raw, pdf_sysfonts.install().true_size, where)
                with pdf_text.hidden(text):
                    self._draw(raw, canvas, size)
                    self._draw(raw, fine, size)
                if text is not None:
                    text.draw(canvas.pixels, where)
                    text.draw(fine.pixels, place(*size, fine.fax))
                add_strokes(canvas.pixels, fine.pixels, slack=STROKE_SLACK)
            else:
                self._draw(raw, canvas, size)
            photos = _photographs(raw, canvas.pixels, where)
        finally:
            close()
        return Drawn(canvas.pixels, photos)

    def _draw(self, raw: Any, canvas: _Canvas, size: tuple[float, float]) -> None:
        where = place(*size, canvas.fax)
        canvas.clear()
        arguments: tuple[Any, ...] = (
            canvas.bitmap,
            raw,
            where.x,
            where.y,
            where.width,
            where.height,
            where.rotate,
            _FLAGS,
        )
        pdfium_c.FPDF_RenderPageBitmap(*arguments)
        forms = self.document.formenv
        if forms is not None:
            pdfium_c.FPDF_FFLDraw(forms.raw, *arguments)

    def render(self, index: int, fax: FaxFormat) -> CodedPage:
        drawn = self.draw(index, fax)
        return encode_grey(drawn.pixels, fax, regions=drawn.photos)


@dataclass(frozen=True, slots=True)
class Drawn:
    """A page drawn, and the rectangles of the photographs on it (screened whole)."""

    pixels: Grey
    photos: tuple[Rect, ...] = ()


def _photographs(raw: Any, pixels: Grey, where: Placement) -> tuple[Rect, ...]:
    """The rectangles of the page's images (in form XObjects too) that are drawn mostly
    in mid-grey: photographs. A page without mid-grey has none (no look at its
    objects, which a dense text page has thousands of)."""
    if not has_midtones(pixels):
        return ()
    height, width = pixels.shape
    found: list[Rect] = []
    for left, bottom, right, top in _image_bounds(raw):
        xs, ys = [], []
        for px, py in ((left, bottom), (left, top), (right, bottom), (right, top)):
            dx, dy = ctypes.c_int(), ctypes.c_int()
            pdfium_c.FPDF_PageToDevice(
                raw, where.x, where.y, where.width, where.height, where.rotate, px, py, dx, dy
            )
            xs.append(dx.value)
            ys.append(dy.value)
        region = (
            max(0, min(xs)),
            max(0, min(ys)),
            min(width, max(xs) + 1),
            min(height, max(ys) + 1),
        )
        drawn = region[0] < region[2] and region[1] < region[3]
        if drawn and region_midtone_share(pixels, region) >= PHOTO_REGION:
            found.append(region)
    return tuple(found)


_Matrix = tuple[float, float, float, float, float, float]


def _image_bounds(raw: Any) -> list[tuple[float, float, float, float]]:
    """The bounding boxes of the page's image objects, in page space."""
    boxes: list[tuple[float, float, float, float]] = []
    count = pdfium_c.FPDFPage_CountObjects(raw)
    objects = [pdfium_c.FPDFPage_GetObject(raw, i) for i in range(count)]
    _collect(objects, (1, 0, 0, 1, 0, 0), boxes, depth=0)
    return boxes


def _collect(
    objects: list[Any], matrix: _Matrix, boxes: list[tuple[float, float, float, float]], depth: int
) -> None:
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    for obj in objects:
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind == _IMAGE and pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
            corners = [
                _apply(matrix, x, y)
                for x in (left.value, right.value)
                for y in (bottom.value, top.value)
            ]
            xs, ys = [c[0] for c in corners], [c[1] for c in corners]
            boxes.append((min(xs), min(ys), max(xs), max(ys)))
        elif kind == _FORM and depth < 8:
            inner = pdfium_c.FS_MATRIX()
            if not pdfium_c.FPDFPageObj_GetMatrix(obj, inner):
                continue
            form: _Matrix = (inner.a, inner.b, inner.c, inner.d, inner.e, inner.f)
            n = pdfium_c.FPDFFormObj_CountObjects(obj)
            children = [pdfium_c.FPDFFormObj_GetObject(obj, i) for i in range(max(0, n))]
            _collect(children, _compose(form, matrix), boxes, depth + 1)


def _apply(m: _Matrix, x: float, y: float) -> tuple[float, float]:
    return m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]


def _compose(first: _Matrix, then: _Matrix) -> _Matrix:
    """The matrix that applies ``first``, then ``then`` (PDF's row-vector order)."""
    a, b, c, d, e, f = first
    a2, b2, c2, d2, e2, f2 = then
    return (
        a * a2 + b * c2,
        a * b2 + b * d2,
        c * a2 + d * c2,
        c * b2 + d * d2,
        e * a2 + f * c2 + e2,
        e * b2 + f * d2 + f2,
    )
