"""What the mailbox stores and returns: frozen records, and their JSON in the
RingCentral message-store shape (field names, enum spellings, ISO times with Z)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gatewayd.model import (
    AttachmentType,
    Availability,
    Direction,
    FaxResolution,
    MessageStatus,
    MessageType,
    PartStatus,
    Priority,
    ReadStatus,
    VmTranscriptionStatus,
)

API_PREFIX = "/restapi/v1.0"


def iso(moment: datetime | None) -> str | None:
    """``2016-03-10T18:07:52.534Z``: UTC, milliseconds, as the message store writes times."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # (%-formatting: twice as fast as isoformat, which every message's JSON calls twice)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (  # noqa: UP031
        moment.year,
        moment.month,
        moment.day,
        moment.hour,
        moment.minute,
        moment.second,
        moment.microsecond // 1000,
    )


@dataclass(frozen=True, slots=True)
class Party:
    """A sender or recipient (CallerInfoFrom / CallerInfoTo)."""

    phone_number: str | None = None
    extension_number: str | None = None
    extension_id: int | None = None
    name: str | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.phone_number is not None:
            out["phoneNumber"] = self.phone_number
        if self.extension_number is not None:
            out["extensionNumber"] = self.extension_number
        if self.extension_id is not None:
            out["extensionId"] = str(self.extension_id)
        if self.name is not None:
            out["name"] = self.name
        if self.location is not None:
            out["location"] = self.location
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Party:
        extension_id = data.get("extensionId")
        return cls(
            phone_number=data.get("phoneNumber"),
            extension_number=data.get("extensionNumber"),
            extension_id=int(extension_id) if extension_id is not None else None,
            name=data.get("name"),
            location=data.get("location"),
        )


@dataclass(frozen=True, slots=True)
class NewAttachment:
    """Attachment bytes to store with a new message: ``data`` in memory, a ``path``, or
    (``message_text``) the message's own text, which is stored once, as its subject."""

    type: AttachmentType
    content_type: str
    data: bytes | None = None
    path: Path | None = None
    file_name: str | None = None
    width: int | None = None
    height: int | None = None
    vm_duration: int | None = None
    message_text: bool = False

    def __post_init__(self) -> None:
        if (self.data is not None) + (self.path is not None) + self.message_text != 1:
            raise ValueError("a NewAttachment needs exactly one of data, path, message_text")

    @classmethod
    def text_of_message(cls) -> NewAttachment:
        """The Text attachment of an SMS or pager message: its subject, as UTF-8 (one
        record for all: it is frozen, and the API makes thousands a second)."""
        return _TEXT_OF_MESSAGE


_TEXT_OF_MESSAGE = NewAttachment(AttachmentType.TEXT, "text/plain", message_text=True)


@dataclass(frozen=True, slots=True)
class NewMessage:
    account_id: int
    extension_id: int
    type: MessageType
    direction: Direction
    from_: Party
    to: tuple[Party, ...]
    origin: str
    subject: str | None = None
    attachments: tuple[NewAttachment, ...] = ()
    priority: Priority = Priority.NORMAL
    read_status: ReadStatus = ReadStatus.UNREAD
    conversation_id: int | None = None  # SMS: derived from the two numbers when None
    fax_resolution: FaxResolution | None = None
    fax_page_count: int | None = None  # an inbound fax's pages (outbound: set when rendered)
    cover_index: int | None = None
    cover_page_text: str | None = None
    send_time: datetime | None = None  # a scheduled fax waits until then
    vm_transcription_status: VmTranscriptionStatus | None = None
    pg_to_department: bool | None = None
    sender_email: str | None = None
    creation_time: datetime | None = None  # default: now


@dataclass(frozen=True, slots=True)
class Attachment:
    id: int
    message_id: int
    position: int
    type: AttachmentType
    content_type: str
    file_name: str | None
    size: int
    sha256: str | None  # None: the content is the message's subject
    width: int | None = None
    height: int | None = None
    vm_duration: int | None = None

    def to_json(self, message_uri: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "uri": f"{message_uri}/content/{self.id}",
            "type": self.type._value_,
            "contentType": self.content_type,
            "size": self.size,
        }
        if self.file_name is not None:
            out["fileName"] = self.file_name
        for key, value in (
            ("width", self.width),
            ("height", self.height),
            ("vmDuration", self.vm_duration),
        ):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True, slots=True)
