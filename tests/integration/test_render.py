"""Rendering fax jobs with the real renderer: worker processes, PDFium, Pillow,
reportlab, LibreOffice; every TIFF checked with HylaFAX's tiffcheck and libtiff's
tiffinfo, and its pages decoded by libtiff to look at the pixels."""

from __future__ import annotations

import asyncio
import io
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pypdfium2 as pdfium
import pytest
from PIL import Image
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen.canvas import Canvas

from gatewayd.config.settings import FaxSettings
from gatewayd.errors import RenderError
from gatewayd.render import cover, fonts, textdoc
from gatewayd.render.job import CoverSheet, Rendered, Renderer, RenderOptions, Source
from gatewayd.render.kinds import Kind
from gatewayd.render.office import find_soffice
from gatewayd.render.raster import FaxFormat
from gatewayd.render.worker import Limits
from tests import documents
from tests.conftest import ROOT
from tests.faxcheck import assert_fax, pages, tiffcheck

DOCS = ROOT / "tests" / "data" / "docs"
SOFFICE = find_soffice(FaxSettings())


@pytest.fixture(scope="module")
def renderer() -> Iterator[Renderer]:
    """One pool of two render processes for the module (the daemon keeps one too)."""
    pool = Renderer(2)
    yield pool
    asyncio.run(pool.close())


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("documents")


def doc(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


async def render(renderer: Renderer, out: Path, *sources: tuple[Path, Kind],
                 cover_sheet: CoverSheet | None = None, fax: FaxFormat | None = None,
                 **options: Any) -> Rendered:  # fmt: skip
    return await renderer.render(
        [Source(path.name, kind, path) for path, kind in sources],
        cover_sheet,
        RenderOptions(fax or FaxFormat(), **options),
        out,
    )


def pdf_of(draw: Any, size: tuple[float, float] = A4) -> bytes:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=size)
    draw(canvas)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


# -- the TIFF ---------------------------------------------------------------------------


@pytest.mark.parametrize("paper", ["a4", "letter"])
@pytest.mark.parametrize("mode", [(196, "g4"), (98, "g4"), (196, "g3"), (98, "g3")])
async def test_pages_pass_hylafax_and_libtiff(
    renderer: Renderer, made: Path, tmp_path: Path, paper: str, mode: tuple[int, str]
) -> None:
    resolution, compression = mode
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    fax = FaxFormat.named(paper, "fine" if resolution == 196 else "normal", compression)
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (pdf, Kind.PDF), fax=fax)
    assert (result.pages, result.size) == (3, out.stat().st_size)
    assert_fax(out, count=3, resolution=resolution, g3=compression == "g3", paper=paper)
    # and a checker that can fail does: the other resolution needs reformatting
    assert tiffcheck(out, resolution=294 - resolution, g3=compression == "g3") != "OK"
    for page in pages(out):
        assert 0.01 < page.mean() < 0.2  # text, not blank, not black


async def test_cover_page_comes_first_and_counts_every_page(renderer: Renderer, made: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    sheet = CoverSheet("+4940123456", sender_name="Alice Müller", subject="Vertrag",
                       note="Bitte unterschreiben.", sent_at=datetime.now(UTC))  # fmt: skip
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (pdf, Kind.PDF), (pdf, Kind.PDF), cover_sheet=sheet)
    assert result.pages == 7
    assert_fax(out, count=7)
    first = pages(out)[0]
    assert first[:400].any()
    assert first.mean() < 0.03


def test_cover_page_says_who_when_what_and_how_many() -> None:
    moment = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
    sheet = CoverSheet("+4940123456", sender_name="Alice Müller", sender_email="alice@example.com",
                       sender_fax="+4930123457", recipient_name="Accounts", subject="Contract",
                       note="First line of the note.\n" + "word " * 200,
                       sent_at=moment)  # fmt: skip
    for paper in ("a4", "letter"):
        document = pdfium.PdfDocument(cover.cover_pdf(sheet, 12, paper))
        page = document[0]
        text = page.get_textpage().get_text_range()
        width, height = page.get_size()
        assert (round(width), round(height)) == ((595, 842) if paper == "a4" else (612, 792))
        for expected in ("+4940123456 (Accounts)", "Alice Müller, alice@example.com",
                         "+4930123457", "26 November 2026, 15:30 UTC", "Contract",
                         "12 including this page", "First line of the note."):  # fmt: skip
            assert expected in text, expected
        assert text.count("word") == 200  # the note wrapped, nothing lost


