"""The message model shared by every domain: enums spelled as the API spells them,
and the status machine as pure functions.

Status paths (outbound; inbound messages are created Received):

    SMS    Queued -> Sent -> Delivered | DeliveryFailed;  Queued -> SendingFailed
    Fax    Queued -> Sent;                                Queued -> SendingFailed
    Pager  created Sent (the sender's copy) or Received (each recipient's copy)

An SMS sent in several parts has a status per part; the message status is derived
from them (``derive_sms_status``). Availability runs Alive -> Deleted -> Purged, with
restore (Deleted -> Alive) as the only way back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from enum import StrEnum


class MessageType(StrEnum):
    FAX = "Fax"
    SMS = "SMS"
    VOICEMAIL = "VoiceMail"
    PAGER = "Pager"
    TEXT = "Text"


class Direction(StrEnum):
    INBOUND = "Inbound"
    OUTBOUND = "Outbound"


class MessageStatus(StrEnum):
    QUEUED = "Queued"
    SENT = "Sent"
    DELIVERED = "Delivered"
    DELIVERY_FAILED = "DeliveryFailed"
    SENDING_FAILED = "SendingFailed"
    RECEIVED = "Received"


class ReadStatus(StrEnum):
    READ = "Read"
    UNREAD = "Unread"


class Priority(StrEnum):
    NORMAL = "Normal"
    HIGH = "High"


class Availability(StrEnum):
    ALIVE = "Alive"
    DELETED = "Deleted"
    PURGED = "Purged"


class AttachmentType(StrEnum):
    AUDIO_RECORDING = "AudioRecording"
    AUDIO_TRANSCRIPTION = "AudioTranscription"
    TEXT = "Text"
    SOURCE_DOCUMENT = "SourceDocument"
    RENDERED_DOCUMENT = "RenderedDocument"
    MMS_ATTACHMENT = "MmsAttachment"


class FaxResolution(StrEnum):
    HIGH = "High"  # fine, 196 lines per inch
    LOW = "Low"  # normal, 98 lines per inch


class VmTranscriptionStatus(StrEnum):
    NOT_AVAILABLE = "NotAvailable"
    IN_PROGRESS = "InProgress"
    TIMED_OUT = "TimedOut"
    COMPLETED = "Completed"
    COMPLETED_PARTIALLY = "CompletedPartially"
    FAILED = "Failed"
    UNKNOWN = "Unknown"


class FaxErrorCode(StrEnum):
    ALL_LINES_IN_USE = "AllLinesInUse"
    UNDEFINED = "Undefined"
    NO_FAX_SEND_PERMISSION = "NoFaxSendPermission"
    NO_INTERNATIONAL_PERMISSION = "NoInternationalPermission"
    NO_FAX_MACHINE = "NoFaxMachine"
    NO_ANSWER = "NoAnswer"
    LINE_BUSY = "LineBusy"
    CALLER_HUNG_UP = "CallerHungUp"
    NOT_ENOUGH_CREDITS = "NotEnoughCredits"
    SENT_PARTIALLY = "SentPartially"
    INTERNATIONAL_CALLING_DISABLED = "InternationalCallingDisabled"
    DESTINATION_COUNTRY_DISABLED = "DestinationCountryDisabled"
    UNKNOWN_COUNTRY_CODE = "UnknownCountryCode"
    NOT_ACCEPTED = "NotAccepted"
    INVALID_NUMBER = "InvalidNumber"
    CALL_DECLINED = "CallDeclined"
    TOO_MANY_CALLS_PER_LINE = "TooManyCallsPerLine"
    CALL_FAILED = "CallFailed"
    RENDERING_FAILED = "RenderingFailed"
    TOO_MANY_PAGES = "TooManyPages"
    RETURN_TO_DB_QUEUE = "ReturnToDBQueue"
    NO_CALL_TIME = "NoCallTime"
    WRONG_NUMBER = "WrongNumber"
    PROHIBITED_NUMBER = "ProhibitedNumber"
    INTERNAL_ERROR = "InternalError"
    FAX_SENDING_PROHIBITED = "FaxSendingProhibited"
    THE_PHONE_IS_BLACKLISTED = "ThePhoneIsBlacklisted"
    USER_NOT_FOUND = "UserNotFound"
    CONVERT_ERROR = "ConvertError"
    DB_GENERAL_ERROR = "DBGeneralError"
    SKYPE_BILLING_FAILED = "SkypeBillingFailed"
    ACCOUNT_SUSPENDED = "AccountSuspended"
    PROHIBITED_DESTINATION = "ProhibitedDestination"
    INTERNATIONAL_DISABLED = "InternationalDisabled"


class PartStatus(StrEnum):
    """Status of one SMS part at the carrier."""

    QUEUED = "Queued"  # not yet accepted by the SMSC
    SENT = "Sent"  # accepted (submit_sm_resp OK), carrier id known
    DELIVERED = "Delivered"
    DELIVERY_FAILED = "DeliveryFailed"
    SENDING_FAILED = "SendingFailed"  # refused for good by the SMSC


Q = MessageStatus
STATUS_TRANSITIONS: dict[MessageType, frozenset[tuple[MessageStatus, MessageStatus]]] = {
    MessageType.SMS: frozenset(
        {
            (Q.QUEUED, Q.SENT),
            (Q.SENT, Q.DELIVERED),
            (Q.SENT, Q.DELIVERY_FAILED),
            (Q.QUEUED, Q.SENDING_FAILED),
        }
    ),
    MessageType.FAX: frozenset({(Q.QUEUED, Q.SENT), (Q.QUEUED, Q.SENDING_FAILED)}),
    MessageType.PAGER: frozenset(),
    MessageType.TEXT: frozenset(),
    MessageType.VOICEMAIL: frozenset(),
}

P = PartStatus
PART_TRANSITIONS: frozenset[tuple[PartStatus, PartStatus]] = frozenset(
    {
        (P.QUEUED, P.SENT),
        (P.QUEUED, P.SENDING_FAILED),
        (P.SENT, P.DELIVERED),
        (P.SENT, P.DELIVERY_FAILED),
    }
)


class TransitionRefused(ValueError):
    """Raised by the pure checks below; the store turns it into InvalidTransition."""


def initial_status(message_type: MessageType, direction: Direction) -> MessageStatus:
    """The status a new message is created in."""
    if direction is Direction.INBOUND:
        return MessageStatus.RECEIVED
    if message_type in (MessageType.SMS, MessageType.FAX):
        return MessageStatus.QUEUED
    if message_type in (MessageType.PAGER, MessageType.TEXT):
        return MessageStatus.SENT
    raise TransitionRefused(f"a {message_type} message is always Inbound")


def check_transition(
    message_type: MessageType, current: MessageStatus, wanted: MessageStatus
) -> None:
    if (current, wanted) not in STATUS_TRANSITIONS[message_type]:
        allowed = sorted(to for frm, to in STATUS_TRANSITIONS[message_type] if frm == current)
        raise TransitionRefused(
            f"{message_type} may go from {current} only to {', '.join(allowed)}"
            if allowed
            else f"{current} is final for {message_type}"
        )


def status_path(
    message_type: MessageType, current: MessageStatus, target: MessageStatus
) -> list[MessageStatus] | None:
    """The statuses to pass through from ``current`` to ``target`` (excluding current),
    [] when already there, None when the machine has no way there."""
    edges = STATUS_TRANSITIONS[message_type]
    paths: deque[list[MessageStatus]] = deque([[current]])
    seen = {current}
    while paths:
        path = paths.popleft()
        if path[-1] == target:
            return path[1:]
        for frm, to in edges:
            if frm == path[-1] and to not in seen:
                seen.add(to)
                paths.append([*path, to])
    return None


def check_part_transition(current: PartStatus, wanted: PartStatus) -> None:
    if (current, wanted) not in PART_TRANSITIONS:
        raise TransitionRefused(f"an SMS part may not go from {current} to {wanted}")


def derive_sms_status(parts: Iterable[PartStatus]) -> MessageStatus:
    """The message status an SMS has given the status of each of its parts."""
    statuses = list(parts)
    if not statuses:
        return MessageStatus.QUEUED
    if PartStatus.SENDING_FAILED in statuses:
        return MessageStatus.SENDING_FAILED
    if PartStatus.QUEUED in statuses:
        return MessageStatus.QUEUED
    if PartStatus.DELIVERY_FAILED in statuses:
        return MessageStatus.DELIVERY_FAILED
    if all(s is PartStatus.DELIVERED for s in statuses):
        return MessageStatus.DELIVERED
    return MessageStatus.SENT


class AvailabilityAction(StrEnum):
    DELETE = "delete"
    PURGE = "purge"
    RESTORE = "restore"


def next_availability(current: Availability, action: AvailabilityAction) -> Availability:
    """Where ``action`` takes a message; the same value means nothing changes.

    delete: Alive -> Deleted, Deleted -> Purged (a second delete purges).
    purge: Alive or Deleted -> Purged.  restore: Deleted -> Alive.
    A Purged message stays Purged and cannot be restored.
    """
    a = Availability
    if action is AvailabilityAction.DELETE:
        return {a.ALIVE: a.DELETED, a.DELETED: a.PURGED, a.PURGED: a.PURGED}[current]
    if action is AvailabilityAction.PURGE:
        return a.PURGED
    if current is a.PURGED:
        raise TransitionRefused("a Purged message cannot be restored")
    return a.ALIVE
