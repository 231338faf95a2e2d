"""What a document is, told by its first bytes, never by its name.

A fax can carry PDF, PNG, JPEG, GIF, TIFF, BMP, WebP, plain text and HTML, and office
documents (Word, Excel, PowerPoint, OpenDocument, RTF) when LibreOffice is installed.
Pure. Both doors (SMTP and the API, through gatewayd/admission) sniff with it, and the
renderer chooses its path by the kind.

A zip (OpenDocument, OOXML) is looked into with bounds, since a small one can claim
millions of members or inflate to gigabytes: more than ``ZIP_MAX_MEMBERS`` members (as
its end record says, before the directory is read) is no document, and of an
OpenDocument's ``mimetype`` member at most ``ZIP_MIMETYPE_BYTES`` are inflated.
Blocking (zip directories): the doors call it in a thread.
"""

from __future__ import annotations

import io
import struct
import zipfile
from enum import StrEnum


class Kind(StrEnum):
    """A document kind, named by the content type it is stored under."""

    PDF = "application/pdf"
    PNG = "image/png"
    JPEG = "image/jpeg"
    GIF = "image/gif"
    TIFF = "image/tiff"
    BMP = "image/bmp"
    WEBP = "image/webp"
    TEXT = "text/plain"
    HTML = "text/html"
    DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
    ODT = "application/vnd.oasis.opendocument.text"
    ODS = "application/vnd.oasis.opendocument.spreadsheet"
    ODP = "application/vnd.oasis.opendocument.presentation"
    RTF = "application/rtf"
    DOC = "application/msword"
    XLS = "application/vnd.ms-excel"
    PPT = "application/vnd.ms-powerpoint"


IMAGES = frozenset({Kind.PNG, Kind.JPEG, Kind.GIF, Kind.TIFF, Kind.BMP, Kind.WEBP})
OFFICE = frozenset(
    {Kind.DOCX, Kind.XLSX, Kind.PPTX, Kind.ODT, Kind.ODS, Kind.ODP, Kind.RTF}
    | {Kind.DOC, Kind.XLS, Kind.PPT}
)
ALWAYS_SUPPORTED = frozenset(set(Kind) - OFFICE)
# How a refusal names them.
LABELS = {
    Kind.PDF: "PDF",
    Kind.PNG: "PNG",
    Kind.JPEG: "JPEG",
    Kind.GIF: "GIF",
    Kind.TIFF: "TIFF",
    Kind.BMP: "BMP",
    Kind.WEBP: "WebP",
    Kind.TEXT: "plain text",
    Kind.HTML: "HTML",
    Kind.DOCX: "Word (DOCX)",
    Kind.XLSX: "Excel (XLSX)",
    Kind.PPTX: "PowerPoint (PPTX)",
    Kind.ODT: "OpenDocument text",
    Kind.ODS: "OpenDocument spreadsheet",
    Kind.ODP: "OpenDocument presentation",
    Kind.RTF: "RTF",
    Kind.DOC: "Word 97 (DOC)",
    Kind.XLS: "Excel 97 (XLS)",
    Kind.PPT: "PowerPoint 97 (PPT)",
}

_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # Office 97 compound file
_TNEF = b"\x78\x9f\x3e\x22"
_OOXML = {"word/": Kind.DOCX, "xl/": Kind.XLSX, "ppt/": Kind.PPTX}
_ODF = {
    b"application/vnd.oasis.opendocument.text": Kind.ODT,
    b"application/vnd.oasis.opendocument.spreadsheet": Kind.ODS,
    b"application/vnd.oasis.opendocument.presentation": Kind.ODP,
}
_OLE_BY_DECLARED = {Kind.DOC.value: Kind.DOC, Kind.XLS.value: Kind.XLS, Kind.PPT.value: Kind.PPT}
ZIP_MAX_MEMBERS = 10_000  # a long office document has a few hundred
ZIP_MIMETYPE_BYTES = 256  # the longest ODF mimetype is 63 bytes
_EOCD = b"PK\x05\x06"
_EOCD_SIZE = 22


def is_tnef(data: bytes) -> bool:
    """A winmail.dat (Outlook's TNEF wrapper)."""
    return data.startswith(_TNEF)


def _zip_members(data: bytes) -> int | None:
    """How many members a zip's end record claims (None: no end record found). Read
    from the end of the data, without the central directory (ZIP64 archives claim
    0xFFFF here: counted as too many, no office document needs ZIP64)."""
    at = data.rfind(_EOCD, max(0, len(data) - _EOCD_SIZE - 0xFFFF))
    if at < 0 or len(data) < at + _EOCD_SIZE:
        return None
    (total,) = struct.unpack_from("<H", data, at + 10)
    return int(total)


def _zip_kind(data: bytes) -> Kind | None:
    members = _zip_members(data)
    if members is None or members > ZIP_MAX_MEMBERS or members == 0xFFFF:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = archive.namelist()
            if "mimetype" in names:
                with archive.open("mimetype") as member:
                    return _ODF.get(member.read(ZIP_MIMETYPE_BYTES).strip())
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, RuntimeError, ValueError):
        # RuntimeError: an encrypted member; ValueError, EOFError: a broken stream
        return None
    for prefix, kind in _OOXML.items():
        if any(name.startswith(prefix) for name in names) and "[Content_Types].xml" in names:
            return kind
    return None


def _looks_like_text(data: bytes) -> bool:
    sample = data[:8192]
    if b"\x00" in sample:
        return False
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(sample) - 4:  # not just a character cut at the sample's end
            try:
                sample.decode("cp1252")
            except UnicodeDecodeError:
                return False
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls <= len(sample) // 100


def sniff(data: bytes, declared: str) -> Kind | None:
    """The kind of ``data``, from its magic bytes; ``declared`` (the MIME type the mail
    gave) only decides between plain text and HTML, and names Office 97 files."""
    head = data[:16]
    if head.startswith(b"%PDF-") or data[:1024].find(b"%PDF-") >= 0:
        return Kind.PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Kind.PNG
    if head.startswith(b"\xff\xd8\xff"):
        return Kind.JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return Kind.GIF
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return Kind.TIFF
    if head.startswith(b"BM") and len(data) > 26:
        return Kind.BMP
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return Kind.WEBP
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if head.startswith(b"{\\rtf"):
        return Kind.RTF
    if head.startswith(_OLE):
        return _OLE_BY_DECLARED.get(declared)
    if declared in ("text/plain", "text/html") and _looks_like_text(data):
        lowered = data[:2048].lstrip().lower()
        if declared == "text/html" or lowered.startswith((b"<!doctype html", b"<html")):
            return Kind.HTML
        return Kind.TEXT
    return None


def supported(libreoffice: bool) -> frozenset[Kind]:
    return ALWAYS_SUPPORTED | OFFICE if libreoffice else ALWAYS_SUPPORTED


def describe(kinds: frozenset[Kind]) -> str:
    """``PDF, PNG, ... and HTML`` for a refusal."""
    labels = [LABELS[k] for k in Kind if k in kinds]
    return ", ".join(labels[:-1]) + " and " + labels[-1]