def test_cover_time_names_the_zone() -> None:
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 11, 26, 15, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    assert cover.when(berlin) == "26 November 2026, 15:30 CET (UTC+01:00)"
    assert cover.when(berlin.astimezone(UTC)) == "26 November 2026, 14:30 UTC"


# -- PDF ----------------------------------------------------------------------------------


async def test_a_landscape_page_is_turned_clockwise(renderer: Renderer, made: Path,
                                                    tmp_path: Path) -> None:  # fmt: skip
    def draw(canvas: Canvas) -> None:
        w, h = landscape(A4)
        canvas.rect(0, h - 60, w, 60, fill=1)  # a bar along the landscape page's top

    pdf = doc(made, "landscape.pdf", pdf_of(draw, landscape(A4)))
    out = tmp_path / "out.tif"
    await render(renderer, out, (pdf, Kind.PDF))
    assert_fax(out, count=1)
    page = pages(out)[0]
    columns = np.where(page.mean(axis=0) > 0.9)[0]
    assert len(columns) > 100
    assert columns.min() > 1728 * 0.8


async def test_odd_page_sizes_fit_whole(renderer: Renderer, made: Path, tmp_path: Path) -> None:
    for name, size in (("tall.pdf", (200.0, 1400.0)), ("tiny.pdf", (100.0, 80.0))):

        def draw(canvas: Canvas, size: tuple[float, float] = size) -> None:
            canvas.setLineWidth(4)
            canvas.rect(2, 2, size[0] - 4, size[1] - 4)  # a frame at the very edges

        pdf = doc(made, name, pdf_of(draw, size))
        out = tmp_path / f"{name}.tif"
        await render(renderer, out, (pdf, Kind.PDF))
        assert_fax(out, count=1)
        page = pages(out)[0]
        rows, cols = np.where(page.any(axis=1))[0], np.where(page.any(axis=0))[0]
        # the frame is whole: ink on its four sides, none cut off at the page's edges
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        assert page[top, left:right].mean() > 0.9
        assert page[bottom, left:right].mean() > 0.9
        assert page[top:bottom, left].mean() > 0.9
        assert page[top:bottom, right].mean() > 0.9
        # and undistorted: its proportions kept (fax pixels are 204 x 196 per inch;
        # the landscape one is turned)
        aspect = ((right - left) / 204) / ((bottom - top) / 196)
        assert aspect == pytest.approx(min(size) / max(size) if size[0] > size[1] else
                                       size[0] / size[1], rel=0.05)  # fmt: skip


async def test_form_fields_and_annotations_are_drawn(renderer: Renderer, made: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    pdf = doc(made, "form.pdf", documents.form_pdf())
    out = tmp_path / "out.tif"
    await render(renderer, out, (pdf, Kind.PDF))
    page = pages(out)[0]
    # the text field's box (x 140-390 pt, y 712-732 pt from the bottom) holds its value
    scale_x, scale_y = 1728 / 8.47 / 72, 196 / 72
    y0, y1 = round((842 - 732) * scale_y), round((842 - 712) * scale_y)
    x0, x1 = round(140 * scale_x), round(390 * scale_x)
    field = page[y0:y1, x0:x1]
    assert field[5:-5, 10:-10].mean() > 0.03  # "Alice Example", drawn from the widget


@pytest.mark.parametrize("resolution", [196, 98])
def test_thin_lines_and_punctuation_survive(made: Path, resolution: int) -> None:
    """Rules from hairlines to 0.5 pt and small full stops must not vanish, at 98 lines
    per inch either (where PDFium alone loses a third of such rules)."""
    from gatewayd.render.pdf import PdfPages

    def draw(canvas: Canvas) -> None:
        for n, width in enumerate([0, 0.1, 0.25, 0.5] * 10):
            canvas.setLineWidth(width)
            canvas.line(50, 780 - n * 9.3, 545, 780 - n * 9.3)
        canvas.setFont("Times-Roman", 6)
        canvas.drawString(50, 300, ". " * 60)

    path = doc(made, "hairlines.pdf", pdf_of(draw))
    document = PdfPages(path)
    black = document.grey(0, FaxFormat(y_dpi=resolution)) < 128  # (a copy: the bitmap goes)
    document.close()
    rows = np.where(black[:, 200:1500].mean(axis=1) > 0.95)[0]
    assert 1 + int((np.diff(rows) > 1).sum()) == 40  # every rule, whole
    y = round((842 - 300) / 72 * resolution)
    columns = np.where(black[y - 6 : y + 3].any(axis=0))[0]
    assert 1 + int((np.diff(columns) > 1).sum()) == 60  # every full stop


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("encrypted.pdf", "the PDF is password-protected"),
        ("damaged.pdf", "the PDF is damaged"),
    ],
)
async def test_pdfs_that_cannot_be_read_say_why(renderer: Renderer, tmp_path: Path, name: str,
                                               reason: str) -> None:  # fmt: skip
    with pytest.raises(RenderError) as caught:
        await render(renderer, tmp_path / "out.tif", (DOCS / name, Kind.PDF))
    assert caught.value.reason == f"{name}: {reason}"
    assert caught.value.fax_error_code == "RenderingFailed"
    assert not (tmp_path / "out.tif").exists()


