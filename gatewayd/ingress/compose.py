"""From an accepted email to what admission (gatewayd/admission) decides on: the text
of an SMS, and the documents and options of a fax.

SMS: the cleaned body (or, when the body is empty and the number is in the address,
the subject) is the text.
Fax: the documents in order; the body is the cover-page note and the subject its
subject. ``X-Fax-Resolution: fine|normal`` and ``X-Fax-Cover: yes|no`` override the
config for one mail. A note the cover page cannot carry (no cover page, or longer than
a cover page holds) is faxed as a text document before the others: a mail's text is
never dropped. A winmail.dat is refused with advice.
"""

from __future__ import annotations

from gatewayd.admission.fax import FaxOptions, Upload
from gatewayd.errors import RejectedMessage
from gatewayd.ingress import replies
from gatewayd.ingress.mime import Mail
from gatewayd.ingress.text import clean_sms_text
from gatewayd.model import FaxResolution

ORIGIN = "smtp"


def sms_text(mail: Mail, *, number_in_address: bool, enough: int | None = None) -> str:
    """The text to send ("" when there is none: admission refuses it). With ``enough``,
    a text longer than that is cut just past it: it is refused anyway, and its whole
    is not read (gatewayd.ingress.text.clean_sms_text)."""
    text = clean_sms_text(mail.text, enough)
    if not text and number_in_address:
        text = mail.subject.strip()
        if enough is not None:
            text = text[: enough + 1]
    return text


def fax_options(mail: Mail, *, cover_subject: str | None) -> FaxOptions:
    """The options a mail's headers and body give; RejectedMessage for a bad header."""
    resolution = None
    header = mail.headers.get("x-fax-resolution")
    if header is not None:
        value = header.strip().lower()
        if value not in ("fine", "normal"):
            raise RejectedMessage(replies.bad_header("X-Fax-Resolution", header, "fine or normal"))
        resolution = FaxResolution.HIGH if value == "fine" else FaxResolution.LOW
    cover = None
    header = mail.headers.get("x-fax-cover")
    if header is not None:
        if header.strip().lower() not in ("yes", "no"):
            raise RejectedMessage(replies.bad_header("X-Fax-Cover", header, "yes or no"))
        cover = 1 if header.strip().lower() == "yes" else 0
    return FaxOptions(
        resolution=resolution,
        cover_index=cover,
        cover_text=mail.text.strip(),
        cover_subject=cover_subject,
        text_as_document=True,
    )


def fax_uploads(mail: Mail) -> list[Upload]:
    """The mail's documents in order, as admission takes them."""
    if mail.tnef:
        raise RejectedMessage(replies.winmail_dat())
    return [Upload(d.file_name, d.content_type, d.data) for d in mail.documents]
