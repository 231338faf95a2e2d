"""Standard-font text at normal resolution drawn by FreeType at its true size
(gatewayd/render/pdf_text.py), and everything it must leave to PDFium: text under
another object, white or rotated text, embedded fonts, fine resolution. PDFium and
FreeType are the real ones, in this process."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
import pytest
from numpy.typing import NDArray
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen.canvas import Canvas

from gatewayd.errors import RenderError
from gatewayd.render import pdf_sysfonts, pdf_text
from gatewayd.render.pdf import PdfPages
from gatewayd.render.raster import FaxFormat, place
from tests import documents

NORMAL, FINE = FaxFormat(y_dpi=98), FaxFormat(y_dpi=196)
LINE = "Invoice 4711: total 1,234.56 EUR, due on receipt."


def pdf_of(draw: Callable[[Canvas], None]) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    draw(canvas)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def collected(data: bytes, fax: FaxFormat = NORMAL) -> pdf_text.Glyphs | None:
    document = PdfPages(data)
    try:
        raw = pdfium_c.FPDF_LoadPage(document.document.raw, 0)
        where = place(A4[0] / 72, A4[1] / 72, fax)
        found = pdf_text.collect(raw, pdf_sysfonts.install().true_size, where)
        pdfium_c.FPDF_ClosePage(raw)
        return found
    finally:
        document.close()


def drawn(data: bytes, fax: FaxFormat = NORMAL) -> NDArray[np.bool_]:
    document = PdfPages(data)
    try:
        return document.grey(0, fax).copy() < 128
    finally:
        document.close()


def pdfium_alone(data: bytes, fax: FaxFormat = NORMAL) -> NDArray[np.bool_]:
    """The page as it was drawn before: every glyph PDFium's (strokes put back at normal
    as ever)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pdf_text, "collect", lambda *_: None)
        return drawn(data, fax)


def box(black: NDArray[np.bool_]) -> tuple[int, int, int, int]:
    rows, columns = np.nonzero(black.any(axis=1))[0], np.nonzero(black.any(axis=0))[0]
    return int(rows[0]), int(rows[-1]), int(columns[0]), int(columns[-1])


def test_standard_text_at_normal_is_drawn_where_pdfium_draws_it() -> None:
    def draw(canvas: Canvas) -> None:
        for n, size in enumerate((6, 8, 10, 12)):
            canvas.setFont("Helvetica", size)
            canvas.drawString(60, 760 - 40 * n, LINE)
        canvas.setFont("Times-Roman", 9)
        canvas.drawString(60, 560, LINE)

    data = pdf_of(draw)
    found = collected(data)
    assert found is not None
    assert len(found.objects) == 4  # Helvetica's; Times stays PDFium's
    assert len(found.code) == 4 * len(LINE.replace(" ", ""))
    ours, theirs = drawn(data), pdfium_alone(data)
    assert not np.array_equal(ours, theirs)  # the glyphs are FreeType's
    where = place(A4[0] / 72, A4[1] / 72, NORMAL)
    down = where.height / A4[1]
    for n in range(4):  # line by line, the text covers the same box, give or take
        base = where.y + round((A4[1] - (760 - 40 * n)) * down)
        band = slice(base - 20, base + 8)
        for a, b in zip(box(ours[band]), box(theirs[band]), strict=True):
            assert abs(a - b) <= 1
    times = slice(
        where.y + round((A4[1] - 560) * down) - 20, where.y + round((A4[1] - 560) * down) + 8
    )
    assert theirs[times].any()
    assert np.array_equal(ours[times], theirs[times])
    assert 0.85 < ours.sum() / theirs.sum() < 1.15


def test_fine_resolution_is_pdfiums() -> None:
    def draw(canvas: Canvas) -> None:
        canvas.setFont("Helvetica", 8)
        canvas.drawString(60, 760, LINE)

    data = pdf_of(draw)
    page = drawn(data, FINE)
    assert page.any()  # the line is drawn: equal is not two blank pages
    assert np.array_equal(page, pdfium_alone(data, FINE))


def test_text_under_a_white_box_stays_hidden() -> None:
    def draw(canvas: Canvas) -> None:
        canvas.setFont("Helvetica", 10)
        canvas.drawString(60, 700, LINE)
        canvas.drawString(60, 600, LINE)
        canvas.setFillColorRGB(1, 1, 1)
        canvas.rect(50, 690, 400, 25, stroke=0, fill=1)  # over the first line

    data = pdf_of(draw)
    found = collected(data)
    assert found is not None
    assert len(found.objects) == 1  # the second line only
    page = drawn(data)
    where = place(A4[0] / 72, A4[1] / 72, NORMAL)
    down = where.height / A4[1]
    hidden = slice(where.y + round((842 - 715) * down), where.y + round((842 - 690) * down))
    assert not page[hidden].any()
    assert page.any()


