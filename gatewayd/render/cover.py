"""The cover page: who sends to whom, when, about what, how many pages, and the note.
A PDF made with reportlab, A4 or Letter, drawn like any other page."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from gatewayd.render import fonts
from gatewayd.render.textdoc import MARGIN, PAGES, width_of, wrap_words


@dataclass(frozen=True, slots=True)
class CoverSheet:
    recipient_number: str
    sender_name: str = ""
    sender_email: str = ""
    sender_fax: str = ""
    recipient_name: str = ""
    subject: str = ""
    note: str = ""
    sent_at: datetime | None = None  # with a time zone


def _draw(
    canvas: Canvas, text: str, x: float, y: float, *, family: tuple[fonts.Font, ...], size: float
) -> None:
    for font, piece in fonts.runs(text, family):
        canvas.setFont(font.name, size)
        canvas.drawString(x, y, piece)
        x += stringWidth(piece, font.name, size)


def when(moment: datetime) -> str:
    """``26 November 2026, 15:30 CET (UTC+01:00)``; ``..., 14:30 UTC``."""
    offset = moment.strftime("%z")
    utc = "UTC" if offset in ("", "+0000") else f"UTC{offset[:3]}:{offset[3:]}"
    zone = moment.tzname() or ""
    named = zone and not zone.startswith(("+", "-", "UTC"))
    return f"{moment.day} {moment:%B %Y, %H:%M} " + (f"{zone} ({utc})" if named else utc)


def cover_pdf(sheet: CoverSheet, total_pages: int, paper: str) -> bytes:
    """The cover page as a one-page PDF; ``total_pages`` counts the cover too."""
    out = io.BytesIO()
    page_w, page_h = PAGES[paper]
    canvas = Canvas(out, pagesize=(page_w, page_h))
    sans, bold = fonts.family("sans"), fonts.family("bold")
    y = page_h - MARGIN - 40
    _draw(canvas, "FAX", MARGIN, y, family=bold, size=40)
    y -= 20
    canvas.setLineWidth(2)
    canvas.line(MARGIN, y, page_w - MARGIN, y)
    y -= 36
    recipient = sheet.recipient_number
    if sheet.recipient_name:
        recipient += f" ({sheet.recipient_name})"
    sender = ", ".join(x for x in (sheet.sender_name, sheet.sender_email) if x)
    rows = [
        ("To", recipient),
        ("From", sender),
        ("Fax", sheet.sender_fax),
        ("Date", when(sheet.sent_at) if sheet.sent_at else ""),
        ("Subject", sheet.subject),
        ("Pages", f"{total_pages} including this page"),
    ]
    label_width = max(width_of(label, bold, 13) for label, _ in rows) + 18
    value_width = page_w - 2 * MARGIN - label_width
    for label, value in rows:
        if not value:
            continue
        _draw(canvas, label, MARGIN, y, family=bold, size=13)
        for line in wrap_words(value, sans, 13, value_width):
            _draw(canvas, line, MARGIN + label_width, y, family=sans, size=13)
            y -= 19
        y -= 7
    if sheet.note:
        canvas.setLineWidth(0.8)
        canvas.line(MARGIN, y + 6, page_w - MARGIN, y + 6)
        y -= 16
        lines = [
            line
            for paragraph in sheet.note.replace("\r\n", "\n").split("\n")
            for line in wrap_words(paragraph, sans, 12, page_w - 2 * MARGIN)
        ]
        room = int((y - MARGIN - 20) // 16)
        for line in lines[:room]:
            _draw(canvas, line, MARGIN, y, family=sans, size=12)
            y -= 16
        if len(lines) > room:
            _draw(canvas, "(the note continues beyond this page)", MARGIN, y, family=sans, size=10)
    canvas.showPage()
    canvas.save()
    return out.getvalue()
