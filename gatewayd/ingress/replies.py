"""Every reply the SMTP door gives on its own account: code, RFC 3463 enhanced status
code, and a reason a person can act on. Tests compare against these names.
``refused`` words an admission Refusal (gatewayd/admission) as the SMTP door says it."""

from __future__ import annotations

from collections.abc import Sequence

from gatewayd.admission import Code, DocumentRef, Refusal

SENDER_OK = "250 2.1.0 sender OK"
RECIPIENT_OK = "250 2.1.5 recipient OK"
AUTH_REQUIRED = "530 5.7.0 authentication required"
AUTH_FAILED = "535 5.7.8 authentication failed: wrong user name or password"
MAILBOX_UNAVAILABLE = "451 4.3.0 the message could not be stored; please try again later"
SHUTTING_DOWN = "421 4.3.2 gatewayd is shutting down; please try again later"
NO_TEXT = "554 5.6.0 the message has no text to send as an SMS"
NO_FAX_CONTENT = "554 5.6.0 the message has no document to fax and no text for a cover page"
NO_SUBJECT_NUMBER = "554 5.6.0 put the destination number(s) in the subject"
INTERNAL_ERROR = "451 4.3.0 the message could not be processed; please try again later"
# Connections and sessions
TOO_MANY_CONNECTIONS = "421 4.7.0 too many connections; please try again later"
TOO_MANY_FROM_ADDRESS = "421 4.7.0 too many connections from your address; please try again later"
IDLE_TIMEOUT = "421 4.4.2 idle for too long; closing the connection"
SESSION_TOO_LONG = "421 4.4.2 session time limit reached; closing the connection"
TOO_MANY_AUTH_FAILURES = "421 4.7.0 too many failed logins; closing the connection"
AUTH_BLOCKED = "421 4.7.0 too many failed logins from your address; please try again later"


def queued(message_ids: Sequence[int]) -> str:
    return "250 2.0.0 queued as " + " ".join(str(i) for i in message_ids)


def relaying_denied(address: str) -> str:
    return f"550 5.7.1 <{address}>: relaying denied (gatewayd only sends faxes and SMS)"


def bad_local_number(address: str, why: str) -> str:
    return f"550 5.1.1 <{address}>: {why}"


def bad_subject_number(why: str) -> str:
    return f"554 5.6.0 subject: {why}"


def policy_refused(why: str) -> str:
    return f"550 5.7.1 {why}"


def unknown_sender(address: str) -> str:
    shown = address or "the empty sender <>"
    return f"550 5.7.1 {shown} is not allowed to send through this gateway"


def not_your_address(address: str, login: str) -> str:
    return f"550 5.7.1 {address} is not an address of {login}, who logged in"


def from_mismatch(header: str, sender: str) -> str:
    return f"550 5.7.1 From: {header} does not match the sender {sender}"


def untrusted_peer(host: str) -> str:
    return f"530 5.7.0 authentication required: {host} is not a trusted network"


def too_many_recipients(limit: int) -> str:
    return f"452 4.5.3 too many recipients (at most {limit} per message)"


def too_many_destinations(count: int, limit: int) -> str:
    return f"554 5.5.3 too many destinations: {count}, at most {limit} per message"


def rate_limited(limit: int) -> str:
    return f"451 4.7.1 too many messages: at most {limit} per minute; please try again later"


def message_too_big(limit: int) -> str:
    return f"552 5.3.4 message too big: at most {limit} bytes"


def nested_too_deeply(limit: int) -> str:
    return f"554 5.6.0 the message is nested too deeply: at most {limit} levels of MIME parts"


def too_many_parts(limit: int) -> str:
    return f"554 5.6.0 the message has too many MIME parts: at most {limit}"


def text_too_long(parts: int, limit: int, *, more: bool = False) -> str:
    """``more``: the text was not read to its end, it is longer than ``parts`` parts."""
    counted = f"more than {parts}" if more else str(parts)
    return f"554 5.6.0 text too long: {counted} parts, limit {limit}"


