"""Cheap looks at documents before rendering: how many pages, and whether they open.

PDFium is not thread-safe, not even across documents: every call here holds
``PDFIUM_LOCK``. Callers on the event loop run these functions in a thread.
"""

from __future__ import annotations

import io
import threading

import pypdfium2 as pdfium
from PIL import Image, UnidentifiedImageError

from gatewayd.errors import RenderError
from gatewayd.render.kinds import IMAGES, Kind

PDFIUM_LOCK = threading.Lock()
# Pillow's own words name Python objects: a sender is told ours (as render/images.py).
UNREADABLE_IMAGE = "the image cannot be read (damaged, or not an image)"
_PASSWORD_ERROR = 4


def pdf_pages(data: bytes) -> int:
    """The page count of a PDF, or RenderError: password-protected, damaged, empty."""
    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == _PASSWORD_ERROR:
                raise RenderError("the PDF is password-protected") from exc
            raise RenderError("the PDF is damaged") from exc
        try:
            pages = len(document)
        finally:
            document.close()
    if pages == 0:
        raise RenderError("the PDF has no pages")
    return pages


def image_pages(data: bytes) -> int:
    """Pages of an image: the frames of a TIFF, one for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise RenderError(UNREADABLE_IMAGE) from exc


def pages(kind: Kind, data: bytes) -> int:
    """At least how many fax pages a document makes (text and office documents: 1,
    until rendering tells)."""
    if kind is Kind.PDF:
        return pdf_pages(data)
    if kind in IMAGES:
        return image_pages(data)
    return 1
