"""Documents to fax, made on demand: the render tests and bench/render.py use them.

Everything is generated (reportlab for PDFs, Pillow and numpy for images) from a fixed
seed, so the same call gives the same bytes on every machine with the same libraries.
Fonts are DejaVu from fonts-dejavu-core when installed (embedded as subset TrueType,
as office suites do), else reportlab's bundled Vera.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, LETTER, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from gatewayd.render import fonts

_VOCABULARY = (
    "invoice payment contract delivery gateway facsimile order account number total "
    "amount due please sign return the of and to in for with by on at from this that "
    "is are was be will shall agreement party parties receipt quantity price unit net "
    "gross tax date reference customer supplier terms conditions schedule annex page"
)
WORDS = tuple(_VOCABULARY.split())


def _font(role: str) -> str:
    """A registered reportlab font name for ``sans``, ``bold``, ``mono`` or ``serif``."""
    found = fonts.find("DejaVuSerif.ttf") if role == "serif" else None
    font = fonts.load(found) if found else None
    if font is None:
        font = fonts.family("mono" if role == "mono" else "bold" if role == "bold" else "sans")[0]
    return font.name


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + rng.choice((".", ".", ",", ";", ":", "?"))


def dense_text_pdf(pages: int = 50, *, embedded: bool = True, seed: int = 1) -> bytes:
    """Dense A4 pages: 9 pt serif body text, a heading and an 8 pt table with rules and a
    shaded header on every page, page numbers in the footer. ``embedded``: subset
    TrueType fonts in the file, as word processors make them; else the standard Type 1
    fonts (Times, Helvetica), not embedded, as many invoicing systems do."""
    rng = random.Random(seed)
    serif = _font("serif") if embedded else "Times-Roman"
    bold = _font("bold") if embedded else "Helvetica-Bold"
    cell = _font("sans") if embedded else "Helvetica"
    body = ParagraphStyle("body", fontName=serif, fontSize=9, leading=11, alignment=4,
                          spaceAfter=4)  # fmt: skip
    heading = ParagraphStyle("heading", fontName=bold, fontSize=14, leading=18)
    story: list[object] = []
    for page in range(pages):
        story.append(Paragraph(f"Section {page + 1}: {_sentence(rng, 5)}", heading))
        for _ in range(6):
            story.append(Paragraph(" ".join(_sentence(rng, rng.randint(8, 20))
                                            for _ in range(6)), body))  # fmt: skip
        rows = [["Item", "Description", "Qty", "Unit price", "Amount"]]
        for n in range(10):
            qty, price = rng.randint(1, 99), rng.randint(100, 99999) / 100
            rows.append([str(n + 1), _sentence(rng, 4)[:-1], str(qty), f"{price:,.2f}",
                         f"{qty * price:,.2f}"])  # fmt: skip
        table = Table(rows, colWidths=(30, 250, 40, 70, 80))
        table.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, -1), cell, 8),
            ("GRID", (0, 0), (-1, -1), 0.5, colors.black),
            ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
            ("ALIGN", (2, 1), (-1, -1), "RIGHT"),
        ]))  # fmt: skip
        story += [Spacer(1, 6), table]
        for _ in range(1):
            story.append(Paragraph(" ".join(_sentence(rng, rng.randint(8, 20))
                                            for _ in range(6)), body))  # fmt: skip
        story.append(_PageBreak())
    out = io.BytesIO()

    def footer(canvas: Canvas, document: SimpleDocTemplate) -> None:
        canvas.setFont(cell, 8)
        canvas.drawCentredString(A4[0] / 2, 30, f"Page {document.page}")

    document = SimpleDocTemplate(out, pagesize=A4, leftMargin=56, rightMargin=56,
                                 topMargin=56, bottomMargin=56)  # fmt: skip
    document.build(story[:-1], onFirstPage=footer, onLaterPages=footer)
    return _exact_pages(out.getvalue(), pages)


class _PageBreak(Spacer):
    """A page break that platypus cannot drop at the end of a full page."""

    def __init__(self) -> None:
        super().__init__(1, 0)

    def split(self, available_width: float, available_height: float) -> list[object]:
        return []

    def wrap(self, available_width: float, available_height: float) -> tuple[float, float]:
        return available_width, available_height


def _exact_pages(pdf: bytes, pages: int) -> bytes:
    """``pdf`` cut or padded (by repeating pages) to exactly ``pages`` pages."""
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(pdf)
    result = pdfium.PdfDocument.new()
    have = len(source)
    result.import_pages(source, [i % have for i in range(pages)])
    out = io.BytesIO()
    result.save(out)
    result.close()
    source.close()
    return out.getvalue()


def mixed_pdf(*, seed: int = 2) -> bytes:
    """Ten pages of mixed sizes: Letter portrait, A4 landscape, Letter landscape, a
    short receipt and a tall statement, with 6 pt print, rules and a bar chart."""
    rng = random.Random(seed)
    sizes = [LETTER, landscape(A4), landscape(LETTER), (226, 400), (595, 1400)] * 2
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=LETTER)
    sans, bold = _font("sans"), _font("bold")
    for number, (width, height) in enumerate(sizes, 1):
        canvas.setPageSize((width, height))
        canvas.setFont(bold, 12)
        canvas.drawString(24, height - 36, f"Page {number}: {width:.0f} x {height:.0f} pt")
        canvas.setFont(sans, 6)
        y = height - 52
        while y > height / 2:
            canvas.drawString(24, y, _sentence(rng, int(width / 22)))
            y -= 7.5
        canvas.setLineWidth(0.5)
        bars = 12
        step = (width - 60) / bars
        for bar in range(bars):
            h = rng.uniform(10, height / 2 - 60)
            canvas.setFillGray(0.25 + 0.5 * (bar % 2))
            canvas.rect(30 + bar * step, 30, step * 0.7, h, stroke=1, fill=1)
        canvas.line(24, 30, width - 24, 30)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def text_page_image(seed: int, size: tuple[int, int] = (1654, 2339), *,
                    noise: bool = True) -> Image.Image:  # fmt: skip
    """A page of text as a scanner sees it at 200 dpi: grey paper, dark ink, speckle."""
    rng = random.Random(seed)
    page = Image.new("L", size, 235)
    draw = ImageDraw.Draw(page)
    path = fonts.find("DejaVuSerif.ttf") or fonts.find("DejaVuSans.ttf")
    face = ImageFont.truetype(str(path), 28) if path else ImageFont.load_default()
    y = 140
    while y < size[1] - 160:
        draw.text((140, y), _sentence(rng, 11), fill=30, font=face)
        y += 44
    if not noise:
        return page
    pixels = np.asarray(page, dtype=np.int16)
    speckle = np.random.default_rng(seed).normal(0, 4, pixels.shape)
    return Image.fromarray(np.clip(pixels + speckle, 0, 255).astype(np.uint8))


def scanned_pdf(pages: int = 6) -> bytes:
    """A scanner's PDF: one 200 dpi grey JPEG per A4 page."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    for page in range(pages):
        buffer = io.BytesIO()
        text_page_image(page).save(buffer, "JPEG", quality=75)
        canvas.drawImage(ImageReader(buffer), 0, 0, *A4)
        canvas.showPage()
    canvas.save()
    return out.getvalue()


