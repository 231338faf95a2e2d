"""Taking back an outbound message not yet sent (``cancel``), and sending a failed one
again (``retry``): the operator's actions (``gatewayd messages cancel|retry``, the
admin API, the web console).

cancel: a Queued outbound SMS or fax becomes SendingFailed with the reason
"cancelled: ...", in one transaction with its event; an SMS's parts the SMSC has not
accepted are given up with it, and the lease is cleared, so the worker holding it
loses it (its next write is LeaseLost). A fax a carrier already has is cancelled at
the carrier by the fax dispatcher following it, which sees that it is no longer
Queued. Anything else is refused (InvalidTransition).

retry: the status machine never goes back, so a SendingFailed or DeliveryFailed
outbound SMS or fax is sent again as a NEW Queued message with the same content:
parties, text, a fax's options and source documents (the attachment rows point at the
same stored bytes, which are content-addressed: nothing is copied; a fax is rendered
again, its cover page carries the date). Two events link them: "retried as N" on the
original (detail ``retry``), "a retry of M" on the new one (detail ``retry_of``). A
Purged message has no content left and is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.clock import Clock
from gatewayd.errors import StoreConflict, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._ids import ID_ATTEMPTS, new_id
from gatewayd.mailbox._rows import Row, add_events, event_row, fetch_message, message_row
from gatewayd.mailbox._schema import attachments, message_parts, messages
from gatewayd.mailbox._status import FAILED, StatusFeed, move_status, refuse
from gatewayd.mailbox.records import CANCELLED, Message, StatusEntered
from gatewayd.model import (
    AttachmentType,
    Availability,
    Direction,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
)

log = get_logger("gatewayd.mailbox")

_SENDABLE = (MessageType.SMS.value, MessageType.FAX.value)

# What a retry takes from the original: what the message is, not how it went.
_CONTENT = (
    "account_id",
    "extension_id",
    "type",
    "direction",
    "from_party",
    "to_parties",
    "from_number",
    "to_number",
    "priority",
    "subject",
    "conversation_id",
    "fax_resolution",
    "cover_index",
    "cover_page_text",
    "sender_email",
    "origin",
)
# The attachments that are the content: a fax's documents (not its rendered pages),
# an SMS's text.
_KEEP = {
    MessageType.FAX.value: AttachmentType.SOURCE_DOCUMENT.value,
    MessageType.SMS.value: AttachmentType.TEXT.value,
}


def _outbound_sendable(row: Row) -> bool:
    return row["type"] in _SENDABLE and row["direction"] == Direction.OUTBOUND.value


async def cancel(
    db: Database,
    clock: Clock,
    feed: StatusFeed,
    message_id: int,
    *,
    reason: str,
    extension_id: int | None,
) -> Message:
    now = clock.now()
    why = reason if reason.startswith(CANCELLED) else CANCELLED + reason
    async with db.write() as conn:
        row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
        status = row["message_status"]
        if not _outbound_sendable(row) or status != MessageStatus.QUEUED.value:
            refuse(
                message_id,
                "messageStatus",
                status,
                MessageStatus.SENDING_FAILED,
                "only a Queued outbound SMS or fax can be cancelled",
            )
        detail: dict[str, Any] = {"cancelled": True}
        if row["carrier_ref"]:
            detail.update(carrier=row["carrier"], carrier_ref=row["carrier_ref"])
        if row["type"] == MessageType.SMS.value:
            waiting = await conn.execute(
                sa.update(message_parts)
                .where(
                    message_parts.c.message_id == message_id,
                    message_parts.c.status == PartStatus.QUEUED.value,
                )
                .values(status=PartStatus.SENDING_FAILED.value, done_at=now)
                .returning(message_parts.c.part_index)
            )
            given_up = sorted(index for (index,) in waiting)
            if given_up:
                detail["parts_given_up"] = given_up
        entered = await move_status(
            conn, row, [MessageStatus.SENDING_FAILED], now=now, reason=why, detail=detail
        )
        message = await fetch_message(conn, message_id)
    feed.publish(entered)
    log.info("message.cancelled", message_id=message_id, reason=why, carrier_ref=row["carrier_ref"])
    return message


async def retry(
    db: Database,
    clock: Clock,
    feed: StatusFeed,
    message_id: int,
    *,
    reason: str,
    extension_id: int | None,
) -> Message:
    conflict: StoreConflict | None = None
    for _ in range(ID_ATTEMPTS):  # a new id that collides with a stored one: draw again
        try:
            message = await _retry_once(db, clock, message_id, reason, extension_id)
        except StoreConflict as exc:
            conflict = exc
            continue
        feed.publish(
            [
                StatusEntered(
                    message.id, message.type, message.direction, MessageStatus.QUEUED, "created"
                )
            ]
        )
        log.info(
            "message.retried",
            message_id=message.id,
            retry_of=message_id,
            type=message.type.value,
            reason=reason,
        )
        return message
    raise StoreError(f"could not store the retry of message {message_id}: {conflict}")


async def _retry_once(
    db: Database, clock: Clock, message_id: int, reason: str, extension_id: int | None
) -> Message:
    now = clock.now()
    async with db.write() as conn:
        row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
        status = row["message_status"]
        if not _outbound_sendable(row) or status not in {s.value for s in FAILED}:
            refuse(
                message_id,
                "messageStatus",
                status,
                "retry",
                "only a SendingFailed or DeliveryFailed outbound SMS or fax can be retried",
            )
        if row["availability"] == Availability.PURGED.value:
            refuse(
                message_id,
                "availability",
                row["availability"],
                "retry",
                "it is Purged: its content is erased",
            )
        new = new_id()
        await conn.execute(messages.insert().values(_copy(row, new, now)))
        await _copy_attachments(conn, row, new)
        await add_events(
            conn,
            [
                event_row(
                    new,
                    now,
                    "status",
                    "created",
                    to_value=MessageStatus.QUEUED.value,
                    detail={"origin": row["origin"], "retry_of": message_id},
                ),
                event_row(
                    new,
                    now,
                    "retry",
                    f"a retry of {message_id}: {reason}",
                    detail={"retry_of": message_id},
                ),
                event_row(
                    message_id, now, "retry", f"retried as {new}: {reason}", detail={"retry": new}
                ),
            ],
        )
        return await fetch_message(conn, new)


def _copy(row: Row, new: int, now: datetime) -> dict[str, Any]:
    values = {name: row[name] for name in _CONTENT}
    values.update(
        id=new,
        creation_time=now,
        last_modified_time=now,
        read_status=ReadStatus.UNREAD.value,
        availability=Availability.ALIVE.value,
        availability_changed_at=now,
        message_status=MessageStatus.QUEUED.value,
        attempts=0,
        next_attempt_at=now,
    )
    return values


async def _copy_attachments(conn: AsyncConnection, row: Row, new: int) -> None:
    a = attachments.c
    found = await conn.execute(
        sa.select(attachments)
        .where(a.message_id == row["id"], a.type == _KEEP[row["type"]])
        .order_by(a.position)
    )
    copies = [
        {**dict(item), "id": new_id(), "message_id": new, "position": position}
        for position, item in enumerate(found.mappings())
    ]
    if copies:
        await conn.execute(attachments.insert(), copies)
