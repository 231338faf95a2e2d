"""An email body to the text of an SMS: the signature, the quoted reply and the "Sent
from my phone" footers removed. Pure. (HTML bodies become text in render/html.py.)"""

from __future__ import annotations

import io
import re

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
# Each list as one pattern, whose match is any of theirs: one match a line, not eight.
_REPLY_HEADER = re.compile("|".join(f"(?:{p.pattern})" for p in _REPLY_HEADERS), re.IGNORECASE)
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
_FOOTER = re.compile("|".join(f"(?:{p.pattern})" for p in _FOOTERS), re.IGNORECASE)


def clean_sms_text(body: str, enough: int | None = None) -> str:
    """The part of an email body that is the SMS: what the sender wrote, without the
    signature (from a "-- " line), the quoted message of a reply, quoted lines, and the
    footers mail apps add. Trailing spaces and blank lines go too.

    With ``enough``, reading stops as soon as what is kept is certain to be longer than
    ``enough`` characters: the text returned is then a beginning of the whole, itself
    longer than ``enough`` (at most one character longer), and the rest of the body is
    never looked at. A ten-megabyte body costs what its first lines cost, not seconds
    of processor time and long single operations that hold the GIL against the loop."""
    lines = (line.removesuffix("\n") for line in io.StringIO(body, newline=None))
    kept: list[str] = []
    counted = 0  # characters of the kept lines, without their outer spaces
    line = next(lines, None)
    while line is not None:
        following = next(lines, None)
        if line.rstrip() in ("--", "-- "):
            break  # the signature separator (RFC 3676): everything below is signature
        pair = line if following is None else f"{line}\n{following}"
        if _REPLY_HEADER.match(line) or _REPLY_HEADER.match(pair):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line.rstrip())
            solid = line.strip()
            counted += len(solid)
            # A line neither blank nor a footer stays, and so does all above it.
            if enough is not None and counted > enough and _stays(solid):
                return "\n".join(kept).strip()[: enough + 1]
        line = following
    while kept and not _stays(kept[-1].strip()):
        kept.pop()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()


def _stays(line: str) -> bool:
    """Whether a kept line (stripped) is in the text whatever follows it."""
    return bool(line) and not _FOOTER.match(line)