def photo(size: tuple[int, int] = (2480, 3508), *, seed: int = 3) -> Image.Image:
    """A photograph, or something with a photograph's statistics: smooth light, detail
    at every scale (fractal noise), soft-edged shapes, sensor grain; in colour."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 0.35 + 0.4 * (x / width) * (1 - y / height) + 0.15 * np.sin(y / height * 3.1)
    detail = np.zeros((height, width), np.float32)
    for octave in range(1, 8):
        cells = 2**octave
        coarse = rng.normal(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        layer = Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BICUBIC)
        detail += np.asarray(layer) / octave**1.1
    tone = light + 0.08 * detail
    for _ in range(14):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(80, 600)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        tone += rng.uniform(-0.35, 0.35) * blob
    tone += rng.normal(0, 0.02, tone.shape).astype(np.float32)
    grey = np.clip(tone * 255, 0, 255).astype(np.uint8)
    tint = np.stack([grey, (grey * 0.92).astype(np.uint8), (grey * 0.8).astype(np.uint8)], -1)
    return Image.fromarray(tint, "RGB")


def photo_jpeg(**kwargs: object) -> bytes:
    buffer = io.BytesIO()
    photo(**kwargs).save(buffer, "JPEG", quality=88)  # type: ignore[arg-type]
    return buffer.getvalue()


def image_pdf(image: bytes, page: tuple[float, float] = A4) -> bytes:
    """An image filling a page, as a PDF (how Ghostscript is given an image)."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=page)
    canvas.drawImage(ImageReader(io.BytesIO(image)), 0, 0, *page)
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def email_text(pages: int = 10, *, seed: int = 4) -> str:
    """A long plain-text email: paragraphs, a quoted table, some non-ASCII."""
    rng = random.Random(seed)
    lines: list[str] = ["Dear Ms Müller,", ""]
    while len(lines) < pages * 58:
        paragraph = " ".join(_sentence(rng, rng.randint(6, 16)) for _ in range(5))
        while paragraph:
            cut = paragraph.rfind(" ", 0, 78) if len(paragraph) > 78 else len(paragraph)
            lines.append(paragraph[:cut])
            paragraph = paragraph[cut + 1 :]
        lines.append("")
        if rng.random() < 0.2:
            lines += [f"  {n:>3}  {rng.choice(WORDS):<14} {rng.randint(1, 9999):>8}.00 €"
                      for n in range(1, 6)] + [""]  # fmt: skip
    return "\n".join([*lines[: pages * 58 - 3], "", "Mit freundlichen Grüßen", "Ωμέγα Ltd."])