async def test_a_pdf_without_pages_is_refused(renderer: Renderer, made: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    empty = io.BytesIO()
    pdfium.PdfDocument.new().save(empty)  # a page tree with no pages
    path = doc(made, "empty.pdf", empty.getvalue())
    with pytest.raises(RenderError, match=r"empty\.pdf: the PDF has no pages"):
        await render(renderer, tmp_path / "out.tif", (path, Kind.PDF))


# -- images -------------------------------------------------------------------------------


async def test_a_full_page_photo_is_halftoned_small(renderer: Renderer, made: Path,
                                                   tmp_path: Path) -> None:  # fmt: skip
    photo = documents.write(made, "photo.jpg", documents.photo_jpeg)
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (photo, Kind.JPEG))
    assert_fax(out, count=1)
    assert result.size <= 500_000  # the bound; Ghostscript makes about 520 KB
    page = pages(out)[0]
    assert 0.2 < page.mean() < 0.8
    # a clustered-dot screen: the pattern repeats every 8 dots across and down
    body = page[800:1600, 400:1300]
    assert (body[:, 8:] == body[:, :-8]).mean() > 0.8
    assert (body[8:] == body[:-8]).mean() > 0.8


async def test_line_art_and_scans_stay_sharp(renderer: Renderer, made: Path,
                                             tmp_path: Path) -> None:  # fmt: skip
    scan = documents.text_page_image(1)  # grey paper, speckle, anti-aliased glyphs
    buffer = io.BytesIO()
    scan.save(buffer, "PNG")
    path = doc(made, "scan.png", buffer.getvalue())
    out = tmp_path / "out.tif"
    await render(renderer, out, (path, Kind.PNG))
    page = pages(out)[0]
    # thresholded: the paper white, no dots; text black
    assert page[:100].sum() == 0
    assert page[-100:].sum() == 0
    assert 0.01 < page.mean() < 0.15
    # no screen over the grey paper: the gaps between the lines are wholly white
    assert (~page[300:1800].any(axis=1)).mean() > 0.3


async def test_images_of_every_kind(renderer: Renderer, tmp_path: Path) -> None:
    for name, kind in (("logo.png", Kind.PNG), ("photo.jpg", Kind.JPEG),
                       ("drawing.gif", Kind.GIF), ("drawing.bmp", Kind.BMP),
                       ("drawing.webp", Kind.WEBP), ("two-page.tif", Kind.TIFF)):  # fmt: skip
        out = tmp_path / f"{name}.tif"
        result = await render(renderer, out, (DOCS / name, kind))
        assert result.pages == (2 if name == "two-page.tif" else 1)
        assert_fax(out, count=result.pages)
        if name != "two-page.tif":
            assert pages(out)[0].any(), name  # the drawn frame


