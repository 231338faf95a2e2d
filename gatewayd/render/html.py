"""HTML as readable plain text: blocks become lines, scripts and styles vanish, entities
are decoded. Pure. Used for an HTML mail body (the SMTP door) and for an HTML document
set as printed pages (render/textdoc.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {"p", "div", "br", "hr", "pre", "blockquote", "address"}
    | {"ul", "ol", "dt", "dd", "table", "tr"}
    | {"h1", "h2", "h3", "h4", "h5", "h6"}
    | {"section", "article", "header", "footer"}
)
_SKIPPED_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skipping = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag == "pre":
            self._pre += 1
            self.chunks.append("\n")
        elif tag == "li":
            self.chunks.append("\n- ")
        elif tag in ("td", "th"):
            self.chunks.append("\t")
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(0, self._skipping - 1)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self.chunks.append("\n")
        elif tag in _BLOCK_TAGS:
            self.chunks.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr"):
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        self.chunks.append(data if self._pre else re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body: blocks become lines, scripts and styles
    vanish, entities are decoded, runs of blank lines are squeezed."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip(" \t\xa0") for line in "".join(parser.chunks).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
