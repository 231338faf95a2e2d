"""How legible fax pages are: pages of known text in the standard PDF fonts (not
embedded, as invoicing systems make them), drawn by gatewayd or by Ghostscript's fax
device, read back by tesseract (Debian tesseract-ocr, tesseract-ocr-eng) and scored.

The method (the same for both renderers): the page's dots decoded by libtiff, rescaled
to square pixels (204 x 204 dpi), read with ``tesseract --psm 6`` (one block of
text), and compared with the text drawn:

- character accuracy: 1 - (edit distance / characters), on the text with each line's
  runs of white space made one space;
- word accuracy: 1 - (word edit distance / words), on the same text cut at spaces;
- identifier codes: on a page of random codes such as ``AB7-4K9Q``, the share read
  exactly (a code that tesseract splits, merges or misreads counts as lost).

A renderer is judged on several pages of the same kind (``seed`` gives each its own
words) and their mean (:func:`mean`): at 6 pt and 98 lines per inch one page's figure
swings by a point or two with its words (Ghostscript's character accuracy at
Helvetica 6, normal: 93.9 to 95.8 over six pages), which one page cannot tell from a
difference between renderers.

tests/integration/test_legibility.py and bench/legibility.py use it.
"""

from __future__ import annotations

import io
import random
import shutil
import string
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from reportlab.lib.pagesizes import A4
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

TESSERACT = shutil.which("tesseract")
GHOSTSCRIPT = shutil.which("gs")
X_DPI = 204
MARGIN = 50.0  # points

# Letters in their English frequencies: the running text is made of pronounceable-ish
# words that tesseract's dictionary cannot guess, so every glyph has to be read (on a
# page of dictionary words the language model hides most of a renderer's faults).
_LETTERS = (
    "eeeeeeeeeeeettttttttaaaaaaaaoooooooiiiiiiinnnnnnnsssssshhhhhhrrrrrrddddllllcccuuummww"
    "ffggyyppbbvkjxqz"
)
_PUNCTUATION = (".", ".", ".", ",", ",", ";", ":", "?")


@dataclass(frozen=True, slots=True)
class Page:
    """A generated page: the PDF, and the lines of text drawn on it."""

    pdf: bytes
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _fill(canvas: Canvas, font: str, size: float, pieces: list[str]) -> list[str]:
    """Draw ``pieces`` (words or codes) as lines of running text; the lines drawn."""
    width, height = A4
    leading = size * 1.25
    canvas.setFont(font, size)
    lines: list[str] = []
    y = height - MARGIN - size
    line: list[str] = []
    for piece in pieces:
        candidate = " ".join([*line, piece])
        if line and stringWidth(candidate, font, size) > width - 2 * MARGIN:
            lines.append(" ".join(line))
            canvas.drawString(MARGIN, y, lines[-1])
            y -= leading
            line = [piece]
            if y < MARGIN:
                return lines
        else:
            line.append(piece)
    return lines


def _page(font: str, size: float, pieces: list[str]) -> Page:
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    lines = _fill(canvas, font, size, pieces)
    canvas.showPage()
    canvas.save()
    return Page(out.getvalue(), tuple(lines))


def text_page(font: str, size: float, *, seed: int = 1) -> Page:
    """A page of running text in a standard font (``Helvetica``, ``Times-Roman``,
    ``Courier``), not embedded: sentences of made-up words, some numbers, punctuation."""
    rng = random.Random(f"{font}-{size}-{seed}")
    pieces: list[str] = []
    while len(pieces) < 6000:
        words = [
            "".join(rng.choices(_LETTERS, k=rng.randint(2, 9))) for _ in range(rng.randint(5, 14))
        ]
        if rng.random() < 0.3:
            words.insert(rng.randrange(len(words)), str(rng.randint(1, 99999)))
        words[0] = words[0].capitalize()
        words[-1] += rng.choice(_PUNCTUATION)
        pieces += words
    return _page(font, size, pieces)


def code(rng: random.Random) -> str:
    """An identifier such as ``AB7-4K9Q``: letters and digits either side of a dash."""
    alphabet = string.ascii_uppercase + string.digits
    return "".join(rng.choices(alphabet, k=3)) + "-" + "".join(rng.choices(alphabet, k=4))


def codes_page(font: str, size: float, *, seed: int = 1) -> Page:
    """A page of random identifier codes, as order and account numbers are printed."""
    rng = random.Random(f"codes-{font}-{size}-{seed}")
    pieces = [code(rng) for _ in range(3000)]
    return _page(font, size, pieces)


# -- renderers ----------------------------------------------------------------------------