def test_text_under_an_annotation_is_left_to_pdfium() -> None:
    """An annotation is drawn over the page's content (here a square with a white
    inside, over the first line): the text beneath stays PDFium's, hidden as printed."""

    def draw(canvas: Canvas) -> None:
        canvas.setFont("Helvetica", 10)
        canvas.drawString(60, 700, LINE)
        canvas.drawString(60, 600, LINE)

    document = pdfium.PdfDocument(pdf_of(draw))
    page = document[0]
    annot = pdfium_c.FPDFPage_CreateAnnot(page.raw, pdfium_c.FPDF_ANNOT_SQUARE)
    assert pdfium_c.FPDFAnnot_SetRect(annot, pdfium_c.FS_RECTF(50, 715, 450, 690))
    assert pdfium_c.FPDFAnnot_SetColor(
        annot, pdfium_c.FPDFANNOT_COLORTYPE_InteriorColor, 255, 255, 255, 255
    )
    pdfium_c.FPDFPage_CloseAnnot(annot)
    assert pdfium_c.FPDFPage_GenerateContent(page.raw)
    page.close()
    out = io.BytesIO()
    document.save(out)
    document.close()
    data = out.getvalue()
    found = collected(data)
    assert found is not None
    assert len(found.objects) == 1  # the second line only
    first = slice(0, 250)  # down to 650 pt, above the second line
    ours = drawn(data)
    assert ours[first].any()  # the annotation's border at least: not a blank band
    assert ours[250:].any()  # and the second line below it
    assert np.array_equal(ours[first], pdfium_alone(data)[first])


def test_white_text_on_black_is_left_to_pdfium() -> None:
    def draw(canvas: Canvas) -> None:
        canvas.rect(50, 690, 400, 30, stroke=0, fill=1)
        canvas.setFillColorRGB(1, 1, 1)
        canvas.setFont("Helvetica", 10)
        canvas.drawString(60, 700, LINE)

    data = pdf_of(draw)
    assert collected(data) is None
    page = drawn(data)
    assert page.any()  # the black box
    assert np.array_equal(page, pdfium_alone(data))


def test_rotated_text_is_left_to_pdfium() -> None:
    def draw(canvas: Canvas) -> None:
        canvas.translate(300, 400)
        canvas.rotate(30)
        canvas.setFont("Helvetica", 10)
        canvas.drawString(0, 0, LINE)

    assert collected(pdf_of(draw)) is None


def test_embedded_fonts_are_left_to_pdfium() -> None:
    data = documents.dense_text_pdf(1)
    assert collected(data) is None
    page = drawn(data)
    assert page.any()
    assert np.array_equal(page, pdfium_alone(data))


def test_text_running_off_the_page_is_cut_at_its_edge() -> None:
    def draw(canvas: Canvas) -> None:
        canvas.setFont("Helvetica", 12)
        canvas.drawString(-20, 836, LINE * 3)  # off the left, the right and the top

    data = pdf_of(draw)
    assert collected(data) is not None
    page, where = drawn(data), place(A4[0] / 72, A4[1] / 72, NORMAL)
    assert page[:, where.x : where.x + 3].any()  # the text runs to both edges
    assert page[:, where.x + where.width - 3 : where.x + where.width].any()
    assert page[where.y, where.x : where.x + where.width].any()  # and to the top row
    assert not page[:, : where.x].any()  # and no further, as PDFium draws it
    assert not page[:, where.x + where.width :].any()
    assert np.array_equal(page[:, : where.x], pdfium_alone(data)[:, : where.x])


def test_the_font_handle_is_per_object() -> None:
    """Two fonts on one line: each character in its own face."""

    def draw(canvas: Canvas) -> None:
        text = canvas.beginText(60, 700)
        text.setFont("Helvetica", 10)
        text.textOut("Sans ")
        text.setFont("Helvetica-Bold", 10)
        text.textOut("Bold")
        canvas.drawText(text)

    found = collected(pdf_of(draw))
    assert found is not None
    faces = {found.faces[i].name for i in found.face}
    assert len(faces) == 2, faces


def test_a_font_file_that_cannot_be_read_is_a_render_error(tmp_path: Path) -> None:
    broken = tmp_path / "Broken.otf"
    broken.write_bytes(b"not a font")
    faces = pdf_text._Faces()
    with pytest.raises(RenderError, match="cannot be read"):
        faces.face(broken)