async def test_exif_orientation_and_transparency(renderer: Renderer, made: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    image = Image.new("RGB", (400, 300), "white")
    image.paste((0, 0, 0), (0, 0, 400, 40))  # a bar along the stored image's top
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90° clockwise: the bar along the right side
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    rotated = doc(made, "exif.jpg", buffer.getvalue())
    clear = Image.new("RGBA", (300, 400), (0, 0, 0, 0))
    clear.paste((0, 0, 0, 255), (0, 0, 300, 30))
    buffer = io.BytesIO()
    clear.save(buffer, "PNG")
    transparent = doc(made, "clear.png", buffer.getvalue())
    out = tmp_path / "out.tif"
    await render(renderer, out, (rotated, Kind.JPEG), (transparent, Kind.PNG))
    first, second = pages(out)
    columns = np.where(first.mean(axis=0) > 0.8)[0]
    assert len(columns)
    assert columns.min() > 1728 * 0.8
    rows = np.where(second.mean(axis=1) > 0.8)[0]
    assert len(rows)
    assert rows.max() < 2292 * 0.15
    assert second[2292 // 2].sum() == 0  # transparency is white paper, not black


async def test_only_a_gifs_first_frame_is_sent(renderer: Renderer, made: Path,
                                              tmp_path: Path) -> None:  # fmt: skip
    frames = [Image.new("L", (200, 280), 255), Image.new("L", (200, 280), 0)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    path = doc(made, "animated.gif", buffer.getvalue())
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (path, Kind.GIF))
    assert result.pages == 1
    assert not pages(out)[0].any()


async def test_a_fax_tiff_passes_through_untouched(renderer: Renderer, made: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    first = tmp_path / "first.tif"
    await render(renderer, first, (pdf, Kind.PDF))
    again = tmp_path / "again.tif"
    await render(renderer, again, (first, Kind.TIFF))
    assert_fax(again, count=3)
    for a, b in zip(pages(first), pages(again), strict=True):
        assert np.array_equal(a, b)  # not resampled, not re-screened


async def test_the_bomb_guard_is_an_error(renderer: Renderer, made: Path,
                                          tmp_path: Path) -> None:  # fmt: skip
    big = Image.new("1", (6000, 6000), 1)
    buffer = io.BytesIO()
    big.save(buffer, "PNG")
    path = doc(made, "big.png", buffer.getvalue())
    limits = Limits(max_image_pixels=10_000_000, cpu_seconds=60, soffice=None,
                    office_timeout=60)  # fmt: skip
    with pytest.raises(
        RenderError, match=r"big.png: the image is too large \(more than 10,000,000"
    ):
        await render(renderer, tmp_path / "out.tif", (path, Kind.PNG), limits=limits)


# -- text and HTML -------------------------------------------------------------------


async def test_a_long_email_paginates_with_its_characters(renderer: Renderer, made: Path,
                                                          tmp_path: Path) -> None:  # fmt: skip
    text = documents.email_text(pages=10)
    path = doc(made, "email.txt", text.encode())
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (path, Kind.TEXT))
    assert result.pages == 10
    assert_fax(out, count=10)
    pdf = pdfium.PdfDocument(textdoc.plain_text_pdf(text, "a4"))
    written = "".join(page.get_textpage().get_text_range() for page in pdf)
    assert "Mit freundlichen Grüßen" in written
    assert "Ωμέγα Ltd." in written
    assert "€" in written
    for page in pages(out):  # margins: nothing in the outer half inch
        assert not page[:, :100].any()
        assert not page[:, -100:].any()


def test_characters_no_font_has_are_written_as_code_points() -> None:
    family = fonts.family("mono")
    lacking = next(
        c for c in ("\U0001f600", "\u4e2d", "\u0e01") if not any(f.has(c) for f in family)
    )
    pdf = pdfium.PdfDocument(textdoc.plain_text_pdf(f"Greek αβγ, Cyrillic жзи, {lacking}!", "a4"))
    written = pdf[0].get_textpage().get_text_range()
    assert "αβγ" in written
    assert "жзи" in written
    assert f"[U+{ord(lacking):04X}]!" in written


def test_long_lines_wrap_inside_the_margins() -> None:
    html = "<html><body><h1>Title</h1><p>" + "lorem ipsum dolor " * 300 + "</p></body></html>"
    pdf = pdfium.PdfDocument(textdoc.html_pdf(html, "letter"))
    assert len(pdf) >= 2
    for page in pdf:
        width, _ = page.get_size()
        text = page.get_textpage()
        for index in range(text.count_chars()):
            left, _, right, _ = text.get_charbox(index)
            assert left >= textdoc.MARGIN - 1
            assert right <= width - textdoc.MARGIN + 1
    words = " ".join(page.get_textpage().get_text_range() for page in pdf).split()
    assert words.count("lorem") == 300


# -- office documents -----------------------------------------------------------------

needs_libreoffice = pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed "
                                       "(Debian libreoffice-writer-nogui)")  # fmt: skip


def _office_limits(timeout: float = 120) -> Limits:
    return Limits(max_image_pixels=100_000_000, cpu_seconds=120, soffice=SOFFICE,
                  office_timeout=timeout)  # fmt: skip


@needs_libreoffice
async def test_word_and_rtf_documents_via_libreoffice(renderer: Renderer, made: Path,
                                                      tmp_path: Path) -> None:  # fmt: skip
    docx = doc(made, "letter.docx", documents.docx(["Dear customer,", "Grüße, Ωμέγα"]))
    rtf = doc(made, "memo.rtf", rb"{\rtf1\ansi\deff0 Hello from RTF.\par}")
    out = tmp_path / "out.tif"
    result = await render(renderer, out, (docx, Kind.DOCX), (rtf, Kind.RTF),
                          limits=_office_limits())  # fmt: skip
    assert result.pages == 2
    assert_fax(out, count=2)
    assert all(page.any() for page in pages(out))


@needs_libreoffice
async def test_a_document_libreoffice_cannot_open(renderer: Renderer, tmp_path: Path) -> None:
    with pytest.raises(RenderError, match=r"letter\.docx: LibreOffice could not convert"):
        await render(renderer, tmp_path / "out.tif", (DOCS / "letter.docx", Kind.DOCX),
                     limits=_office_limits())  # fmt: skip


@needs_libreoffice
async def test_libreoffice_is_stopped_at_its_timeout(renderer: Renderer, made: Path,
                                                     tmp_path: Path) -> None:  # fmt: skip
    docx = doc(made, "slow.docx", documents.docx(["Hello"] * 50))
    with pytest.raises(RenderError, match=r"slow.docx: LibreOffice took more than 0.2 s"):
        await render(renderer, tmp_path / "out.tif", (docx, Kind.DOCX),
                     limits=_office_limits(timeout=0.2))  # fmt: skip
    await asyncio.sleep(0.5)
    left = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", "lo-profile-"],
                                   capture_output=True, check=False)  # fmt: skip
    assert left.stdout == b""  # no soffice left running with our private profile