class Part:
    message_id: int
    index: int
    status: PartStatus
    link: str | None
    carrier_id: str | None
    error_code: str | None
    submitted_at: datetime | None
    done_at: datetime | None


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    message_id: int
    at: datetime
    kind: str
    from_value: str | None
    to_value: str | None
    reason: str
    detail: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "messageId": self.message_id,
            "at": iso(self.at),
            "kind": self.kind,
            "from": self.from_value,
            "to": self.to_value,
            "reason": self.reason,
            "detail": self.detail or {},
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    account_id: int
    extension_id: int
    type: MessageType
    direction: Direction
    from_: Party
    to: tuple[Party, ...]
    creation_time: datetime
    last_modified_time: datetime
    read_status: ReadStatus
    priority: Priority
    availability: Availability
    availability_changed_at: datetime
    message_status: MessageStatus
    subject: str | None
    conversation_id: int | None
    fax_resolution: FaxResolution | None
    fax_page_count: int | None
    cover_index: int | None
    cover_page_text: str | None
    sms_delivery_time: datetime | None
    delivery_error_code: str | None
    fax_error_code: str | None
    vm_transcription_status: VmTranscriptionStatus | None
    pg_to_department: bool | None
    attempts: int
    next_attempt_at: datetime | None
    lease_owner: str | None
    send_time: datetime | None
    carrier: str | None
    carrier_ref: str | None
    failure_reason: str | None
    sender_email: str | None
    origin: str
    attachments: tuple[Attachment, ...] = field(default=())

    @property
    def path(self) -> str:
        return (
            f"{API_PREFIX}/account/{self.account_id}/extension/{self.extension_id}"
            f"/message-store/{self.id}"
        )

    def to_json(self, base_url: str = "", *, internal: bool = False) -> dict[str, Any]:
        """The message as the message-store API returns it; ``internal`` adds a
        ``gatewayd`` block with the dispatcher's state (for operators). The list writes
        the same JSON in SQL (_message_json.py): change both together. (Enums by
        ``_value_``: their value without the ``value`` property's call.)"""
        uri = base_url.rstrip("/") + self.path
        to = [p.to_json() for p in self.to]
        if self.type is MessageType.FAX and self.direction is Direction.OUTBOUND:
            for entry in to:
                entry["messageStatus"] = self.message_status._value_
                if self.fax_error_code:
                    entry["faxErrorCode"] = self.fax_error_code
        out: dict[str, Any] = {
            "uri": uri,
            "id": self.id,
            "extensionId": str(self.extension_id),
            "type": self.type._value_,
            "direction": self.direction._value_,
            "from": self.from_.to_json(),
            "to": to,
            "creationTime": iso(self.creation_time),
            "lastModifiedTime": iso(self.last_modified_time),
            "readStatus": self.read_status._value_,
            "priority": self.priority._value_,
            "availability": self.availability._value_,
            "messageStatus": self.message_status._value_,
            "attachments": [a.to_json(uri) for a in self.attachments],
        }
        if self.subject is not None:
            out["subject"] = self.subject
        if self.conversation_id is not None:
            out["conversationId"] = self.conversation_id
            out["conversation"] = {
                "id": str(self.conversation_id),
                "uri": f"{base_url.rstrip('/')}{API_PREFIX}/conversation/{self.conversation_id}",
            }
        if self.type is MessageType.SMS:
            out["smsSendingAttemptsCount"] = self.attempts
            if self.sms_delivery_time is not None:
                out["smsDeliveryTime"] = iso(self.sms_delivery_time)
            if self.delivery_error_code is not None:
                out["deliveryErrorCode"] = self.delivery_error_code
        if self.type is MessageType.FAX:
            for key, value in (
                ("faxResolution", self.fax_resolution and self.fax_resolution._value_),
                ("faxPageCount", self.fax_page_count),
                ("coverIndex", self.cover_index),
                ("coverPageText", self.cover_page_text),
                ("faxErrorCode", self.fax_error_code),
            ):
                if value is not None:
                    out[key] = value
        if self.vm_transcription_status is not None:
            out["vmTranscriptionStatus"] = self.vm_transcription_status._value_
        if self.pg_to_department is not None:
            out["pgToDepartment"] = self.pg_to_department
        if internal:
            out["gatewayd"] = {
                "accountId": str(self.account_id),
                "origin": self.origin,
                "senderEmail": self.sender_email,
                "attempts": self.attempts,
                "nextAttemptAt": iso(self.next_attempt_at),
                "leaseOwner": self.lease_owner,
                "sendTime": iso(self.send_time),
                "carrier": self.carrier,
                "carrierRef": self.carrier_ref,
                "failureReason": self.failure_reason,
                "availabilityChangedAt": iso(self.availability_changed_at),
            }
        return out


# -- what callers hand the mailbox, and get back, beside messages -----------------------


@dataclass(frozen=True, slots=True)
class SmsToSend:
    """A leased Queued SMS, as much of it as the dispatcher needs (Mailbox.lease_sms)."""

    id: int
    from_number: str | None
    to_number: str | None
    text: str | None
    attempts: int  # this lease's included
    creation_time: datetime
    delivery_error_code: str | None


@dataclass(frozen=True, slots=True)
class PartAccepted:
    """submit_sm_resp OK: part ``index`` of ``parts`` is at the SMSC as ``carrier_id``."""

    message_id: int
    index: int
    parts: int
    link: str
    carrier_id: str


