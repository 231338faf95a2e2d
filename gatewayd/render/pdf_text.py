"""Text in the standard PDF fonts drawn at 98 lines per inch as Ghostscript draws it.

PDFium draws a glyph from the outline scaled to 64 pixels per em (hinted there, for
OpenType and TrueType faces) and then shrunk to the page; at normal resolution
(204 x 98 dpi) that places the thin horizontal strokes of small print badly: a 6 pt
e's eye closes, an n's arch breaks, and Helvetica 8 and 10 pt read about half a point
of characters worse than Ghostscript's fax pages. Ghostscript has FreeType draw each
glyph at its true size on the device (204 x 98 pixels per inch, not hinted, the
monochrome rasteriser with its dropout control) with its origin on a whole pixel.

So at normal resolution the text whose faces ``pdf_fonts.true_size`` names (Helvetica,
not embedded; Times and Courier read better as PDFium draws them) is drawn here that
way, with FreeType (freetype-py), from the same face files PDFium was given; PDFium
draws the page with that text hidden, and the rest of the page as before. Only text
that this cannot change the look of is taken, an object at a time:

- a top-level text object (not inside a form XObject), filled (render mode 0), in a
  colour that prints black on a fax (luminance below 128, opaque), with no clip path,
  no transparency, upright (no rotation or skew), on a page that is neither rotated
  nor turned to fit;
- whose every character has a glyph in the face (nothing is ever left out);
- that nothing drawn after it overlaps, an annotation neither (a white box over
  text keeps hiding it).

Everything else (embedded fonts, other fonts, rotated or clipped text, fine
resolution) PDFium draws, as before.

:func:`collect` finds the text on a page, :func:`hidden` hides it from PDFium while
the page is drawn, :meth:`Glyphs.draw` draws it onto a drawing of the page. Not
thread-safe (PDFium is not either): one per process.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import freetype
import numpy as np
import pypdfium2.raw as pdfium_c
from numpy.typing import NDArray

from gatewayd.errors import RenderError
from gatewayd.render import _fax
from gatewayd.render.raster import Grey, Placement

_TEXT = pdfium_c.FPDF_PAGEOBJ_TEXT
_FILL, _INVISIBLE = pdfium_c.FPDF_TEXTRENDERMODE_FILL, pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE
_BLANK = frozenset({0x20, 0xA0, 0x09, 0x0A, 0x0D})  # no glyph to draw
_LOAD = freetype.FT_LOAD_NO_BITMAP | freetype.FT_LOAD_NO_HINTING
_BLACK = 128  # luminance below which a colour prints black (raster.THRESHOLD)
# PDFium's functions that _fax.text_chars calls for each character
_TEXT_CHARS = tuple(
    ctypes.cast(function, ctypes.c_void_p).value or 0
    for function in (
        pdfium_c.FPDFText_GetUnicode,
        pdfium_c.FPDFText_GetTextObject,
        pdfium_c.FPDFText_GetCharOrigin,
    )
)
_LARGEST = 200.0  # points: larger print is PDFium's (no stroke of it is thin at 98 lpi)

Offsets = tuple[NDArray[np.intp], NDArray[np.intp]]  # a glyph's black pixels: rows, columns


class _Faces:
    """FreeType faces by file, and each glyph's black pixels by face, code point and
    size (in 1/64 pixel per em across and down), as offsets from its origin."""

    def __init__(self) -> None:
        self.faces: dict[Path, freetype.Face] = {}
        self.glyphs: dict[tuple[Path, int, int, int], Offsets] = {}
        self.known: dict[tuple[Path, int], bool] = {}
        self.sized: tuple[Path, int, int] | None = None

    def face(self, path: Path) -> freetype.Face:
        face = self.faces.get(path)
        if face is None:
            try:
                face = self.faces[path] = freetype.Face(str(path))
            except (OSError, freetype.FT_Exception) as exc:
                raise RenderError(f"the font file {path} cannot be read") from exc
        return face

    def has(self, path: Path, code: int) -> bool:
        """Whether the face has a glyph for the code point."""
        known = self.known.get((path, code))
        if known is None:
            known = self.known[path, code] = self.face(path).get_char_index(code) != 0
        return known

    def glyph(self, path: Path, code: int, across: int, down: int) -> Offsets:
        key = (path, code, across, down)
        found = self.glyphs.get(key)
        if found is not None:
            return found
        face = self.face(path)
        if self.sized != (path, across, down):
            face.set_char_size(across, down, 72, 72)  # 72 dpi: sizes are in pixels
            self.sized = (path, across, down)
        try:
            face.load_glyph(face.get_char_index(code), _LOAD)
            face.glyph.render(freetype.FT_RENDER_MODE_MONO)
        except freetype.FT_Exception as exc:
            raise RenderError(f"the font file {path} cannot draw U+{code:04X}") from exc
        bitmap = face.glyph.bitmap
        rows = columns = np.zeros(0, np.intp)
        if bitmap.rows and bitmap.width:
            packed = np.frombuffer(bytes(bitmap.buffer), np.uint8)
            bits = np.unpackbits(packed.reshape(bitmap.rows, bitmap.pitch), axis=1)
            rows, columns = np.nonzero(bits[:, : bitmap.width])
            rows = rows - face.glyph.bitmap_top  # from the origin: down is positive
            columns = columns + face.glyph.bitmap_left
        found = self.glyphs[key] = (rows, columns)
        return found


_FACES = _Faces()


@dataclass(frozen=True, slots=True)
class Glyphs:
    """The text of a page drawn here: the text objects (hidden from PDFium); their
    faces; and per character the index of its face, its code point, its size in
    points across and down (the font size times the text's scale) and its origin in
    page space."""

    objects: tuple[Any, ...]
    faces: tuple[Path, ...]
    face: NDArray[np.int64]
    code: NDArray[np.int64]
    size: NDArray[np.float64]  # characters x 2: across, down
    origin: NDArray[np.float64]  # characters x 2: x, y
    page: tuple[float, float, float, float]  # the page box drawn: left, bottom, right, top

    def draw(self, pixels: Grey, where: Placement) -> None:
        """Draw the glyphs black onto ``pixels``, a drawing of the page at ``where``
        (nothing outside the page's box, as PDFium), each glyph's origin on the pixel
        nearest its place."""
        left, bottom, right, top = self.page
        scale = np.array([where.width / (right - left), where.height / (top - bottom)])
        ems = np.clip(np.rint(self.size * scale * 64), 1, 0xFFFF).astype(np.int64)
        x = np.rint(where.x + (self.origin[:, 0] - left) * scale[0]).astype(np.intp)
        y = np.rint(where.y + (top - self.origin[:, 1]) * scale[1]).astype(np.intp)
        # one integer a glyph: face (4 bits), code point (21), size across and down (16 each)
        keys = ((self.face << 21 | self.code) << 16 | ems[:, 0]) << 16 | ems[:, 1]
        unique, which = np.unique(keys, return_inverse=True)
        offsets = [
            _FACES.glyph(
                self.faces[key >> 53], key >> 32 & 0x1FFFFF, key >> 16 & 0xFFFF, key & 0xFFFF
            )
            for key in unique.tolist()
        ]
        starts = np.zeros(len(offsets) + 1, np.int32)
        np.cumsum([rows.size for rows, _ in offsets], out=starts[1:])
        rows = np.concatenate([r for r, _ in offsets]).astype(np.int32)
        columns = np.concatenate([c for _, c in offsets]).astype(np.int32)
        height, width = pixels.shape
        box = (where.x, where.y, where.x + where.width, where.y + where.height)
        glyph = which.reshape(-1).astype(np.int32)
        origin = (x.astype(np.int32), y.astype(np.int32))
        geometry = (width, height, pixels.strides[0], *box)
        _fax.stamp(pixels, *geometry, rows, columns, starts, glyph, *origin)


def collect(raw: Any, paths: dict[str, Path], where: Placement) -> Glyphs | None:
    """The text of page ``raw`` in the faces ``paths`` (standard name to file) that is
    drawn here (see the module's contract), or None when there is none."""
    if not paths or where.rotate or pdfium_c.FPDFPage_GetRotation(raw):
        return None
    count = pdfium_c.FPDFPage_CountObjects(raw)
    objects = [pdfium_c.FPDFPage_GetObject(raw, i) for i in range(count)]
    faces = sorted(set(paths.values()))
    # per top-level text object drawn here: its index among the objects, its face and
    # size; decided before the text page, which costs more, is read (most pages with
    # embedded fonts need none)
    taken: dict[int, tuple[int, int, float, float]] = {}
    for index, obj in enumerate(objects):
        found = _face(obj, paths)
        if found is not None:
            path, across, down = found
            taken[_address(obj)] = (index, faces.index(path), across, down)
    if not taken:
        return None
    text_page = pdfium_c.FPDFText_LoadPage(raw)
    if not text_page:
        return None
    try:
        count = pdfium_c.FPDFText_CountChars(text_page)
        if count <= 0:
            return None
        codes_, objects_, origins_ = _fax.text_chars(_address(text_page), count, *_TEXT_CHARS)
    finally:
        pdfium_c.FPDFText_ClosePage(text_page)
    codes = np.frombuffer(codes_, np.uint32).astype(np.int64)
    owners = np.frombuffer(objects_, np.uint64)
    origins = np.frombuffer(origins_, np.float64).reshape(-1, 2)
    # the characters of the objects drawn here, blanks left out (PDFium's own spaces and
    # line ends among them); a text object inside a form XObject is not among the
    # objects: PDFium draws it
    keys = np.fromiter(taken, np.uint64, len(taken))
    info = np.array(list(taken.values()), np.float64)  # index, face, across, down
    sorter = np.argsort(keys)
    at = sorter[np.minimum(np.searchsorted(keys, owners, sorter=sorter), len(keys) - 1)]
    ours = (keys[at] == owners) & ~np.isin(codes, list(_BLANK))
    at, codes, origins = at[ours], codes[ours], origins[ours]
    index, face = info[at, 0].astype(np.int64), info[at, 1].astype(np.int64)
    # an object with a character its face has no glyph for is PDFium's: nothing is left out
    pairs = np.unique(np.stack([face, codes], axis=1), axis=0)
    lacking = [(f, c) for f, c in pairs.tolist() if not _FACES.has(faces[f], c)]
    missing = {int(i) for f, c in lacking for i in index[(face == f) & (codes == c)]}
    drawn = set(np.unique(index).tolist()) - missing
    drawn -= _covered(objects, drawn, _annotations(raw))
    if not drawn:
        return None
    kept = np.isin(index, sorted(drawn))
    return Glyphs(
        objects=tuple(objects[i] for i in sorted(drawn)),
        faces=tuple(faces),
        face=face[kept],
        code=codes[kept],
        size=info[at[kept], 2:4],
        origin=origins[kept],
        page=_page_box(raw, where),
    )


@contextmanager
def hidden(glyphs: Glyphs | None) -> Iterator[None]:
    """While inside, PDFium does not draw the text ``glyphs`` holds."""
    objects = glyphs.objects if glyphs is not None else ()
    for obj in objects:
        pdfium_c.FPDFTextObj_SetTextRenderMode(obj, _INVISIBLE)
    try:
        yield
    finally:
        for obj in objects:
            pdfium_c.FPDFTextObj_SetTextRenderMode(obj, _FILL)


def _address(obj: Any) -> int:
    """The address a PDFium handle holds (read from the pointer's own bytes: ten times
    faster than a cast, and this runs once a character)."""
    return ctypes.c_size_t.from_buffer(obj).value


def _face(obj: Any, paths: dict[str, Path]) -> tuple[Path, float, float] | None:
    """For a text object that is drawn here: its face file and its size in points
    across and down (the font size times the object's scale); else None."""
    if pdfium_c.FPDFPageObj_GetType(obj) != _TEXT:
        return None
    if pdfium_c.FPDFTextObj_GetTextRenderMode(obj) != _FILL:
        return None
    if pdfium_c.FPDFPageObj_HasTransparency(obj):
        return None
    clip = pdfium_c.FPDFPageObj_GetClipPath(obj)
    if clip and pdfium_c.FPDFClipPath_CountPaths(clip) > 0:
        return None
    r, g, b, a = (ctypes.c_uint() for _ in range(4))
    if not pdfium_c.FPDFPageObj_GetFillColor(obj, r, g, b, a) or a.value != 255:
        return None
    if 0.299 * r.value + 0.587 * g.value + 0.114 * b.value >= _BLACK:
        return None
    matrix, size = pdfium_c.FS_MATRIX(), ctypes.c_float()
    if not pdfium_c.FPDFPageObj_GetMatrix(obj, matrix) or not pdfium_c.FPDFTextObj_GetFontSize(
        obj, size
    ):
        return None
    if matrix.b or matrix.c or matrix.a <= 0 or matrix.d <= 0 or size.value <= 0:
        return None  # turned, skewed or mirrored
    across, down = size.value * matrix.a, size.value * matrix.d
    if max(across, down) > _LARGEST:
        return None
    font = pdfium_c.FPDFTextObj_GetFont(obj)
    if not font or pdfium_c.FPDFFont_GetIsEmbedded(font):
        return None
    name = ctypes.create_string_buffer(128)
    length = pdfium_c.FPDFFont_GetBaseFontName(font, name, len(name))
    if not 0 < length <= len(name):
        return None
    path = paths.get(name.value.decode("latin-1"))
    if path is None:
        return None
    return path, across, down


def _bounds(obj: Any) -> tuple[float, float, float, float] | None:
    box = [ctypes.c_float() for _ in range(4)]
    if not pdfium_c.FPDFPageObj_GetBounds(obj, *box):
        return None
    left, bottom, right, top = (v.value for v in box)
    return left, bottom, right, top


def _covered(
    objects: list[Any], drawn: set[int], over: list[tuple[float, float, float, float]]
) -> set[int]:
    """The text objects among ``drawn`` (indices) that an object drawn after them, or a
    box of ``over`` (drawn after all of them), overlaps; an object whose bounds are
    unknown overlaps everything before it."""
    if not drawn:
        return set()
    candidates = sorted(drawn)
    boxes = np.array([_bounds(objects[i]) or (0.0, 0.0, 0.0, 0.0) for i in candidates])
    index = np.array(candidates)
    covered = np.zeros(len(candidates), bool)
    later: list[tuple[int, tuple[float, float, float, float] | None]] = [
        (j, _bounds(objects[j])) for j in range(candidates[0] + 1, len(objects)) if j not in drawn
    ]
    later += [(len(objects), box) for box in over]
    for j, box in later:
        earlier = index < j
        if box is None:
            covered |= earlier
            continue
        left, bottom, right, top = box
        covered |= (
            earlier
            & (boxes[:, 0] <= right)
            & (boxes[:, 2] >= left)
            & (boxes[:, 1] <= top)
            & (boxes[:, 3] >= bottom)
        )
    return {i for i, hit in zip(candidates, covered, strict=True) if hit}


def _annotations(raw: Any) -> list[tuple[float, float, float, float]]:
    """The boxes of the page's annotations (drawn over the page's content, as printed)."""
    boxes = []
    for i in range(pdfium_c.FPDFPage_GetAnnotCount(raw)):
        annot = pdfium_c.FPDFPage_GetAnnot(raw, i)
        if not annot:
            continue
        rect = pdfium_c.FS_RECTF()
        if pdfium_c.FPDFAnnot_GetRect(annot, rect):
            left, right = sorted((rect.left, rect.right))
            bottom, top = sorted((rect.bottom, rect.top))
            boxes.append((left, bottom, right, top))
        pdfium_c.FPDFPage_CloseAnnot(annot)
    return boxes


def _page_box(raw: Any, where: Placement) -> tuple[float, float, float, float]:
    """The page box PDFium draws into ``where`` (its corners mapped back to page space:
    the crop box, whatever its origin)."""
    corners = []
    for dx, dy in ((where.x, where.y + where.height), (where.x + where.width, where.y)):
        x, y = ctypes.c_double(), ctypes.c_double()
        pdfium_c.FPDF_DeviceToPage(
            raw, where.x, where.y, where.width, where.height, where.rotate, dx, dy, x, y
        )
        corners.append((x.value, y.value))
    (left, bottom), (right, top) = corners
    return left, bottom, right, top
