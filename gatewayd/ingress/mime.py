"""An email, taken apart: who it is from, its subject, the body as text, and the
documents it carries. Pure: bytes in, a ``Mail`` out.

The stdlib ``email`` parser runs with the compat32 policy, which leaves headers as
text; the few headers used here (From, Subject, Content-*) are decoded explicitly
(RFC 2047, RFC 2231, raw UTF-8 under SMTPUTF8). policy.default would decode every
header of every part through its header registry, 40 times slower on an SMS mail.
The parse stops at ``smtp.max_mime_depth`` levels and ``smtp.max_mime_parts`` parts.

How parts are read, following what mail programs send:
- multipart/alternative: the text/plain version when there is one, else the HTML one
  (converted to text);
- multipart/related: its root is body; the rest are the HTML's inline resources
  (a signature logo, say), not documents;
- multipart/mixed and the rest: text parts that are not attachments add to the body
  (Apple Mail puts text, image, text); everything else is a document, in order;
- message/rfc822 (a forwarded mail): its documents come along, and its text becomes a
  plain-text document headed by its From, Date and Subject;
- signatures (S/MIME, PGP) are skipped; winmail.dat (TNEF) is noted, for a refusal.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.header import Header, decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from gatewayd.admission.mime import DEFAULT_LIMITS, MimeLimits, parse
from gatewayd.render.html import html_to_text
from gatewayd.render.kinds import is_tnef

_SIGNATURES = frozenset(
    {
        "application/pkcs7-signature",
        "application/x-pkcs7-signature",
        "application/pgp-signature",
        "application/pgp-keys",
    }
)
_TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
_FAX_HEADERS = ("x-fax-resolution", "x-fax-cover")
_CID_PLACEHOLDER = re.compile(r"^\[cid:[^\]\n]+\]\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Document:
    content_type: str  # as the mail declared it, lowercase
    file_name: str | None
    data: bytes
    forwarded: bool = False


@dataclass(frozen=True, slots=True)
class Mail:
    from_addresses: tuple[str, ...]
    subject: str
    text: str  # the body as plain text ("" when there is none)
    documents: tuple[Document, ...]
    headers: Mapping[str, str] = field(default_factory=dict)  # X-Fax-* headers, lowercase
    tnef: bool = False


@dataclass
class _Found:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    documents: list[Document] = field(default_factory=list)
    tnef: bool = False


def _text_of(part: Message) -> str:
    """A text part's content, decoded by its charset; an unknown or lying charset falls
    back to UTF-8, then Latin-1, so a body is never lost to a label. format=flowed
    text (RFC 3676) is unwrapped, and Outlook's [cid:...] image placeholders go."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    charset = (part.get_content_charset() or "us-ascii").lower()
    text = None
    for candidate in (charset, "utf-8"):
        try:
            text = data.decode(candidate)
            break
        except (LookupError, UnicodeDecodeError):
            continue
    if text is None:
        text = data.decode("latin-1")
    text = text.replace("\r\n", "\n")
    if str(part.get_param("format") or "").lower() == "flowed":
        text = _unflow(text, delsp=str(part.get_param("delsp") or "").lower() == "yes")
    # The pattern only where it can match: over a huge body it is one long hold of the GIL.
    return _CID_PLACEHOLDER.sub("", text) if "[cid:" in text else text


def _unflow(text: str, *, delsp: bool) -> str:
    """Join RFC 3676 soft line breaks (a line ending in a space continues)."""
    out: list[str] = []
    joining = False
    for raw in text.split("\n"):
        line = raw[1:] if raw.startswith(" ") else raw  # space-stuffing
        if joining:
            out[-1] += line
        else:
            out.append(line)
        joining = line.endswith(" ") and line.rstrip() != "--"
        if joining and delsp:
            out[-1] = out[-1][:-1]
    return "\n".join(out)