@dataclass(frozen=True, slots=True)
class PartRefused:
    """A permanent refusal of one part: the SMS is SendingFailed."""

    message_id: int
    index: int
    parts: int
    error_code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReceiptIn:
    """A receipt for the part the SMSC calls one of ``carrier_ids`` on ``link``;
    ``outcome`` None is a state on the way (ENROUTE), only recorded."""

    link: str
    carrier_ids: tuple[str, ...]
    outcome: PartStatus | None
    error_code: str | None = None
    done_at: datetime | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of the message an acceptance, refusal or receipt was about."""

    message_id: int
    status: MessageStatus
    changed: bool  # the item changed the part it was about


@dataclass(frozen=True, slots=True)
class Fragment:
    """One part of a concatenated inbound SMS, waiting for the others."""

    link: str
    source: str
    destination: str
    reference: int
    total: int
    seq: int  # 1-based
    text: str
    received_at: datetime

    @property
    def key(self) -> tuple[str, str, str, int, int]:
        return (self.link, self.source, self.destination, self.reference, self.total)


@dataclass(frozen=True, slots=True)
class SweepReport:
    purged: int = 0
    removed: int = 0
    auto_deleted: int = 0
    blobs_erased: int = 0
    orphans_erased: int = 0


@dataclass(frozen=True, slots=True)
class StatusCount:
    """How many messages of a type are in a status, and when the oldest was created."""

    type: MessageType
    status: MessageStatus
    count: int
    oldest: datetime | None


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A status change as the notifier reads it: the event and its message's keys."""

    event_id: int
    message_id: int
    status: MessageStatus
    type: MessageType
    direction: Direction
    extension_id: int
    sender_email: str | None


@dataclass(frozen=True, slots=True)
class NotificationDue:
    """A result email waiting to be sent."""

    id: int
    message_id: int
    kind: str
    recipient: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Content:
    """An attachment's bytes, read in pieces: ``size`` bytes, ``read(offset, length)``
    (wherever the mailbox keeps them)."""

    size: int
    read: Callable[[int, int], Awaitable[bytes]] = field(repr=False)

    CHUNK = 1 << 16

    @classmethod
    def of_bytes(cls, data: bytes) -> Content:
        async def read(offset: int, length: int) -> bytes:
            return data[offset : offset + length]

        return cls(len(data), read)

    async def chunks(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Bytes ``start`` to ``end`` (inclusive; the last byte when None), in pieces."""
        last = self.size - 1 if end is None else min(end, self.size - 1)
        at = start
        while at <= last:
            piece = await self.read(at, min(self.CHUNK, last + 1 - at))
            if not piece:
                return
            yield piece
            at += len(piece)

    async def read_all(self) -> bytes:
        return b"".join([piece async for piece in self.chunks()])


@dataclass(frozen=True, slots=True)
class Node:
    """A node of the cluster as its row says, and what it holds now."""

    name: str
    instance: str
    host: str
    pid: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    info: dict[str, Any]
    held: dict[str, int]  # Queued messages leased by the node, by type

    def age(self, now: datetime) -> float:
        """Seconds since the last heartbeat."""
        return (now - self.heartbeat_at).total_seconds()

    def state(self, now: datetime, stale_after: float) -> str:
        """live, gone (no heartbeat for ``stale_after`` seconds) or stopped."""
        if self.stopped_at is not None:
            return "stopped"
        return "gone" if self.age(now) >= stale_after else "live"


@dataclass(frozen=True, slots=True)
class RateState:
    """A rate-limit counter: uses in the window that began at ``window_start``."""

    count: int
    window_start: datetime
    penalty_until: datetime | None


CANCELLED = "cancelled: "  # how the reason of a message Mailbox.cancel ended starts


@dataclass(frozen=True, slots=True)
class StatusEntered:
    """A message entered ``status`` (handed to status watchers once committed).
    ``code`` is the failure's faxErrorCode or deliveryErrorCode, when it has one."""

    message_id: int
    type: MessageType
    direction: Direction
    status: MessageStatus
    reason: str
    code: str | None = None

    @property
    def cancelled(self) -> bool:
        """Cancelled by a person (``Mailbox.cancel``: the reason says so)."""
        return self.reason.startswith(CANCELLED)


@dataclass(frozen=True, slots=True)
class StatusBucket:
    """How many messages entered ``status`` in the bucket that begins at ``start``."""

    start: datetime
    status: MessageStatus
    count: int


@dataclass(frozen=True, slots=True)
class StatusTally:
    """How many messages of a type and direction entered ``status`` in a window."""

    type: MessageType
    direction: Direction
    status: MessageStatus
    count: int


@dataclass(frozen=True, slots=True)
class Failure:
    """A message that failed: the status event, its reason and code, and what the
    message is."""

    message_id: int
    at: datetime
    status: MessageStatus
    reason: str
    type: MessageType
    extension_id: int
    to_number: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token kept in the mailbox (its hash only) for the user of ``extension_id``."""

    id: int
    account_id: int
    extension_id: int
    email: str
    name: str
    token_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def state(self, now: datetime) -> str:
        """active, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "accountId": str(self.account_id),
            "extensionId": str(self.extension_id),
            "email": self.email,
            "name": self.name,
            "state": self.state(now),
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
            "revokedAt": iso(self.revoked_at),
        }


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in web console user, known by the SHA-256 of the session cookie."""

    key_hash: str
    email: str
    created_at: datetime
    expires_at: datetime