def no_sms_number(login: str) -> str:
    return f"550 5.7.1 {login} has no SMS number to send from (users.sms_numbers)"


def unsupported_document(name: str, supported: str) -> str:
    return f"554 5.6.1 {name}: this kind of document cannot be faxed; supported: {supported}"


def winmail_dat() -> str:
    return (
        "554 5.6.1 winmail.dat: Outlook sent the message in its own rich text format (TNEF); "
        "send it as HTML or plain text instead"
    )


def too_many_documents(count: int, limit: int) -> str:
    return f"554 5.6.0 too many documents: {count}, at most {limit} per fax"


def too_many_pages(count: int, limit: int) -> str:
    return f"554 5.6.0 too many pages: {count}, at most {limit} per fax"


def unreadable_document(name: str, why: str) -> str:
    return f"554 5.6.0 {name}: {why}"


def bad_header(name: str, value: str, expected: str) -> str:
    return f"554 5.6.0 {name}: {value!r} is not {expected}"


def empty_document(name: str) -> str:
    return f"554 5.6.0 {name}: the document is empty"


def document_too_large(name: str, limit: int) -> str:
    return f"552 5.3.4 {name}: too large to fax (at most {limit} bytes a document)"


def cover_text_too_long(count: int, limit: int) -> str:
    return f"554 5.6.0 cover page text too long: {count} characters, at most {limit}"


def text_too_many_units(count: int, limit: int) -> str:
    return f"554 5.6.0 text too long: {count} UTF-16 code units, at most {limit}"


def not_an_sms_number(number: str) -> str:
    return f"550 5.7.1 {number} is not an SMS number of this sender"


def _unsupported_name(document: DocumentRef) -> str:
    """A document without a file name is named with its type as well."""
    if document.file_name:
        return document.file_name
    return f"attachment {document.index + 1} ({document.declared})"


def refused(refusal: Refusal, *, address: str | None = None) -> str:
    """The reply for an admission refusal. ``address``: the recipient whose local part
    held the number (a BAD_NUMBER there is 550 5.1.1; in the subject, 554 5.6.0)."""
    r = refusal
    document = r.document or DocumentRef(0, "the document", "")
    match r.code:
        case Code.NO_SMS_NUMBER:
            return no_sms_number(r.value)
        case Code.NOT_YOUR_NUMBER:
            return not_an_sms_number(r.value)
        case Code.NO_DESTINATION:
            return NO_SUBJECT_NUMBER
        case Code.TOO_MANY_DESTINATIONS:
            return too_many_destinations(r.count, r.limit)
        case Code.BAD_NUMBER:
            if address is not None:
                return bad_local_number(address, r.reason)
            return bad_subject_number(r.reason)
        case Code.DESTINATION_REFUSED:
            return policy_refused(r.reason)
        case Code.NO_TEXT:
            return NO_TEXT
        case Code.TEXT_TOO_LONG:
            return text_too_long(r.count, r.limit)
        case Code.TOO_MANY_UNITS:
            return text_too_many_units(r.count, r.limit)
        case Code.COVER_TEXT_TOO_LONG:
            return cover_text_too_long(r.count, r.limit)
        case Code.NO_FAX_CONTENT:
            return NO_FAX_CONTENT
        case Code.TOO_MANY_DOCUMENTS:
            return too_many_documents(r.count, r.limit)
        case Code.EMPTY_DOCUMENT:
            return empty_document(document.label)
        case Code.DOCUMENT_TOO_LARGE:
            return document_too_large(document.label, r.limit)
        case Code.UNSUPPORTED_DOCUMENT:
            return unsupported_document(_unsupported_name(document), r.reason)
        case Code.UNREADABLE_DOCUMENT:
            return unreadable_document(document.label, r.reason)
        case Code.TOO_MANY_PAGES:
            return too_many_pages(r.count, r.limit)
        case Code.NESTED_TOO_DEEPLY:
            return nested_too_deeply(r.limit)
        case Code.TOO_MANY_PARTS:
            return too_many_parts(r.limit)
