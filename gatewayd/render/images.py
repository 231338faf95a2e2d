"""Images onto fax pages, with Pillow: JPEG, PNG, GIF (its first frame), TIFF (every
page), BMP, WebP.

Each image is turned as its EXIF orientation says, flattened onto white, fitted to the
page whole (turned if landscape) and centred; then photographs are halftoned and line
art thresholded. Which is which is judged on the image as it came, before scaling
(scaling up turns a sharp edge into a band of grey): mostly mid-grey is a photograph,
screened whole; almost none is line art or a scan of text, thresholded; in between
(a scan with a picture in it, say), the page is judged block by block. A page of a fax TIFF that is
already what we send (bilevel, 1728 dots, our resolution, not longer than the paper)
passes through untouched: its coded strip is copied when it is G4 like ours, or its
dots re-coded, never resampled.

Pillow's decompression-bomb guard is an error here (``max_image_pixels``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gatewayd.errors import RenderError
from gatewayd.render.raster import WIDTH, FaxFormat, encode, encode_grey, midtone_share, place
from gatewayd.render.tiff import COMPRESSION_G4, CodedPage

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "TIFF", "BMP", "WEBP", "MPO")


# Pillow's own words name Python objects ("<_io.BytesIO object at 0x...>"): not for
# a sender.
UNREADABLE_IMAGE = "the image cannot be read (damaged, or not an image)"


@contextmanager
def opened(path: Path, max_pixels: int) -> Iterator[Image.Image]:
    """The image, with the bomb guard at ``max_pixels`` raised as an error."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=ALLOWED_FORMATS) as image:
                yield image
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise RenderError(f"the image is too large (more than {max_pixels:,} pixels)") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise RenderError(UNREADABLE_IMAGE) from exc


def count(path: Path, max_pixels: int) -> int:
    with opened(path, max_pixels) as image:
        return int(getattr(image, "n_frames", 1)) if image.format == "TIFF" else 1


def _passes_through(frame: Image.Image, fax: FaxFormat) -> bool:
    if frame.mode != "1" or frame.width != WIDTH or frame.height > fax.height:
        return False
    y_dpi = float(frame.info.get("dpi", (0, 0))[1] or 0)
    return abs(y_dpi - fax.y_dpi) <= 15


def _raw_strip(frame: Image.Image, path: Path, fax: FaxFormat) -> bytes | None:
    """The coded strip of a G4 fax page we could send as it is, else None."""
    tags = getattr(frame, "tag_v2", {})
    if (
        fax.compression != COMPRESSION_G4
        or tags.get(259) != 4  # Group 4
        or tags.get(262, 0) != 0  # min-is-white
        or tags.get(266, 1) != 1  # FillOrder MSB first
        or tags.get(293, 0) != 0  # no uncompressed mode
        or len(tags.get(273, ())) != 1  # one strip
    ):
        return None
    with path.open("rb") as handle:
        handle.seek(tags[273][0])
        data = handle.read(tags[279][0])
    return data if len(data) == tags[279][0] else None


PHOTOGRAPH = 0.5  # at least this share of mid-grey pixels: a photograph
LINE_ART = 0.05  # at most this share: line art or a scan of text


def _grey(frame: Image.Image, fax: FaxFormat) -> tuple[np.ndarray, bool | None]:
    """The frame drawn on a grey fax page, and whether it is a photograph (None: it
    may hold both kinds)."""
    image = ImageOps.exif_transpose(frame)
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        white = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(white, image)
    image = image.convert("L")
    share = midtone_share(image.histogram())
    photo = True if share >= PHOTOGRAPH else False if share <= LINE_ART else None
    where = place(image.width, image.height, fax)
    if where.rotate:
        image = image.transpose(Image.Transpose.ROTATE_270)  # a quarter turn clockwise
    image = image.resize((where.width, where.height), Image.Resampling.LANCZOS)
    page = np.full((fax.height, fax.width), 255, dtype=np.uint8)
    page[where.y : where.y + where.height, where.x : where.x + where.width] = np.asarray(image)
    return page, photo


def render(path: Path, index: int, fax: FaxFormat, max_pixels: int) -> CodedPage:
    """Page ``index`` (a TIFF's page, or 0) of an image file, as a fax page."""
    with opened(path, max_pixels) as image:
        try:
            image.seek(index)
        except EOFError as exc:
            raise RenderError(f"the image has no page {index + 1}") from exc
        if image.format == "JPEG":  # decode no larger than the page needs
            image.draft("L", (fax.width, fax.height))
        if image.format == "TIFF" and _passes_through(image, fax):
            strip = _raw_strip(image, path, fax)
            if strip is not None:
                return CodedPage(image.width, image.height, fax.y_dpi, COMPRESSION_G4, strip)
            return encode(np.asarray(image.convert("L")) < 128, fax)
        try:
            grey, photo = _grey(image, fax)
        except (OSError, ValueError) as exc:
            raise RenderError(UNREADABLE_IMAGE) from exc
    return encode_grey(grey, fax, photo=photo)