def form_pdf() -> bytes:
    """One A4 page with filled form fields, a checkbox and a sticky-note annotation."""
    out = io.BytesIO()
    canvas = Canvas(out, pagesize=A4)
    canvas.setFont("Helvetica", 12)
    canvas.drawString(72, 770, "Order form")
    canvas.drawString(72, 720, "Name:")
    canvas.acroForm.textfield(name="name", value="Alice Example", x=140, y=712, width=250,
                              height=20, fontSize=12, borderWidth=1)  # fmt: skip
    canvas.drawString(72, 680, "Express:")
    canvas.acroForm.checkbox(name="express", checked=True, x=140, y=676, size=16)
    canvas.textAnnotation("Please fax by Friday", Rect=(400, 700, 420, 720))
    canvas.showPage()
    canvas.save()
    return out.getvalue()


def write(directory: Path, name: str, make: Callable[[], bytes]) -> Path:
    """``make()`` written to ``directory/name`` unless already there."""
    path = directory / name
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make())
    return path


def docx(paragraphs: list[str]) -> bytes:
    """A minimal, valid Word document (what LibreOffice needs to open one)."""
    import zipfile
    from xml.sax.saxutils import escape

    body = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{escape(p)}</w:t></w:r></w:p>"
                   for p in paragraphs)  # fmt: skip
    main = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats'
            '.org/package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            f'ContentType="application/xml"/><Override PartName="/word/document.xml" '
            f'ContentType="{main}"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.'
            'openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" '
            f'Type="{office}" Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.'
            'openxmlformats.org/wordprocessingml/2006/main"><w:body>'
            f"{body}</w:body></w:document>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(name, text)
    return out.getvalue()


def nested_forms_pdf(levels: int = 5, fan: int = 10) -> bytes:
    """A pathological page in a few kilobytes: form XObject n draws form n-1 ``fan``
    times, form 0 is 200 tiny squares, so the page holds 200 x fan**levels paths
    (two million at 4 levels take PDFium about a second and a half)."""
    forms = ["".join(f"{(i * 37) % 500} {(i * 53) % 700} 0.5 0.5 re\n" for i in range(200)) + "f\n"]
    for level in range(1, levels + 1):
        forms.append("".join(f"q 1 0 0 1 {k * 0.7:.1f} {k * 0.3:.1f} cm /X{level - 1} Do Q\n"
                             for k in range(fan)))  # fmt: skip
    top = len(forms) - 1
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        f"/Resources << /XObject << /X{top} {5 + top} 0 R >> >> >>".encode(),
        _stream(b"", f"/X{top} Do\n".encode()),
    ]
    for n, content in enumerate(forms):
        inner = f"/Resources << /XObject << /X{n - 1} {4 + n} 0 R >> >> " if n else ""
        head = f"/Type /XObject /Subtype /Form /BBox [0 0 595 842] {inner}".encode()
        bodies.append(_stream(head, content.encode()))
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


def _stream(head: bytes, data: bytes) -> bytes:
    return b"<< " + head + f"/Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def path_bomb_pdf(megabytes: int = 200) -> bytes:
    """A small PDF whose one page's content stream inflates to ``megabytes`` MB of path
    operators: PDFium builds an object for each (gigabytes of memory for a page that
    compresses to a few hundred kilobytes)."""
    import zlib

    line = b"10 10 m 20 20 l S\n"
    content = line * (megabytes * 1024 * 1024 // len(line))
    packed = zlib.compress(content, 9)
    bodies = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
        _stream(b"/Filter /FlateDecode ", packed),
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(bodies, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(bodies) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += (
        f"trailer\n<< /Size {len(bodies) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)
