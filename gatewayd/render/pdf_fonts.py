"""The standard PDF fonts, when a PDF does not embed them, drawn with good faces
found on the machine.

Many invoicing and reporting systems write Helvetica, Times and Courier without
embedding them: the reader must supply the glyphs. PDFium's own substitutes for them
read worse on fax than the metric-compatible faces Ghostscript and office suites use
(Courier 9 pt at 98 lines per inch by several points). So PDFium's system-font
interface is answered here for the twelve standard Latin faces (Helvetica, Times and
Courier, each roman, bold, italic and bold italic; PDFium maps the usual aliases,
Arial, TimesNewRoman, CourierNew and their styles, to them first), each from the first
of two families installed, in the order that read best in bench/legibility.py:

- Helvetica: Nimbus Sans (URW base 35, Debian fonts-urw-base35, the face Ghostscript
  uses), else Liberation Sans (fonts-liberation);
- Times: Liberation Serif, else Nimbus Roman;
- Courier: Liberation Mono, else Nimbus Mono PS (heavier strokes than URW's Courier,
  which is drawn with a hairline pen and thins out at 98 lines per inch).

URW's faces are taken as OpenType (CFF) files, which PDFium draws with crisper stems
at fax resolutions than the same faces' Type 1 files. Every other request (a
non-embedded Verdana, a CJK font) goes on to PDFium's own lookup, as before. Symbol
and ZapfDingbats are always PDFium's built-in faces (PDFium does not ask for them).
For a family with neither face installed, PDFium's built-in substitutes are used and
``gatewayd check-config`` warns.

PDFium keeps one font interface per process: :func:`install` runs in every render
worker when it starts and before any document is opened in a process (``open_pdf``
calls it; it does its work once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gatewayd.render import fonts

_STYLES = ("Regular", "Bold", "Italic", "BoldItalic")


@dataclass(frozen=True, slots=True)
class Face:
    """A family of four files (roman, bold, italic, bold italic) for one standard font."""

    name: str  # as people know it
    package: str  # the Debian package
    stem: str  # file names are {stem}-{style}{suffix}
    suffix: str

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(f"{self.stem}-{style}{self.suffix}" for style in _STYLES)


_URW, _LIBERATION = "fonts-urw-base35", "fonts-liberation"
# The standard family, the names PDFium asks for (in _STYLES' order), the faces to
# draw it with, first choice first.
STANDARD: dict[str, tuple[tuple[str, ...], tuple[Face, ...]]] = {
    "Helvetica": (
        ("Helvetica", "Helvetica-Bold", "Helvetica-Oblique", "Helvetica-BoldOblique"),
        (
            Face("Nimbus Sans", _URW, "NimbusSans", ".otf"),
            Face("Liberation Sans", _LIBERATION, "LiberationSans", ".ttf"),
        ),
    ),
    "Times": (
        ("Times-Roman", "Times-Bold", "Times-Italic", "Times-BoldItalic"),
        (
            Face("Liberation Serif", _LIBERATION, "LiberationSerif", ".ttf"),
            Face("Nimbus Roman", _URW, "NimbusRoman", ".otf"),
        ),
    ),
    "Courier": (
        ("Courier", "Courier-Bold", "Courier-Oblique", "Courier-BoldOblique"),
        (
            Face("Liberation Mono", _LIBERATION, "LiberationMono", ".ttf"),
            Face("Nimbus Mono PS", _URW, "NimbusMonoPS", ".otf"),
        ),
    ),
}
CJK_CHARSETS = frozenset({128, 129, 134, 136})  # ShiftJIS, Hangul, GB2312, Big5
# The families whose text at normal resolution is drawn by FreeType at its true size
# (pdf_text), as Ghostscript draws it: that brought Helvetica 8-12 pt to Ghostscript's
# figures in bench/legibility.py, while Times and Courier (Liberation's TrueType faces)
# read better as PDFium draws them (Times 10: 99.0 against 98.7 % of characters).
TRUE_SIZE = ("Helvetica",)


@dataclass(frozen=True, slots=True)
class Found:
    """The faces that draw the standard fonts here: by family (Helvetica, Times,
    Courier) the face and its directory, None where neither is installed; and the file
    for each standard name."""

    families: dict[str, tuple[Face, Path] | None]
    paths: dict[str, Path]

    @property
    def missing(self) -> list[str]:
        return [name for name, found in self.families.items() if found is None]

    @property
    def true_size(self) -> dict[str, Path]:
        """The files for the standard names whose text is drawn at its true size at
        normal resolution (``pdf_text``): Helvetica's."""
        names = {name for family in TRUE_SIZE for name in STANDARD[family][0]}
        return {name: path for name, path in self.paths.items() if name in names}


def find() -> Found:
    """For each standard family, the first face with its four files installed."""
    families: dict[str, tuple[Face, Path] | None] = {}
    paths: dict[str, Path] = {}
    for family, (names, faces) in STANDARD.items():
        families[family] = None
        for face in faces:
            files = [fonts.find(name) for name in face.files]
            if all(files):
                found = [f for f in files if f is not None]
                families[family] = (face, found[0].parent)
                paths.update(zip(names, found, strict=True))
                break
    return Found(families, paths)
