"""Writes the sample documents in docs/ (run once; the outputs are committed).

    python tests/data/make_samples.py     (needs pypdf, Pillow and pypdfium2)

pypdf is used only here, to encrypt a PDF; gatewayd does not depend on it.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pypdfium2 as pdfium
from PIL import Image, ImageDraw
from pypdf import PdfReader, PdfWriter

DOCS = Path(__file__).resolve().parent / "docs"


def pdf(pages: int, size: tuple[float, float] = (595, 842)) -> bytes:
    document = pdfium.PdfDocument.new()
    for _ in range(pages):
        document.new_page(*size)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def main() -> None:
    DOCS.mkdir(exist_ok=True)
    (DOCS / "one-page.pdf").write_bytes(pdf(1))
    (DOCS / "three-pages.pdf").write_bytes(pdf(3))
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(pdf(2))))
    writer.encrypt(user_password="secret", owner_password="owner")
    out = io.BytesIO()
    writer.write(out)
    (DOCS / "encrypted.pdf").write_bytes(out.getvalue())
    (DOCS / "damaged.pdf").write_bytes(
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R" + b"\x00" * 64
    )
    image = Image.new("RGB", (320, 200), "white")
    ImageDraw.Draw(image).rectangle((20, 20, 300, 180), outline="black", width=4)
    for name, fmt in (
        ("logo.png", "PNG"),
        ("photo.jpg", "JPEG"),
        ("drawing.gif", "GIF"),
        ("drawing.bmp", "BMP"),
        ("drawing.webp", "WEBP"),
    ):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        (DOCS / name).write_bytes(buffer.getvalue())
    frames = [Image.new("1", (1728, 200), 1) for _ in range(2)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "TIFF", save_all=True, append_images=frames[1:], compression="group4")
    (DOCS / "two-page.tif").write_bytes(buffer.getvalue())
    docx = io.BytesIO()
    with zipfile.ZipFile(docx, "w") as archive:
        archive.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        archive.writestr("word/document.xml", '<?xml version="1.0"?><w:document/>')
    (DOCS / "letter.docx").write_bytes(docx.getvalue())
    archive_zip = io.BytesIO()
    with zipfile.ZipFile(archive_zip, "w") as archive:
        archive.writestr("readme.txt", "hello")
    (DOCS / "archive.zip").write_bytes(archive_zip.getvalue())


if __name__ == "__main__":
    main()
