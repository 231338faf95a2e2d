"""Faxes received over SIP, into the mailbox of the user whose ``fax_number`` was
called.

- ``owner``: the called number is read from the request URI, the To header and
  P-Called-Party-ID (trunks put it in different places), made E.164 with the SMTP
  default region, and matched against ``[[users]] fax_number``; no match is a 404.
- ``caller``: P-Asserted-Identity, else From, as E.164 when it is a number.
- ``keep``: after phase E a received fax (at least one page) is first made durable
  in ``<data_dir>/fax/inbound`` (the TIFF spandsp wrote and a JSON note of who, from
  whom, how), then stored as an Inbound Fax, status Received, Unread, faxPageCount,
  with the TIFF and a PDF of it (Pillow: CCITT G4 inside, at the fax's resolution) as
  RenderedDocument attachments, and a ``received`` event naming the call. Both files
  go once the message is committed. A mailbox that cannot take it now leaves them;
  ``recover`` (at start-up and every few minutes) stores what was left, so a fax the
  far end saw confirmed is not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import phonenumbers
from PIL import Image

from gatewayd.config.settings import Settings, User
from gatewayd.errors import GatewayError
from gatewayd.fax.sip.message import NameAddr, Request, SipParseError, SipUri
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message, NewAttachment, NewMessage, Party
from gatewayd.model import AttachmentType, Direction, FaxResolution, MessageType

log = get_logger("gatewayd.sip")

_SEPARATORS = re.compile(r"[\s().-]")
STORE_TRIES = 3


def e164(text: str, region: str) -> str | None:
    digits = _SEPARATORS.sub("", text.split(";", maxsplit=1)[0])
    if not re.fullmatch(r"\+?[0-9]{3,20}", digits):
        return None
    tries = [digits] if digits.startswith("+") else [digits, "+" + digits]
    for candidate in tries:
        with contextlib.suppress(phonenumbers.NumberParseException):
            number = phonenumbers.parse(candidate, region)
            if phonenumbers.is_possible_number(number):
                return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return None


def _user_part(value: str | None) -> str:
    if not value:
        return ""
    try:
        return NameAddr.parse(value).sip_uri.user
    except SipParseError:
        return ""


@dataclass(frozen=True, slots=True)
class Note:
    """What is known about a received fax besides its pages (kept beside the TIFF)."""

    extension_id: int
    caller: str
    called: str
    call_id: str
    mode: str
    pages: int
    seconds: float
    remote_station: str
    code: int
    result: str
    bad_rows: int


class InboundFaxes:
    def __init__(self, mailbox: Mailbox, settings: Settings) -> None:
        self.mailbox = mailbox
        self.spool = settings.mailbox.data_dir / "fax" / "inbound"
        self.settings = settings
        self._owners: dict[str, User] = {}
        self.reload(settings)

    def reload(self, settings: Settings) -> None:
        self.settings = settings
        self._owners = {u.fax_number: u for u in settings.users if u.fax_number}

    def owner(self, request: Request) -> tuple[User, str] | None:
        """The user called and their number, or None (answered 404)."""
        region = self.settings.smtp.default_region
        candidates = []
        with contextlib.suppress(SipParseError):
            candidates.append(SipUri.parse(request.uri).user)
        candidates.append(_user_part(request.headers.get("To")))
        candidates.append(_user_part(request.headers.get("P-Called-Party-ID")))
        for candidate in candidates:
            number = e164(candidate, region) if candidate else None
            if number and number in self._owners:
                return self._owners[number], number
        return None

    def caller(self, request: Request) -> str:
        region = self.settings.smtp.default_region
        for header in ("P-Asserted-Identity", "From"):
            user = _user_part(request.headers.get(header))
            if user:
                return e164(user, region) or user
        return ""

    def spool_path(self, call_id: str) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9]", "_", call_id)[:60]
        return self.spool / f"{name}-{os.getpid()}.tif"

    # -- storing ---------------------------------------------------------------------

    async def keep(self, tiff: Path, note: Note) -> Message | None:
        """Make the received fax durable, then store it; None if the mailbox could not
        take it now (``recover`` stores it later)."""
        await asyncio.to_thread(_write_note, tiff, note)
        for attempt in range(STORE_TRIES):
            try:
                return await self._store(tiff, note)
            except (GatewayError, OSError) as exc:
                log.error(
                    "sip.fax_not_stored",
                    call_id=note.call_id,
                    attempt=attempt + 1,
                    error=str(exc),
                    kept=str(tiff),
                )
                await asyncio.sleep(2.0 * (attempt + 1))
        return None

    async def recover(self) -> int:
        """Store faxes an earlier attempt (or life) left in the spool; how many."""
        if not self.spool.exists():
            return 0
        stored = 0
        for note_path in sorted(self.spool.glob("*.json")):
            tiff = note_path.with_suffix(".tif")
            try:
                note = Note(**json.loads(note_path.read_text()))
            except (OSError, ValueError, TypeError) as exc:
                log.error("sip.fax_note_unreadable", file=str(note_path), error=str(exc))
                continue
            if not tiff.exists():
                note_path.unlink(missing_ok=True)
                continue
            try:
                await self._store(tiff, note)
            except (GatewayError, OSError) as exc:
                log.error("sip.fax_not_stored", call_id=note.call_id, error=str(exc))
                return stored
            stored += 1
        return stored

    async def _store(self, tiff: Path, note: Note) -> Message:
        user = self.settings.user_by_extension(note.extension_id)
        if user is None:
            raise GatewayError(f"extension {note.extension_id} is no longer configured")
        pdf, y_dpi = await asyncio.to_thread(as_pdf, tiff)
        new = NewMessage(
            account_id=user.account_id,
            extension_id=user.extension_id,
            type=MessageType.FAX,
            direction=Direction.INBOUND,
            from_=Party(phone_number=note.caller or None),
            to=(
                Party(
                    phone_number=note.called,
                    extension_number=user.extension_number,
                    name=user.name or None,
                ),
            ),
            origin="sip",
            attachments=(
                NewAttachment(
                    AttachmentType.RENDERED_DOCUMENT, "image/tiff", path=tiff, file_name="fax.tif"
                ),
                NewAttachment(
                    AttachmentType.RENDERED_DOCUMENT,
                    "application/pdf",
                    data=pdf,
                    file_name="fax.pdf",
                ),
            ),
            fax_resolution=FaxResolution.HIGH if y_dpi > 150 else FaxResolution.LOW,
            fax_page_count=note.pages,
        )
        message = await self.mailbox.create(new)
        result = "" if note.code == 0 else f"; the call ended with T.30 code {note.code}: "
        await self.mailbox.record_event(
            message.id,
            "received",
            f"received over SIP ({note.mode}): {note.pages} pages from "
            f"{note.caller or 'an unknown caller'}{result}{note.result if note.code else ''}",
            detail=asdict(note),
        )
        log.info(
            "sip.fax_received",
            message_id=message.id,
            extension_id=user.extension_id,
            pages=note.pages,
            caller=note.caller,
            call_id=note.call_id,
        )
        for path in (tiff, tiff.with_suffix(".json")):
            path.unlink(missing_ok=True)
        return message


def _write_note(tiff: Path, note: Note) -> None:
    path = tiff.with_suffix(".json")
    temporary = path.with_name(f".{path.name}.part")
    with open(temporary, "w") as out:
        json.dump(asdict(note), out)
        out.flush()
        os.fsync(out.fileno())
    with open(tiff, "rb") as pages:
        os.fsync(pages.fileno())
    os.replace(temporary, path)


def as_pdf(tiff: Path) -> tuple[bytes, float]:
    """The fax as a PDF at its resolution (the first page's; a fax keeps one) and its
    vertical dpi."""
    with Image.open(tiff) as image:
        x_dpi, y_dpi = (float(v) for v in image.info.get("dpi", (204.0, 196.0)))
        pages = []
        for index in range(getattr(image, "n_frames", 1)):
            image.seek(index)
            pages.append(image.convert("1"))
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=pages[1:], dpi=(x_dpi, y_dpi))
    return out.getvalue(), y_dpi
