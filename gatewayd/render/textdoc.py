"""Plain text and HTML as printed pages (a PDF made with reportlab).

Plain text keeps its lines and columns: a monospace font, long lines wrapped at the
margin (at a space when there is one near). HTML is read as text (headings, paragraphs
and list items become lines) and set in a proportional font, wrapped at word
boundaries. Both paginate with margins on A4 or Letter, and stop with TooManyPages as
soon as a page past ``max_pages`` would begin (200,000 form feeds cost nothing).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from gatewayd.errors import RenderError
from gatewayd.model import FaxErrorCode
from gatewayd.render import fonts
from gatewayd.render.html import html_to_text

MARGIN = 54.0  # points: three quarters of an inch
PAGES = {"a4": A4, "letter": LETTER}


def decode(data: bytes) -> str:
    """Text bytes as text: UTF-8 (with or without BOM), else Windows-1252."""
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def width_of(text: str, family: tuple[fonts.Font, ...], size: float) -> float:
    return float(
        sum(stringWidth(piece, font.name, size) for font, piece in fonts.runs(text, family))
    )


def wrap_words(
    paragraph: str, family: tuple[fonts.Font, ...], size: float, width: float
) -> Iterator[str]:
    """A paragraph in lines no wider than ``width`` (words longer than a line are cut)."""
    line = ""
    for word in re.split(r"(\s+)", paragraph):
        candidate = line + word
        if width_of(candidate, family, size) <= width or not line.strip():
            line = candidate
            while width_of(line, family, size) > width and len(line) > 1:
                cut = len(line) - 1
                while cut > 1 and width_of(line[:cut], family, size) > width:
                    cut -= 1
                yield line[:cut]
                line = line[cut:]
            continue
        yield line.rstrip()
        line = word.lstrip()
    if line.strip() or not paragraph:
        yield line.rstrip()


def wrap_columns(line: str, columns: int) -> Iterator[str]:
    """A monospace line in pieces of ``columns`` characters, cut at a space near the
    end when there is one."""
    while len(line) > columns:
        cut = line.rfind(" ", columns - 20, columns + 1)
        cut = cut if cut > 0 else columns
        yield line[:cut]
        line = line[cut:].lstrip(" ")
    yield line


class _Writer:
    def __init__(
        self, paper: str, family: tuple[fonts.Font, ...], size: float, max_pages: int
    ) -> None:
        self.max_pages = max_pages
        self.pages = 1
        self.out = io.BytesIO()
        self.page_w, self.page_h = PAGES[paper]
        self.canvas = Canvas(self.out, pagesize=(self.page_w, self.page_h), pageCompression=1)
        self.family, self.size = family, size
        self.leading = size * 1.25
        self.y = self.page_h - MARGIN - size

    @property
    def text_width(self) -> float:
        return float(self.page_w - 2 * MARGIN)

    def line(self, text: str) -> None:
        if self.y < MARGIN:
            self.new_page()
        x = MARGIN
        for font, piece in fonts.runs(text, self.family):
            self.canvas.setFont(font.name, self.size)
            self.canvas.drawString(x, self.y, piece)
            x += stringWidth(piece, font.name, self.size)
        self.y -= self.leading

    def new_page(self) -> None:
        if self.max_pages and self.pages >= self.max_pages:
            raise RenderError(
                f"too many pages: more than {self.max_pages}",
                fax_error_code=FaxErrorCode.TOO_MANY_PAGES,
            )
        self.pages += 1
        self.canvas.showPage()
        self.y = self.page_h - MARGIN - self.size

    def finish(self) -> bytes:
        self.canvas.showPage()
        self.canvas.save()
        return self.out.getvalue()


def plain_text_pdf(text: str, paper: str, max_pages: int = 0) -> bytes:
    """``text`` as pages; RenderError (TOO_MANY_PAGES) past ``max_pages`` (0: none)."""
    writer = _Writer(paper, fonts.family("mono"), 10.0, max_pages)
    columns = max(20, int(writer.text_width / stringWidth("M", writer.family[0].name, 10.0)))
    for number, page in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\f")):
        if number:
            writer.new_page()
        for line in page.expandtabs(8).split("\n"):
            for piece in wrap_columns(line.rstrip(), columns):
                writer.line(piece)
    return writer.finish()


def html_pdf(html: str, paper: str, max_pages: int = 0) -> bytes:
    """``html`` read as text, as pages; RenderError past ``max_pages`` (0: none)."""
    writer = _Writer(paper, fonts.family("sans"), 11.0, max_pages)
    for paragraph in html_to_text(html).split("\n"):
        for line in wrap_words(paragraph, writer.family, writer.size, writer.text_width):
            writer.line(line)
    return writer.finish()
