"""Every reply the SMTP door gives on its own account: code, RFC 3463 enhanced status
code, and a reason a person can act on. Tests compare against these names."""

from __future__ import annotations

from collections.abc import Sequence

SENDER_OK = "250 2.1.0 sender OK"
RECIPIENT_OK = "250 2.1.5 recipient OK"
AUTH_REQUIRED = "530 5.7.0 authentication required"
AUTH_FAILED = "535 5.7.8 authentication failed: wrong user name or password"
MAILBOX_UNAVAILABLE = "451 4.3.0 the message could not be stored; please try again later"
SHUTTING_DOWN = "421 4.3.2 gatewayd is shutting down; please try again later"
NO_TEXT = "554 5.6.0 the message has no text to send as an SMS"
NO_FAX_CONTENT = "554 5.6.0 the message has no document to fax and no text for a cover page"
NO_SUBJECT_NUMBER = "554 5.6.0 put the destination number(s) in the subject"


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


def text_too_long(parts: int, limit: int) -> str:
    return f"554 5.6.0 text too long: {parts} parts, limit {limit}"


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