async def test_office_documents_without_libreoffice_are_refused(
    renderer: Renderer, made: Path, tmp_path: Path
) -> None:
    docx = doc(made, "letter2.docx", documents.docx(["Hello"]))
    with pytest.raises(RenderError, match="need LibreOffice, which is not installed"):
        await render(renderer, tmp_path / "out.tif", (docx, Kind.DOCX))


# -- limits -------------------------------------------------------------------------------


async def test_too_many_pages(renderer: Renderer, made: Path, tmp_path: Path) -> None:
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    sheet = CoverSheet("+4940123456")
    with pytest.raises(RenderError) as caught:
        await render(renderer, tmp_path / "out.tif", (pdf, Kind.PDF), (pdf, Kind.PDF),
                     cover_sheet=sheet, max_pages=6)  # fmt: skip
    assert caught.value.fax_error_code == "TooManyPages"
    assert "too many pages: 7, at most 6" in caught.value.reason


async def test_too_many_input_bytes(renderer: Renderer, made: Path, tmp_path: Path) -> None:
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    with pytest.raises(RenderError, match="the documents are too large"):
        await render(renderer, tmp_path / "out.tif", (pdf, Kind.PDF), max_input_bytes=1000)


async def test_a_pathological_document_is_stopped_by_the_cpu_budget(
    renderer: Renderer, made: Path, tmp_path: Path
) -> None:
    """Twenty million paths in 7 KB (nested form XObjects) would take PDFium about 15 s;
    with a budget of one second of processor time (the limit is counted in whole
    seconds, so it stops within two) the call ends with an error, and the worker lives
    on for the next job."""
    heavy = doc(made, "heavy.pdf", documents.nested_forms_pdf(levels=5))
    assert heavy.stat().st_size < 10_000
    limits = Limits(max_image_pixels=100_000_000, cpu_seconds=1, soffice=None, office_timeout=60)
    started = asyncio.get_running_loop().time()
    with pytest.raises(RenderError, match=r"heavy\.pdf: rendering took more than 1 s of processor"):
        await render(renderer, tmp_path / "out.tif", (heavy, Kind.PDF), limits=limits)
    assert asyncio.get_running_loop().time() - started < 10
    pdf = documents.write(made, "dense3.pdf", lambda: documents.dense_text_pdf(3))
    result = await render(renderer, tmp_path / "after.tif", (pdf, Kind.PDF))
    assert result.pages == 3  # the pool still works
