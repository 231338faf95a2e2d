"""Fax pages as pixels: the page geometry, and grey to bilevel.

Fax pixels are not square: 204 dots per inch across, 196 (fine) or 98 (normal) lines
per inch down. A page is 1728 dots wide (T.4's width for A4 and Letter) and as many
lines as the paper is long (A4 fine 2292, Letter fine 2156; Ghostscript's counts).

Grey becomes black and white two ways. Text and line art (what PDFium draws without
anti-aliasing, and scans of text) take a plain threshold. Photographs would turn into
shapeless blotches that way, and into noise that G4 cannot compress with error
diffusion; they get a clustered-dot halftone at 0°, whose dots repeat from line to
line so that G4's vertical mode codes them in a few bits. The page is judged in
blocks: where most pixels are mid-grey, the block is a photograph; rectangles known
to be photographs (the images of a PDF page) are screened whole, to the pixel.
Classifying, thresholding, screening and coding happen in one pass in C (``_fax``),
straight from the grey bitmap PDFium drew into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from gatewayd.errors import RenderError
from gatewayd.render import _fax
from gatewayd.render.tiff import COMPRESSION_G3, COMPRESSION_G4, CodedPage

WIDTH = 1728
X_DPI = 204
PAPER_INCHES = {"a4": (210 / 25.4, 297 / 25.4), "letter": (8.5, 11.0)}
THRESHOLD = 128  # grey below this is black (text is already black or white)
BLOCK = 16
PHOTO_SHARE = 0.65  # a block with this share of mid-grey pixels is photographic
# (blocks of photographs and shaded fills are 90-100 % mid-grey; scanned text's grey
# edges stay under 40 % in our scans, under 60 % even with smoothed sampling)
# An image on a PDF page is a photograph when this share of the pixels it is drawn
# with are mid-grey (a high-key or low-key photograph has fewer than half; a scan
# of text, its grey edges, under 5 %).
PHOTO_REGION = 0.2
Grey = NDArray[np.uint8]
Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive), in pixels


@dataclass(frozen=True, slots=True)
class FaxFormat:
    """What the pages of a fax look like."""

    paper: str = "a4"  # a4 or letter
    y_dpi: int = 196  # 196 (fine) or 98 (normal)
    compression: int = COMPRESSION_G4

    @property
    def width(self) -> int:
        return WIDTH

    @property
    def height(self) -> int:
        return round(PAPER_INCHES[self.paper][1] * self.y_dpi)

    @property
    def inches(self) -> tuple[float, float]:
        """The page's size in inches: the width of 1728 dots, the length of the paper."""
        return WIDTH / X_DPI, self.height / self.y_dpi

    def describe(self) -> str:
        """``fine, A4, G4``"""
        resolution = "fine" if self.y_dpi > 100 else "normal"
        compression = "G3" if self.compression == COMPRESSION_G3 else "G4"
        return (
            f"{resolution}, {self.paper.upper() if self.paper == 'a4' else 'Letter'}, {compression}"
        )

    @classmethod
    def named(cls, paper: str, resolution: str, compression: str) -> FaxFormat:
        if paper not in PAPER_INCHES:
            raise RenderError(f"unknown paper size {paper!r} (a4 or letter)")
        y_dpi = {"fine": 196, "normal": 98}.get(resolution)
        if y_dpi is None:
            raise RenderError(f"unknown resolution {resolution!r} (fine or normal)")
        kind = {"g4": COMPRESSION_G4, "g3": COMPRESSION_G3}.get(compression)
        if kind is None:
            raise RenderError(f"unknown compression {compression!r} (g4 or g3)")
        return cls(paper, y_dpi, kind)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a source page goes on the fax page: a box in pixels, and a rotation."""

    x: int
    y: int
    width: int
    height: int
    rotate: int  # quarter turns clockwise: 0 or 1


def place(width_in: float, height_in: float, fax: FaxFormat) -> Placement:
    """Fit a page of this size (inches) onto the fax page, whole and undistorted,
    centred; a landscape page is turned to portrait."""
    page_w, page_h = fax.inches
    rotate = 1 if width_in > height_in * 1.05 else 0
    if rotate:
        width_in, height_in = height_in, width_in
    scale = min(page_w / width_in, page_h / height_in)
    box_w = max(1, min(fax.width, round(width_in * scale * X_DPI)))
    box_h = max(1, min(fax.height, round(height_in * scale * fax.y_dpi)))
    return Placement((fax.width - box_w) // 2, (fax.height - box_h) // 2, box_w, box_h, rotate)


def _cell() -> bytes:
    """The 8x8 clustered-dot screen: dots grow from the cell's centre."""
    size = 8
    y, x = np.mgrid[0:size, 0:size]
    distance = (x - 3.5) ** 2 + (y - 3.5) ** 2 + (x * 0.01 + y * 0.001)  # a total order
    rank = np.argsort(np.argsort(distance.ravel())).reshape(size, size)
    return (255 * (1 - (rank + 0.5) / (size * size))).astype(np.uint8).tobytes()


_CELL = _cell()
# Photographs print dark as dots on fax: lighten the mid-tones before screening.
_TONE = np.clip(255 * (np.arange(256) / 255) ** 0.75, 0, 255).astype(np.uint8).tobytes()
_MIDDLE = (40, 215)  # grey strictly between these is a mid-tone


