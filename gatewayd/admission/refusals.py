"""Why a fax or an SMS is not admitted: one exception, ``Refusal``, carrying a ``Code``
and the plain values a door needs to word its own reply (a count and its limit, the
document, the number as given, the reason in words).

Nothing here knows how a door words a refusal: the SMTP door maps each code to a reply
with an enhanced status code (gatewayd/ingress/replies.py), the API to an error body
with status and errorCode (gatewayd/api/send.py). A new code makes both mappings fail
the type check until they word it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum, auto

from gatewayd.errors import GatewayError


class Code(StrEnum):
    """What is wrong; the value (the name in lower case) is what logs show."""

    # the sender
    NO_SMS_NUMBER = auto()  # the user has no SMS number to send from
    NOT_YOUR_NUMBER = auto()  # the SMS number asked for is not one of the user's
    # the destinations
    NO_DESTINATION = auto()
    TOO_MANY_DESTINATIONS = auto()  # count, limit
    BAD_NUMBER = auto()  # value: the text; reason: why it is not a number
    DESTINATION_REFUSED = auto()  # value: the number; reason: the policy rule, named
    # an SMS text
    NO_TEXT = auto()
    TEXT_TOO_LONG = auto()  # count: SMS parts, limit: sms.max_parts
    TOO_MANY_UNITS = auto()  # count: UTF-16 code units, limit: the door's cap
    # a fax
    COVER_TEXT_TOO_LONG = auto()  # count: characters, limit: what a cover page holds
    NO_FAX_CONTENT = auto()  # no document, and no text on a cover page
    TOO_MANY_DOCUMENTS = auto()  # count, limit: fax.max_attachments
    EMPTY_DOCUMENT = auto()  # document
    DOCUMENT_TOO_LARGE = auto()  # document, count: bytes, limit: fax.max_input_bytes
    UNSUPPORTED_DOCUMENT = auto()  # document, reason: the kinds that can be faxed
    UNREADABLE_DOCUMENT = auto()  # document, reason: why (password, damaged, ...)
    TOO_MANY_PAGES = auto()  # count: pages (the cover counts), limit: fax.max_pages
    # the MIME structure (a mail, the API's multipart/mixed)
    NESTED_TOO_DEEPLY = auto()  # limit: smtp.max_mime_depth
    TOO_MANY_PARTS = auto()  # limit: smtp.max_mime_parts


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """Which document a refusal is about, as the sender gave it."""

    index: int  # from 0, in the order given
    file_name: str | None
    declared: str  # the content type it came with

    @property
    def label(self) -> str:
        """Its file name, else ``attachment N``."""
        return self.file_name or f"attachment {self.index + 1}"


class Refusal(GatewayError):
    """A fax or SMS that is not admitted, and why. Each door words it its own way."""

    def __init__(
        self,
        code: Code,
        *,
        reason: str = "",
        count: int = 0,
        limit: int = 0,
        value: str = "",
        document: DocumentRef | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.count = count
        self.limit = limit
        self.value = value
        self.document = document
        super().__init__(f"{code.value}: {reason}" if reason else code.value)
