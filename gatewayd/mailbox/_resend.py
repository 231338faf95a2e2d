"""Taking back a message not yet sent, and sending a failed one again.

``cancel``: a Queued outbound SMS or fax becomes SendingFailed with the reason
"cancelled: ...", in one transaction with its event; an SMS's parts not yet accepted
are given up with it. Whoever holds its lease loses it (their next write is LeaseLost);
a fax a carrier already has is cancelled there by the fax dispatcher, which sees that
the message it follows is no longer Queued.

``retry``: the status machine never goes back, so a SendingFailed or DeliveryFailed
outbound SMS or fax is sent again as a NEW Queued message with the original's
content: parties, text, a fax's options and its source documents (the same stored
bytes: attachments are content-addressed, nothing is copied). A "retry" event on each
names the other (detail ``retry`` on the original, ``retry_of`` on the new one). A
Purged message has no content left and is refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.clock import Clock
from gatewayd.logging import get_logger
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import Row, add_events, event_row, fetch_message, message_row, new_id
from gatewayd.mailbox._schema import attachments, message_parts, messages
from gatewayd.mailbox._status import FAILED, move_status, refuse
from gatewayd.mailbox.records import Message
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

SENDABLE = (MessageType.SMS.value, MessageType.FAX.value)
CANCELLED = "cancelled: "

# The columns a retry copies from the original: what the message is, not how it went.
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
    "pg_to_department",
    "sender_email",
    "origin",
)


def _outbound(row: Row) -> bool:
    return row["type"] in SENDABLE and row["direction"] == Direction.OUTBOUND.value


async def cancel(
    db: Database, clock: Clock, message_id: int, *, reason: str, extension_id: int | None
) -> Message:
    now = clock.now()
    why = CANCELLED + reason
    async with db.write() as conn:
        row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
        current = row["message_status"]
        if not _outbound(row) or current != MessageStatus.QUEUED.value:
            refuse(
                message_id,
                "messageStatus",
                current,
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
            given_up = sorted(part for (part,) in waiting)
            if given_up:
                detail["parts_given_up"] = given_up
        await move_status(
            conn, row, [MessageStatus.SENDING_FAILED], now=now, reason=why, detail=detail
        )
        message = await fetch_message(conn, message_id)
    log.info("message.cancelled", message_id=message_id, reason=reason)
    return message


async def retry(
    db: Database, clock: Clock, message_id: int, *, reason: str, extension_id: int | None
) -> Message:
    now = clock.now()
    async with db.write() as conn:
        row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
        status = row["message_status"]
        if not _outbound(row) or status not in {s.value for s in FAILED}:
            refuse(
                message_id,
                "messageStatus",
                status,
                "retry",
                "only a SendingFailed or DeliveryFailed outbound SMS or fax can be retried",
            )
        if row["availability"] == Availability.PURGED.value:
            refuse(
                message_id, "availability", row["availability"], "retry", "its content is erased"
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
                    f"retry of {message_id}: {reason}",
                    detail={"retry_of": message_id},
                ),
                event_row(
                    message_id, now, "retry", f"retried as {new}: {reason}", detail={"retry": new}
                ),
            ],
        )
        message = await fetch_message(conn, new)
    log.info(
        "message.retried",
        message_id=new,
        retry_of=message_id,
        type=message.type.value,
        reason=reason,
    )
    return message


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
    """The original's content: a fax's source documents (it is rendered again: the
    cover page carries the date), an SMS's text."""
    keep = (
        AttachmentType.SOURCE_DOCUMENT.value
        if row["type"] == MessageType.FAX.value
        else AttachmentType.TEXT.value
    )
    a = attachments.c
    found = await conn.execute(
        sa.select(attachments).where(a.message_id == row["id"], a.type == keep).order_by(a.position)
    )
    copies = [
        {**dict(item), "id": new_id(), "message_id": new, "position": position}
        for position, item in enumerate(found.mappings())
    ]
    if copies:
        await conn.execute(attachments.insert(), copies)
