"""Fax pages as pictures for people: one page of a fax TIFF as a PNG, at its true
proportions (a normal-resolution fax has half as many rows per inch as columns, so
its rows are doubled), full size or scaled down to a thumbnail.

Blocking (Pillow decodes the CCITT pages with its libtiff): call it in a thread.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from gatewayd.errors import RenderError

FULL = 0  # width: the page's own


def page_count(path: Path) -> int:
    try:
        with Image.open(path) as image:
            return int(getattr(image, "n_frames", 1))
    except (OSError, ValueError) as exc:
        raise RenderError(f"cannot read the fax pages: {exc}") from exc


def page_png(path: Path, index: int, width: int = FULL) -> bytes:
    """Page ``index`` (from 0) as PNG bytes; ``width`` 0: full size (bilevel), else
    scaled to that width (greys, for a readable thumbnail). RenderError for a page
    that is not there or a file that is not a TIFF."""
    try:
        with Image.open(path) as image:
            frames = int(getattr(image, "n_frames", 1))
            if not 0 <= index < frames:
                raise RenderError(f"the fax has {frames} pages; there is no page {index + 1}")
            image.seek(index)
            page = image.copy()
    except (OSError, ValueError, EOFError) as exc:
        raise RenderError(f"cannot read the fax pages: {exc}") from exc
    x_dpi, y_dpi = _dpi(page)
    height = max(1, round(page.height * x_dpi / y_dpi))
    if width:
        scaled = max(1, round(height * width / page.width))
        page = page.convert("L").resize((width, scaled), Image.Resampling.LANCZOS)
    elif height != page.height:
        page = page.resize((page.width, height), Image.Resampling.NEAREST)
    out = io.BytesIO()
    page.save(out, format="PNG", optimize=bool(width))
    return out.getvalue()


def _dpi(page: Image.Image) -> tuple[float, float]:
    dpi = page.info.get("dpi")
    if isinstance(dpi, tuple) and len(dpi) == 2 and dpi[0] and dpi[1]:
        return float(dpi[0]), float(dpi[1])
    return 1.0, 1.0