def ghostscript(pdf: bytes, y_dpi: int) -> list[NDArray[np.bool_]]:
    """The pages as Ghostscript's fax device draws them (``tiffg4``, A4, fitted)."""
    if GHOSTSCRIPT is None:
        raise RuntimeError("Ghostscript is missing: apt-get install ghostscript")
    with tempfile.TemporaryDirectory(prefix="gatewayd-gs-") as scratch:
        source, out = Path(scratch) / "in.pdf", Path(scratch) / "out.tif"
        source.write_bytes(pdf)
        subprocess.run(
            [
                GHOSTSCRIPT,
                "-q",
                "-dNOPAUSE",
                "-dBATCH",
                "-dSAFER",
                "-sDEVICE=tiffg4",
                f"-r{X_DPI}x{y_dpi}",
                "-dFIXEDMEDIA",
                "-dPDFFitPage",
                "-sPAPERSIZE=a4",
                f"-sOutputFile={out}",
                str(source),
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        return tiff_pages(out.read_bytes())


def tiff_pages(data: bytes) -> list[NDArray[np.bool_]]:
    """A fax TIFF's pages decoded by libtiff (through Pillow); True is black."""
    out = []
    with Image.open(io.BytesIO(data)) as image:
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            out.append(np.asarray(image.convert("L")) < 128)
    return out


def gatewayd(pdf: bytes, y_dpi: int) -> list[NDArray[np.bool_]]:
    """The pages as gatewayd draws and codes them (in this process), decoded by libtiff."""
    from gatewayd.render.pdf import PdfPages
    from gatewayd.render.raster import FaxFormat
    from gatewayd.render.tiff import write

    fax = FaxFormat(y_dpi=y_dpi)
    document = PdfPages(pdf)
    try:
        coded = [document.render(index, fax) for index in range(len(document))]
    finally:
        document.close()
    out = io.BytesIO()
    write(coded, out)
    return tiff_pages(out.getvalue())


# -- reading and scoring -------------------------------------------------------------------


def read(page: NDArray[np.bool_], y_dpi: int) -> str:
    """What tesseract reads on a fax page, rescaled to square pixels."""
    if TESSERACT is None:
        raise RuntimeError("tesseract is missing: apt-get install tesseract-ocr tesseract-ocr-eng")
    image = Image.fromarray(np.where(page, 0, 255).astype(np.uint8))
    square = image.resize(
        (page.shape[1], round(page.shape[0] * X_DPI / y_dpi)), Image.Resampling.BILINEAR
    )
    with tempfile.TemporaryDirectory(prefix="gatewayd-ocr-") as scratch:
        path = Path(scratch) / "page.png"
        square.save(path, dpi=(X_DPI, X_DPI))
        result = subprocess.run(
            [TESSERACT, str(path), "stdout", "--psm", "6", "--dpi", str(X_DPI), "-l", "eng"],
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
            env={"OMP_THREAD_LIMIT": "1", "PATH": "/usr/bin:/bin"},
        )
    return result.stdout


def normalise(text: str) -> str:
    """Each line's runs of white space made one space; empty lines dropped."""
    return "\n".join(" ".join(line.split()) for line in text.splitlines() if line.strip())


def edit_distance(a: list[int] | str, b: list[int] | str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions), a row at a time in
    numpy: each row's insertions are a running minimum, so a row is a few vector
    operations (a 14,000-character page against its reading in about a second)."""
    x = np.array([ord(c) for c in a] if isinstance(a, str) else a, dtype=np.int64)
    y = np.array([ord(c) for c in b] if isinstance(b, str) else b, dtype=np.int64)
    index = np.arange(len(y) + 1, dtype=np.int64)
    row = index.copy()
    for i, symbol in enumerate(x, 1):
        best = np.empty_like(row)
        best[0] = i
        best[1:] = np.minimum(row[1:] + 1, row[:-1] + (y != symbol))
        row = np.minimum.accumulate(best - index) + index
    return int(row[-1])


@dataclass(frozen=True, slots=True)
class Score:
    chars: float  # per cent
    words: float  # per cent


def score(read_text: str, truth: str) -> Score:
    """Character and word accuracy of a reading, in per cent."""
    truth, read_text = normalise(truth), normalise(read_text)
    chars = 1 - edit_distance(read_text, truth) / len(truth)
    vocabulary: dict[str, int] = {}
    truth_words = [vocabulary.setdefault(w, len(vocabulary)) for w in truth.split()]
    read_words = [vocabulary.setdefault(w, len(vocabulary)) for w in read_text.split()]
    words = 1 - edit_distance(read_words, truth_words) / len(truth_words)
    return Score(round(100 * chars, 2), round(100 * words, 2))


def mean(scores: list[Score]) -> Score:
    """The mean of several pages' scores (each page counts the same)."""
    if not scores:
        raise ValueError("no scores to average")
    chars = sum(s.chars for s in scores) / len(scores)
    words = sum(s.words for s in scores) / len(scores)
    return Score(round(chars, 2), round(words, 2))


def codes_read(read_text: str, page: Page) -> float:
    """The share of the page's codes read exactly, in per cent."""
    found = set(read_text.split())
    codes = [c for line in page.lines for c in line.split()]
    return round(100 * sum(c in found for c in codes) / len(codes), 2)
