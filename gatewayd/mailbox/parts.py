"""SMS parts: each has its own carrier id and status; the message status follows them
(gatewayd.model.derive_sms_status) and never moves back. A receipt that changes
nothing (late, duplicate, for a part already final) is kept as an event."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox.queue import check_lease
from gatewayd.mailbox.records import Message, Part
from gatewayd.mailbox.rows import (
    Row,
    add_events,
    event_row,
    fetch_message,
    message_row,
    part_from_row,
    parts_of,
)
from gatewayd.mailbox.schema import message_parts, messages
from gatewayd.mailbox.status import move_status, refuse
from gatewayd.model import (
    MessageStatus,
    MessageType,
    PartStatus,
    TransitionRefused,
    check_part_transition,
    derive_sms_status,
    status_path,
)

if TYPE_CHECKING:
    from gatewayd.mailbox.store import Mailbox

log = get_logger("gatewayd.mailbox")


async def set_parts(
    mailbox: Mailbox, message_id: int, count: int, *, lease_owner: str | None
) -> list[Part]:
    """Record that the SMS goes out in ``count`` parts (once; the same count again is
    a no-op, so a retried message keeps the parts already accepted)."""
    if count < 1:
        raise ValueError("an SMS has at least one part")
    now = mailbox.clock.now()
    async with mailbox.db.write() as conn:
        row = await message_row(conn, message_id, for_update=True)
        check_lease(row, lease_owner)
        if row["type"] != MessageType.SMS.value:
            raise StoreError(f"message {message_id} is a {row['type']}, not an SMS")
        existing = await parts_of(conn, message_id)
        if existing:
            if len(existing) != count:
                raise StoreError(
                    f"message {message_id} already has {len(existing)} parts, not {count}"
                )
            return existing
        await conn.execute(
            message_parts.insert(),
            [
                {"message_id": message_id, "part_index": i, "status": PartStatus.QUEUED.value}
                for i in range(count)
            ],
        )
        await add_events(
            conn,
            [
                event_row(
                    message_id, now, "part", f"split into {count} parts", detail={"parts": count}
                )
            ],
        )
        return await parts_of(conn, message_id)


async def _part_row(conn: AsyncConnection, message_id: int, index: int) -> Row:
    query = sa.select(message_parts).where(
        message_parts.c.message_id == message_id, message_parts.c.part_index == index
    )
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise StoreError(f"message {message_id} has no part {index} (set_parts first)")
    return row


async def _move_part(
    conn: AsyncConnection,
    message: Row,
    part: Row,
    to: PartStatus,
    *,
    now: datetime,
    reason: str,
    values: Mapping[str, Any],
    detail: Mapping[str, Any] | None = None,
) -> None:
    """Move one part, then bring the message status to what its parts now say."""
    current = PartStatus(part["status"])
    try:
        check_part_transition(current, to)
    except TransitionRefused as exc:
        refuse(message["id"], f"part {part['part_index']}", current, to, str(exc))
    await conn.execute(
        sa.update(message_parts)
        .where(
            message_parts.c.message_id == part["message_id"],
            message_parts.c.part_index == part["part_index"],
        )
        .values(status=to.value, **values)
    )
    event_detail = {
        "part": part["part_index"],
        **{k: v for k, v in values.items() if isinstance(v, str | int)},
        **(detail or {}),
    }
    await add_events(
        conn,
        [
            event_row(
                message["id"],
                now,
                "part",
                reason,
                from_value=current.value,
                to_value=to.value,
                detail=event_detail,
            )
        ],
    )
    await _follow_parts(conn, message, now=now, reason=reason, detail=event_detail)


async def _follow_parts(
    conn: AsyncConnection,
    message: Row,
    *,
    now: datetime,
    reason: str,
    detail: Mapping[str, Any],
) -> None:
    parts = await parts_of(conn, message["id"])
    current = MessageStatus(message["message_status"])
    target = derive_sms_status(p.status for p in parts)
    path = status_path(MessageType.SMS, current, target)
    if path is None:
        # The parts say something the message can no longer become (it is final).
        await add_events(
            conn,
            [
                event_row(
                    message["id"],
                    now,
                    "note",
                    f"status stays {current}: parts say {target}",
                    detail=detail,
                )
            ],
        )
        return
    if not path:
        await conn.execute(
            sa.update(messages).where(messages.c.id == message["id"]).values(last_modified_time=now)
        )
        return
    values: dict[str, Any] = {}
    if target is MessageStatus.DELIVERED:
        done = [p.done_at for p in parts if p.done_at is not None]
        values["sms_delivery_time"] = max(done) if done else now
    if target in (MessageStatus.DELIVERY_FAILED, MessageStatus.SENDING_FAILED):
        values["delivery_error_code"] = next((p.error_code for p in parts if p.error_code), None)
    await move_status(conn, message, path, now=now, reason=reason, detail=detail, values=values)


async def accepted(
    mailbox: Mailbox,
    message_id: int,
    index: int,
    *,
    link: str,
    carrier_id: str,
    lease_owner: str | None,
) -> Message:
    """submit_sm_resp OK: the SMSC took this part and named it ``carrier_id``."""
    now = mailbox.clock.now()
    async with mailbox.db.write() as conn:
        message = await message_row(conn, message_id, for_update=True)
        check_lease(message, lease_owner)
        part = await _part_row(conn, message_id, index)
        await _move_part(
            conn,
            message,
            part,
            PartStatus.SENT,
            now=now,
            reason="accepted by the SMSC",
            values={"link": link, "carrier_id": carrier_id, "submitted_at": now},
        )
        return await fetch_message(conn, message_id)


async def refused(
    mailbox: Mailbox,
    message_id: int,
    index: int,
    *,
    error_code: str,
    reason: str,
    lease_owner: str | None,
) -> Message:
    """A permanent refusal of one part: the whole SMS is SendingFailed."""
    now = mailbox.clock.now()
    async with mailbox.db.write() as conn:
        message = await message_row(conn, message_id, for_update=True)
        check_lease(message, lease_owner)
        part = await _part_row(conn, message_id, index)
        await _move_part(
            conn,
            message,
            part,
            PartStatus.SENDING_FAILED,
            now=now,
            reason=reason,
            values={"error_code": error_code, "done_at": now},
        )
        return await fetch_message(conn, message_id)


async def apply_receipt(
    mailbox: Mailbox,
    link: str,
    carrier_id: str,
    outcome: PartStatus | None,
    *,
    error_code: str | None,
    done_at: datetime | None,
    detail: dict[str, Any] | None,
) -> Message | None:
    """A delivery receipt for the part the SMSC calls ``carrier_id`` on ``link``.
    ``outcome`` is Delivered, DeliveryFailed, or None for an intermediate state
    (ENROUTE), which is only recorded. Returns None when no part has that id."""
    now = mailbox.clock.now()
    receipt = {
        "link": link,
        "carrier_id": carrier_id,
        "error_code": error_code,
        "done_at": done_at.isoformat() if done_at else None,
        **(detail or {}),
    }
    async with mailbox.db.write() as conn:
        found = (
            (
                await conn.execute(
                    sa.select(message_parts)
                    .where(message_parts.c.link == link, message_parts.c.carrier_id == carrier_id)
                    .order_by(message_parts.c.submitted_at.desc())
                    .limit(1)
                )
            )
            .mappings()
            .first()
        )
        if found is None:
            return None
        part = part_from_row(found)
        message = await message_row(conn, part.message_id, for_update=True)
        if outcome is None or part.status is not PartStatus.SENT:
            why = (
                "intermediate receipt"
                if outcome is None
                else f"receipt {outcome} for part {part.index} already {part.status}"
            )
            await add_events(
                conn,
                [
                    event_row(
                        part.message_id, now, "receipt", why, detail={**receipt, "part": part.index}
                    )
                ],
            )
            if outcome is not None:
                log.info(
                    "message.receipt_ignored",
                    message_id=part.message_id,
                    part=part.index,
                    part_status=part.status.value,
                    outcome=outcome.value,
                )
            return await fetch_message(conn, part.message_id)
        values = {"done_at": done_at or now, "error_code": error_code}
        await _move_part(
            conn,
            message,
            found,
            outcome,
            now=now,
            reason=f"receipt: {outcome}",
            values=values,
            detail=receipt,
        )
        return await fetch_message(conn, part.message_id)
