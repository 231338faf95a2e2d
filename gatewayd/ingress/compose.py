"""From an accepted email to the mailbox messages it becomes: one per destination.

SMS: the cleaned body (or, when the body is empty and the number is in the address,
the subject) is the text; it must fit in ``sms.max_parts`` parts.
Fax: the documents in order, sniffed by content; the body is the cover-page note and
the subject its subject. ``X-Fax-Resolution: fine|normal`` and ``X-Fax-Cover: yes|no``
override the config for one mail. A note longer than a cover page holds (1024
characters) is faxed as a text document after the cover instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gatewayd.config.settings import Settings, User
from gatewayd.destinations import Destination
from gatewayd.errors import RejectedMessage
from gatewayd.ingress import replies
from gatewayd.ingress.mime import Document, Mail
from gatewayd.ingress.sniff import Kind, describe, sniff, supported
from gatewayd.ingress.text import clean_sms_text
from gatewayd.mailbox import NewAttachment, NewMessage, Party
from gatewayd.model import AttachmentType, Direction, FaxResolution, MessageType
from gatewayd.sms.encoding import count_parts

COVER_NOTE_LIMIT = 1024  # coverPageText's limit in the message store
ORIGIN = "smtp"


@dataclass(frozen=True, slots=True)
class FaxDocument:
    kind: Kind
    file_name: str | None
    data: bytes


@dataclass(frozen=True, slots=True)
class FaxOptions:
    resolution: FaxResolution
    cover: bool


def sms_text(mail: Mail, *, number_in_address: bool, settings: Settings) -> str:
    text = clean_sms_text(mail.text)
    if not text and number_in_address:
        text = mail.subject.strip()
    if not text:
        raise RejectedMessage(replies.NO_TEXT)
    parts = count_parts(text)
    if parts > settings.sms.max_parts:
        raise RejectedMessage(replies.text_too_long(parts, settings.sms.max_parts))
    return text


def sms_messages(
    text: str, destinations: Sequence[Destination], user: User, mail_from: str
) -> list[NewMessage]:
    if not user.sms_numbers:
        raise RejectedMessage(replies.no_sms_number(user.emails[0]))
    sender = Party(phone_number=user.sms_numbers[0], name=user.name or None)
    return [
        NewMessage(
            account_id=user.account_id,
            extension_id=user.extension_id,
            type=MessageType.SMS,
            direction=Direction.OUTBOUND,
            from_=sender,
            to=(Party(phone_number=d.e164),),
            origin=ORIGIN,
            subject=text,
            attachments=(NewAttachment.text_of_message(),),
            sender_email=mail_from,
        )
        for d in destinations
    ]


def fax_options(mail: Mail, settings: Settings) -> FaxOptions:
    resolution = settings.fax.resolution
    header = mail.headers.get("x-fax-resolution")
    if header is not None:
        resolution = header.strip().lower()  # type: ignore[assignment]
        if resolution not in ("fine", "normal"):
            raise RejectedMessage(replies.bad_header("X-Fax-Resolution", header, "fine or normal"))
    cover = settings.fax.cover
    header = mail.headers.get("x-fax-cover")
    if header is not None:
        if header.strip().lower() not in ("yes", "no"):
            raise RejectedMessage(replies.bad_header("X-Fax-Cover", header, "yes or no"))
        cover = header.strip().lower() == "yes"
    return FaxOptions(FaxResolution.HIGH if resolution == "fine" else FaxResolution.LOW, cover)


def _name(document: Document, index: int) -> str:
    return document.file_name or f"attachment {index + 1} ({document.content_type})"


def fax_documents(mail: Mail, settings: Settings, *, office: bool) -> list[FaxDocument]:
    """The mail's documents with their kinds; RejectedMessage for one that cannot be
    faxed, naming it and listing what can."""
    if mail.tnef:
        raise RejectedMessage(replies.winmail_dat())
    allowed = supported(office)
    out = []
    for index, document in enumerate(mail.documents):
        kind = sniff(document.data, document.content_type)
        if kind is None or kind not in allowed:
            raise RejectedMessage(
                replies.unsupported_document(_name(document, index), describe(allowed))
            )
        out.append(FaxDocument(kind, document.file_name, document.data))
    if len(out) > settings.fax.max_attachments:
        raise RejectedMessage(replies.too_many_documents(len(out), settings.fax.max_attachments))
    return out


def fax_messages(
    mail: Mail,
    documents: Sequence[FaxDocument],
    destinations: Sequence[Destination],
    *,
    user: User,
    mail_from: str,
    options: FaxOptions,
    cover_subject: str | None,
) -> list[NewMessage]:
    note = mail.text.strip()
    files = [
        NewAttachment(
            AttachmentType.SOURCE_DOCUMENT, d.kind.value, data=d.data, file_name=d.file_name
        )
        for d in documents
    ]
    if note and (not options.cover or len(note) > COVER_NOTE_LIMIT):
        text_page = NewAttachment(
            AttachmentType.SOURCE_DOCUMENT,
            "text/plain",
            data=note.encode("utf-8"),
            file_name="message.txt",
        )
        files.insert(0, text_page)
        note = ""
    if not files and not (options.cover and note):
        raise RejectedMessage(replies.NO_FAX_CONTENT)
    sender = Party(phone_number=user.fax_number or None, name=user.name or None)
    return [
        NewMessage(
            account_id=user.account_id,
            extension_id=user.extension_id,
            type=MessageType.FAX,
            direction=Direction.OUTBOUND,
            from_=sender,
            to=(Party(phone_number=d.e164),),
            origin=ORIGIN,
            subject=cover_subject or None,
            attachments=tuple(files),
            fax_resolution=options.resolution,
            cover_index=1 if options.cover else 0,
            cover_page_text=note or None,
            sender_email=mail_from,
        )
        for d in destinations
    ]