def photo_blocks(grey: Grey) -> NDArray[np.uint8] | None:
    """Per 16x16 block, 1 where it is photographic, grown by a block all round so a
    photograph's edge is screened too (None: no block is photographic)."""
    height, width = grey.shape
    flags = _fax.photo_blocks(
        grey, width, height, grey.strides[0], BLOCK, *_MIDDLE, round(PHOTO_SHARE * 256)
    )
    photo = np.frombuffer(flags, np.uint8).reshape(-(-height // BLOCK), -(-width // BLOCK))
    if not photo.any():
        return None
    grown = photo.copy()
    grown[1:] |= photo[:-1]
    grown[:-1] |= photo[1:]
    grown[:, 1:] |= photo[:, :-1]
    grown[:, :-1] |= photo[:, 1:]
    return grown


def _code(
    rows: NDArray[np.uint8],
    width: int,
    fax: FaxFormat,
    threshold: int,
    *,
    screen: NDArray[np.uint8] | None = None,
    regions: tuple[Rect, ...] = (),
) -> CodedPage:
    g3 = fax.compression == COMPRESSION_G3
    k = 4 if fax.y_dpi > 100 else 2  # T.4's K: a 1-D line every 4 (fine) or 2 lines
    rects = np.array(regions, np.int32).tobytes() if regions and screen is not None else None
    shape = (width, rows.shape[0], rows.strides[0])
    data = _fax.encode(rows, *shape, g3, k, threshold, screen, BLOCK, _TONE, _CELL, rects)
    return CodedPage(width, rows.shape[0], fax.y_dpi, fax.compression, data)


def encode(black: NDArray[np.bool_], fax: FaxFormat) -> CodedPage:
    """A bilevel page (True is black), coded."""
    return encode_packed(np.packbits(black, axis=1), black.shape[1], fax)


def encode_packed(packed: NDArray[np.uint8], width: int, fax: FaxFormat) -> CodedPage:
    """Packed bilevel rows (``np.packbits`` layout, 1 is black), coded."""
    if width != fax.width:
        raise RenderError(f"a fax page is {fax.width} dots wide, not {width}")
    return _code(packed, width, fax, 0)


def encode_grey(
    grey: Grey, fax: FaxFormat, *, photo: bool | None = None, regions: tuple[Rect, ...] = ()
) -> CodedPage:
    """A grey page, coded. ``photo`` True: a photograph, screened all over; False: text
    and line art, thresholded as it is coded (no copy); None: judged block by block,
    except ``regions`` (photographs on the page: the images of a PDF page), screened
    whole. Screening leaves pure black and white as they are, so text drawn over a
    photograph stays sharp."""
    height, width = grey.shape
    if width != fax.width:
        raise RenderError(f"a fax page is {fax.width} dots wide, not {width}")
    if not grey.flags.c_contiguous:  # the C side takes whole buffers
        grey = np.ascontiguousarray(grey)
    blocks = (-(-height // BLOCK), -(-width // BLOCK))
    if photo is False or (photo is None and not has_midtones(grey)):
        screen, regions = None, ()
    elif photo:
        screen, regions = np.ones(blocks, np.uint8), ()
    else:
        screen = photo_blocks(grey)
        if regions:
            screen = np.zeros(blocks, np.uint8) if screen is None else screen
            for x0, y0, x1, y1 in regions:  # blocks inside a region: screened once, by it
                screen[-(-y0 // BLOCK) : y1 // BLOCK, -(-x0 // BLOCK) : x1 // BLOCK] = 0
    return _code(grey, width, fax, THRESHOLD, screen=screen, regions=regions)


def has_midtones(grey: Grey) -> bool:
    """Whether the page has mid-grey anywhere (every fourth line looked at): text and
    paths drawn without anti-aliasing are pure black and white."""
    height, width = grey.shape
    return _fax.has_midtones(grey, width, height, grey.strides[0], 4, *_MIDDLE)


def region_midtone_share(grey: Grey, region: Rect) -> float:
    """The share of mid-grey pixels in a rectangle of a grey page."""
    x0, y0, x1, y1 = region
    area = (x1 - x0) * (y1 - y0)
    if area <= 0:
        return 0.0
    height, width = grey.shape
    count = _fax.count_midtones(grey, width, height, grey.strides[0], *region, *_MIDDLE)
    return count / area


def add_strokes(page: Grey, fine: Grey, *, slack: int) -> None:
    """Strokes that ``page`` (drawn at 98 lines per inch) lost, put back from ``fine``
    (the same page drawn at 196): see ``_fax.add_strokes``."""
    height, width = page.shape
    if fine.shape != (2 * height, width):
        raise ValueError(f"cannot take strokes of {fine.shape} onto {page.shape}")
    _fax.add_strokes(
        page, fine, width, height, page.strides[0], fine.strides[0], THRESHOLD, _MIDDLE[0], slack
    )


def midtone_share(histogram: list[int]) -> float:
    """The share of mid-grey pixels in an image, from its 256-bin grey histogram."""
    total = sum(histogram)
    return sum(histogram[_MIDDLE[0] + 1 : _MIDDLE[1]]) / total if total else 0.0