def _bytes_of(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _declared_filename(part: Message) -> str | None:
    """``get_filename()``: a Content-Disposition ``filename`` or a Content-Type ``name``.
    With no Content-Disposition and no "name" in the Content-Type, there is none to
    read (the common text part), and no parameters are parsed for it."""
    ctype = part.get("content-type")
    if part.get("content-disposition") is None and (
        ctype is None or (isinstance(ctype, str) and "name" not in ctype.lower())
    ):
        return None
    return part.get_filename()


def _filename(declared: str | None) -> str | None:
    """The part's file name (RFC 2231 parameters, and the RFC 2047 words Outlook and
    Gmail put in them)."""
    return header_text(declared) or None if declared is not None else None


def _is_attachment(part: Message, declared: str | None) -> bool:
    disposition = part.get_content_disposition()
    return disposition == "attachment" or (declared is not None and disposition != "inline")


def _walk(part: Message, found: _Found) -> None:
    ctype = part.get_content_type()
    if ctype == "message/rfc822":  # before is_multipart(), which is true for it too
        inner = part.get_payload()
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            _forwarded(inner[0], found)
        return
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            chosen = _preferred_alternative(children)
            if chosen is not None:
                _walk(chosen, found)
        elif ctype == "multipart/related":
            if children:
                _walk(_related_root(part, children), found)
        else:
            for child in children:
                _walk(child, found)
        return
    declared = _declared_filename(part)
    filename = _filename(declared)
    if ctype in _TNEF_TYPES or (filename or "").lower() == "winmail.dat":
        found.tnef = True
        return
    if ctype in _SIGNATURES:
        return
    if ctype in ("text/plain", "text/html") and not _is_attachment(part, declared):
        (found.plain if ctype == "text/plain" else found.html).append(_text_of(part))
        return
    data = _bytes_of(part)
    if is_tnef(data):
        found.tnef = True
        return
    found.documents.append(Document(ctype, filename, data))


def _preferred_alternative(children: list[Message]) -> Message | None:
    for wanted in ("text/plain", "text/html"):
        for child in children:
            if child.get_content_type() == wanted:
                return child
    return next((c for c in children if c.is_multipart()), children[0] if children else None)


def _related_root(part: Message, children: list[Message]) -> Message:
    start = part.get_param("start")
    if isinstance(start, str):
        for child in children:
            if child.get("Content-ID", "").strip() == start.strip():
                return child
    return children[0]


def _forwarded(inner: Message, found: _Found) -> None:
    """A forwarded mail is faxed as it would be printed: its text (headed by From, Date
    and Subject), then its documents."""
    mail = _extract(inner)
    if mail.text:
        heading = "\n".join(
            f"{name}: {header_text(inner[name])}"
            for name in ("From", "Date", "Subject")
            if inner[name]
        )
        body = f"---------- Forwarded message ----------\n{heading}\n\n{mail.text}\n"
        found.documents.append(
            Document("text/plain", "forwarded.txt", body.encode("utf-8"), forwarded=True)
        )
    found.documents.extend(
        Document(d.content_type, d.file_name, d.data, forwarded=True) for d in mail.documents
    )
    found.tnef = found.tnef or mail.tnef


def header_text(value: object) -> str:
    """A header as text: RFC 2047 encoded words decoded, raw UTF-8 (SMTPUTF8) kept,
    folding undone. Undecodable words are kept as they came rather than lost."""
    if value is None:
        return ""
    if isinstance(value, Header):  # raw 8-bit bytes (SMTPUTF8): compat32 wraps them so
        text = "".join(
            _decoded(chunk, charset) if isinstance(chunk, bytes) else chunk
            for chunk, charset in decode_header(value)
        )
        return " ".join(text.split())
    text = str(value)
    if "=?" in text:
        with contextlib.suppress(ValueError, LookupError, UnicodeDecodeError):
            text = str(make_header(decode_header(text)))
    return " ".join(text.split())


def _decoded(chunk: bytes, charset: str | None) -> str:
    try:
        return chunk.decode(charset if charset not in (None, "unknown-8bit") else "utf-8")
    except (LookupError, UnicodeDecodeError):
        return chunk.decode("utf-8", "replace")


# A From that is one bare address, local@domain in dot-atoms (RFC 5322 3.4.1): what
# getaddresses would find in it is itself, so it is not parsed (~8 µs per mail).
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_BARE_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _addresses(message: Message) -> tuple[str, ...]:
    values = [header_text(v) for v in message.get_all("From", [])]
    if len(values) == 1 and _BARE_ADDRESS.fullmatch(values[0]):
        return (values[0].lower(),)
    found = getaddresses(values)
    return tuple(address.lower() for _, address in found if "@" in address)


def _extract(message: Message) -> Mail:
    found = _Found()
    _walk(message, found)
    if found.plain:
        text = "\n\n".join(t.strip("\n") for t in found.plain)
    else:
        text = "\n\n".join(html_to_text(h) for h in found.html)
    subject = header_text(message.get("Subject"))
    headers = {name: header_text(message[name]) for name in _FAX_HEADERS if message[name]}
    return Mail(
        from_addresses=_addresses(message),
        subject=subject,
        text=text.replace("\r\n", "\n").strip(),
        documents=tuple(found.documents),
        headers=headers,
        tnef=found.tnef,
    )


def parse_mail(raw: bytes, limits: MimeLimits = DEFAULT_LIMITS) -> Mail:
    """The mail, or Refusal NESTED_TOO_DEEPLY / TOO_MANY_PARTS (gatewayd/admission/mime.py).
    Blocking for a large mail: the door runs it in a thread."""
    return _extract(parse(raw, limits))
