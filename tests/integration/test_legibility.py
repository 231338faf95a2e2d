"""Fax pages that read at least as well as Ghostscript's, photographs inside PDFs
halftoned whole, and pages that survive a real T.30 call.

Legibility is measured as bench/legibility.py measures it (tests/legibility.py):
tesseract reading generated pages in the standard PDF fonts, not embedded, drawn by
gatewayd and by Ghostscript's fax device in the same run, on the mean of several pages
of each kind; gatewayd's character accuracy may be at most 0.2 points, its word
accuracy 1 point, below Ghostscript's. Needs Debian tesseract-ocr, tesseract-ocr-eng
and ghostscript.

The T.30 call goes through libspandsp (Debian libspandsp2, the fax engine inside
Asterisk and FreeSWITCH), by ctypes (tests/spandsp.py); it is skipped, saying so, only
when that library is missing.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas

from gatewayd.render.job import Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind
from gatewayd.render.pdf import PdfPages
from gatewayd.render.raster import FaxFormat, place
from tests import documents, legibility, spandsp
from tests.faxcheck import assert_fax, pages

CHAR_NOISE, WORD_NOISE = 0.2, 1.0


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    pool = Renderer(2)
    yield pool
    asyncio.run(pool.close())


async def render(renderer: Renderer, out: Path, pdf: Path, fax: FaxFormat | None = None) -> None:
    options = RenderOptions(fax or FaxFormat())
    await renderer.render([Source(pdf.name, Kind.PDF, pdf)], None, options, out)


# -- legibility -----------------------------------------------------------------------


PAGES = 6  # pages of each case: one page's figure at 6 pt swings by a point or two


@pytest.mark.slow
@pytest.mark.parametrize(
    ("font", "size", "resolution"),
    [
        ("Helvetica", 6, "normal"),
        ("Helvetica", 8, "normal"),
        ("Courier", 9, "normal"),
        ("Times-Roman", 8, "fine"),
    ],
)
async def test_text_reads_as_well_as_ghostscripts(
    renderer: Renderer, tmp_path: Path, font: str, size: int, resolution: str
) -> None:
    """The smallest print where gatewayd read worse than Ghostscript: Helvetica 6 at
    normal (strokes half a row tall dropped out), Helvetica 8 at normal (PDFium's
    glyphs, made at 64 pixels per em: now FreeType's at the true size), Courier 9 at
    normal (PDFium's own Courier), Times 8 at fine. Each renderer is scored on the mean
    of PAGES pages of the same kind (tests/legibility.py says why one page is not
    enough)."""
    for tool in (legibility.TESSERACT, legibility.GHOSTSCRIPT):
        if tool is None:
            pytest.fail(
                "needs tesseract and Ghostscript: apt-get install tesseract-ocr "
                "tesseract-ocr-eng ghostscript"
            )
    y_dpi = 98 if resolution == "normal" else 196
    readers = asyncio.Semaphore(2)

    async def read(page: NDArray[np.bool_]) -> str:
        async with readers:
            return await asyncio.to_thread(legibility.read, page, y_dpi)

    async def both(seed: int) -> tuple[legibility.Score, legibility.Score]:
        page = legibility.text_page(font, size, seed=seed)
        pdf = tmp_path / f"text-{seed}.pdf"
        pdf.write_bytes(page.pdf)
        out = tmp_path / f"out-{seed}.tif"
        await render(renderer, out, pdf, FaxFormat(y_dpi=y_dpi))  # the worker processes' path
        assert_fax(out, count=1, resolution=y_dpi)
        gs_page = (await asyncio.to_thread(legibility.ghostscript, page.pdf, y_dpi))[0]
        ours, gs = await asyncio.gather(read(pages(out)[0]), read(gs_page))
        return legibility.score(ours, page.text), legibility.score(gs, page.text)

    scored = await asyncio.gather(*(both(seed) for seed in range(1, PAGES + 1)))
    ours_score = legibility.mean([ours for ours, _ in scored])
    gs_score = legibility.mean([gs for _, gs in scored])
    # The yardstick reads: a reader that reads nothing would make both scores 0.
    assert gs_score.chars > 80, (gs_score, scored)
    assert ours_score.chars >= gs_score.chars - CHAR_NOISE, (ours_score, gs_score, scored)
    assert ours_score.words >= gs_score.words - WORD_NOISE, (ours_score, gs_score, scored)


def test_the_scorer_tells_good_reading_from_bad() -> None:
    page = legibility.text_page("Helvetica", 10)
    assert legibility.score(page.text, page.text) == legibility.Score(100.0, 100.0)
    damaged = page.text.replace("n", "ri")
    worse = legibility.score(damaged, page.text)
    assert worse.chars < 97
    assert worse.words < 80
    assert legibility.edit_distance("kitten", "sitting") == 3
    assert legibility.edit_distance("", "abc") == 3
    codes = legibility.codes_page("Courier", 9)
    assert legibility.codes_read(codes.text, codes) == 100.0
    assert legibility.codes_read(codes.text.replace("0", "O"), codes) < 100.0
    two = [legibility.Score(94.0, 70.0), legibility.Score(96.0, 75.0)]
    assert legibility.mean(two) == legibility.Score(95.0, 72.5)
    assert (
        legibility.text_page("Helvetica", 6, seed=2).text
        != legibility.text_page("Helvetica", 6).text
    )


# -- photographs inside PDFs ---------------------------------------------------------------


def _photo_page() -> tuple[bytes, tuple[float, float, float, float]]:
    """A page with a photograph (deep shadows and highlights, mostly mid-tones) in its
    upper half and 8 pt text and a rule beside and below it; and the photo's box."""
    picture = documents.photo((1200, 900), seed=5)
    grey = np.asarray(picture.convert("L"), dtype=np.float32)
    ramp = np.linspace(-0.7, 0.7, grey.shape[1], dtype=np.float32)[None, :]
    shaded = np.clip(grey * (1 + ramp), 3, 252).astype(np.uint8)  # near black to near white
    buffer = io.BytesIO()
    Image.fromarray(shaded).save(buffer, "JPEG", quality=90)
    box = (60.0, 480.0, 360.0, 705.0)
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.drawImage(
        ImageReader(io.BytesIO(buffer.getvalue())), box[0], box[1], box[2] - box[0], box[3] - box[1]
    )
    canvas.setFont("Helvetica", 8)
    for n in range(20):
        canvas.drawString(380, 700 - n * 11, f"Line {n}: invoice 4711, total 1,234.56 EUR")
    canvas.setLineWidth(0.5)
    canvas.line(60, 450, 535, 450)
    canvas.showPage()
    canvas.save()
    return out.getvalue(), box


@pytest.mark.parametrize("resolution", [196, 98])
async def test_a_photo_in_a_pdf_is_halftoned_whole(
    renderer: Renderer, tmp_path: Path, resolution: int
) -> None:
    data, (left, bottom, right, top) = _photo_page()
    pdf = tmp_path / "photo.pdf"
    pdf.write_bytes(data)
    out = tmp_path / "out.tif"
    fax = FaxFormat(y_dpi=resolution)
    await render(renderer, out, pdf, fax)
    assert_fax(out, count=1, resolution=resolution)
    page = pages(out)[0]
    document = PdfPages(pdf)
    source = document.grey(0, fax).copy()  # the page as drawn, before black and white
    document.close()
    where = place(A4[0] / 72, A4[1] / 72, fax)
    across, down = where.width / A4[0], where.height / A4[1]  # dots per point
    x0, x1 = where.x + round(left * across) + 2, where.x + round(right * across) - 2
    y0, y1 = where.y + round((A4[1] - top) * down) + 2, where.y + round((A4[1] - bottom) * down) - 2
    # every 16x16 block of the photograph whose source is all mid-tone (no pure black
    # or white) is dotted: neither all black nor all white
    checked = 0
    for y in range(y0, y1 - 16, 16):
        for x in range(x0, x1 - 16, 16):
            grey = source[y : y + 16, x : x + 16]
            if grey.min() < 8 or grey.max() > 247:
                continue
            block = page[y : y + 16, x : x + 16]
            assert 0 < block.sum() < 256, (x, y, int(grey.mean()))
            checked += 1
    assert checked > 100
    dark = [
        page[y : y + 16, x : x + 16].mean()
        for y in range(y0, y1 - 16, 16)
        for x in range(x0, x0 + 64, 16)
    ]
    assert max(dark) > 0.8  # deep shadows are there (and dotted, as every block above)
    # text and the rule beside the photograph stay sharp: exactly the drawn pixels
    text = (slice(y0, y1), slice(where.x + round(375 * across), fax.width - 40))
    assert np.array_equal(page[text], source[text] < 128)
    assert page[text].any()
    rule_y = where.y + round((A4[1] - 450) * down)
    assert page[rule_y - 2 : rule_y + 3, 400:1400].any(axis=0).all()


def test_a_photo_inside_a_form_xobject_is_found_where_it_is_drawn() -> None:
    """Images drawn by a form XObject (scaled and moved by it) are photographs too."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.beginForm("Picture")
    canvas.drawImage(ImageReader(io.BytesIO(documents.photo_jpeg(size=(600, 450)))), 0, 0, 200, 150)
    canvas.endForm()
    canvas.translate(100, 400)
    canvas.scale(1.5, 1.5)
    canvas.doForm("Picture")  # drawn at 100..400 x 400..625 pt
    canvas.showPage()
    canvas.save()
    document = PdfPages(out.getvalue())
    fax = FaxFormat()
    drawn = document.draw(0, fax)
    document.close()
    assert len(drawn.photos) == 1
    x0, y0, x1, y1 = drawn.photos[0]
    where = place(A4[0] / 72, A4[1] / 72, fax)
    across, down = where.width / A4[0], where.height / A4[1]  # dots per point
    assert abs(x0 - (where.x + 100 * across)) <= 2
    assert abs(x1 - (where.x + 400 * across)) <= 2
    assert abs(y0 - (where.y + (A4[1] - 625) * down)) <= 2
    assert abs(y1 - (where.y + (A4[1] - 400) * down)) <= 2


async def test_a_scan_of_text_in_a_pdf_stays_sharp(renderer: Renderer, tmp_path: Path) -> None:
    """A scanner's page of text is an image too, but not a photograph: its paper stays
    white, without dots."""
    pdf = tmp_path / "scan.pdf"
    pdf.write_bytes(documents.scanned_pdf(1))
    out = tmp_path / "out.tif"
    await render(renderer, out, pdf)
    page = pages(out)[0]
    assert 0.01 < page.mean() < 0.15
    assert (~page[300:1800].any(axis=1)).mean() > 0.3  # white between the lines


# -- a T.30 call -------------------------------------------------------------------------

SPANDSP = spandsp.load()


@pytest.mark.skipif(SPANDSP is None, reason="libspandsp is not installed (Debian libspandsp2)")
@pytest.mark.parametrize("resolution", [196, 98])
async def test_pages_go_through_a_t30_call_unchanged(
    renderer: Renderer, tmp_path: Path, resolution: int
) -> None:
    assert SPANDSP is not None
    text = tmp_path / "text.pdf"
    text.write_bytes(legibility.text_page("Helvetica", 8).pdf)
    photo = tmp_path / "photo.pdf"
    photo.write_bytes(_photo_page()[0])
    sent = tmp_path / "sent.tif"
    options = RenderOptions(FaxFormat(y_dpi=resolution))
    await renderer.render(
        [Source("text.pdf", Kind.PDF, text), Source("photo.pdf", Kind.PDF, photo)],
        None,
        options,
        sent,
    )
    received = tmp_path / "received.tif"
    call = await asyncio.to_thread(spandsp.send, SPANDSP, sent, received)
    assert (call.caller, call.answerer) == ("OK", "OK"), call
    assert (call.pages_sent, call.pages_received) == (2, 2)
    ours, theirs = pages(sent), pages(received)
    assert len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        assert int((a != b).sum()) == 0
