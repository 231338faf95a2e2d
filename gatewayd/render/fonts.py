"""Fonts for text pages and cover pages, found when gatewayd runs.

DejaVu (Debian's fonts-dejavu-core) covers Latin, Greek, Cyrillic, Armenian, Georgian,
Hebrew and Arabic letters, and many symbols. Other fonts found on the machine (Noto,
say, for CJK) are tried for what DejaVu lacks. Without DejaVu, reportlab's own Vera is
used, with a warning in ``gatewayd check-config``. A character no font has is never
left blank: it is written as its code point, ``[U+4E2D]``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import reportlab
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

SEARCH_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".local/share/fonts",
    Path.home() / ".fonts",
)
DEJAVU = {
    "sans": ("DejaVuSans.ttf", "Vera.ttf"),
    "bold": ("DejaVuSans-Bold.ttf", "VeraBd.ttf"),
    "mono": ("DejaVuSansMono.ttf", "Vera.ttf"),
}
# Fonts worth trying for characters DejaVu lacks, in order.
FALLBACKS = (
    "NotoSansCJK-Regular.ttc",
    "NotoSansCJKsc-Regular.otf",
    "NotoSans-Regular.ttf",
    "NotoSansSymbols2-Regular.ttf",
    "FreeSans.ttf",
    "unifont.ttf",
)


@functools.lru_cache(maxsize=64)
def find(file_name: str) -> Path | None:
    """A font file by name, in the usual font directories (or via fc-match)."""
    for root in SEARCH_DIRS:
        if root.is_dir():
            for found in root.rglob(file_name):
                return found
    if shutil.which("fc-match"):
        name = file_name.rsplit(".", 1)[0]
        result = subprocess.run(
            ["fc-match", "-f", "%{file}", name],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        path = Path(result.stdout.strip())
        if result.returncode == 0 and path.name == file_name and path.is_file():
            return path
    return None


def _bundled(file_name: str) -> Path:
    return Path(os.path.dirname(reportlab.__file__)) / "fonts" / file_name


@dataclass(frozen=True, slots=True)
class Font:
    name: str  # as registered with reportlab
    path: Path
    covered: frozenset[int]

    def has(self, char: str) -> bool:
        return ord(char) in self.covered or char in "\n\t "


@functools.lru_cache(maxsize=32)
def load(path: Path) -> Font | None:
    name = f"gw-{path.stem}"
    try:
        font = TTFont(name, str(path))
    except (TTFError, OSError):
        return None
    pdfmetrics.registerFont(font)
    return Font(name, path, frozenset(font.face.charToGlyph))


@functools.lru_cache(maxsize=4)
def family(style: str) -> tuple[Font, ...]:
    """The fonts to write ``style`` (sans, bold, mono) with, first choice first."""
    primary, bundled = DEJAVU[style]
    paths = [find(primary) or _bundled(bundled)]
    paths += [p for p in (find(name) for name in FALLBACKS) if p is not None]
    fonts = tuple(f for f in (load(p) for p in paths) if f is not None)
    if not fonts:
        raise RuntimeError("no usable font: install fonts-dejavu-core")
    return fonts


def runs(text: str, fonts: tuple[Font, ...]) -> Iterator[tuple[Font, str]]:
    """``text`` cut into runs that one font can write; characters no font has become
    ``[U+XXXX]`` in the first font."""
    current: Font | None = None
    buffer: list[str] = []
    for char in text:
        font = next((f for f in fonts if f.has(char)), None)
        piece = char
        if font is None:
            font, piece = fonts[0], f"[U+{ord(char):04X}]"
        if font is not current and buffer:
            assert current is not None
            yield current, "".join(buffer)
            buffer = []
        current = font
        buffer.append(piece)
    if buffer and current is not None:
        yield current, "".join(buffer)
