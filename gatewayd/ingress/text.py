"""Text from email bodies: HTML to clean text, and an email body to the text of an SMS
(signature, quoted reply and "Sent from my phone" footers removed). Pure functions."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {
        "p", "div", "br", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5",
        "h6", "blockquote", "pre", "hr", "section", "article", "header", "footer", "dt",
        "dd", "address",
    }
)  # fmt: skip
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
    return _squeeze_blank_lines("\n".join(lines)).strip()


def _squeeze_blank_lines(text: str) -> str:
    return re.sub(r"\n{3,}", "\n\n", text)


# Lines that start the quoted message in a reply (the reply is above them).
_REPLY_HEADERS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^On .{1,200}wrote:\s*$",  # Gmail, Apple Mail, Thunderbird
        r"^Am .{1,200}schrieb.{0,100}:\s*$",  # the same, in German
        r"^Le .{1,200}a écrit\s*:\s*$",
        r"^-{2,}\s*Original Message\s*-{2,}\s*$",  # Outlook
        r"^-{2,}\s*Ursprüngliche Nachricht\s*-{2,}\s*$",
        r"^_{20,}\s*$",  # Outlook's rule before the quoted header block
        r"^From:\s.+\n(Sent|Date|To|Subject):\s",  # a quoted header block
        r"^Von:\s.+\n(Gesendet|Datum|An|Betreff):\s",
    )
]
# Footers phones and mail apps add by themselves (a device name and a word or two more).
_DEVICE = (
    r"(iPhone|iPad|iPod|Android|Samsung|Galaxy|Pixel|Huawei|Xiaomi|Nokia|Sony|BlackBerry|"
    r"Fairphone|OnePlus|Motorola|mobile|phone|smartphone|Handy|Smartphone|Mobiltelefon)"
    r"( [\w-]+){0,2}"
)
_FOOTERS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        rf"^Sent from my {_DEVICE}$",
        r"^Sent from (Mail|Outlook) for \w+$",
        r"^Get Outlook for (iOS|Android)$",
        r"^Sent (from|with) (Yahoo Mail|ProtonMail|Proton Mail)( for \w+)?$",
        rf"^(Von meinem|Gesendet von meinem) {_DEVICE}( gesendet)?$",
        rf"^Envoyé de mon {_DEVICE}$",
    )
]


def clean_sms_text(body: str) -> str:
    """The part of an email body that is the SMS: what the sender wrote, without the
    signature (from a "-- " line), the quoted message of a reply, quoted lines, and the
    footers mail apps add. Trailing spaces and blank lines go too."""
    text = body.replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if line.rstrip() in ("--", "-- "):
            break  # the signature separator (RFC 3676): everything below is signature
        pair = "\n".join(lines[index : index + 2])
        if any(p.match(line) or p.match(pair) for p in _REPLY_HEADERS):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    while kept and (not kept[-1].strip() or any(p.match(kept[-1].strip()) for p in _FOOTERS)):
        kept.pop()
    return _squeeze_blank_lines("\n".join(kept)).strip()
