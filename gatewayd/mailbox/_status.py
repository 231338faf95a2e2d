"""Status changes inside an open write transaction: checked against the machine in
gatewayd.model, written together with their event rows, refused with a typed error."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.errors import InvalidTransition
from gatewayd.logging import get_logger
from gatewayd.mailbox._rows import Row, add_events, event_row
from gatewayd.mailbox._schema import messages
from gatewayd.model import MessageStatus, MessageType, TransitionRefused, check_transition

log = get_logger("gatewayd.mailbox")

FAILED = (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED)


def refuse(message_id: int, field: str, current: str, wanted: str, why: str) -> NoReturn:
    log.warning(
        "message.transition_refused",
        message_id=message_id,
        field=field,
        current=current,
        wanted=wanted,
        why=why,
    )
    raise InvalidTransition(message_id, field, current, wanted, why)


async def move_status(
    conn: AsyncConnection,
    row: Row,
    path: list[MessageStatus],
    *,
    now: datetime,
    reason: str,
    detail: Mapping[str, Any] | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Take the message through ``path`` (each step checked), one event per step, and
    write ``values`` with the last step. Returns the columns written."""
    message_id = row["id"]
    message_type = MessageType(row["type"])
    current = MessageStatus(row["message_status"])
    events = []
    for wanted in path:
        try:
            check_transition(message_type, current, wanted)
        except TransitionRefused as exc:
            refuse(message_id, "messageStatus", current, wanted, str(exc))
        events.append(
            event_row(
                message_id,
                now,
                "status",
                reason,
                from_value=current.value,
                to_value=wanted.value,
                detail=detail,
            )
        )
        log.info(
            "message.status",
            message_id=message_id,
            type=message_type.value,
            previous=current.value,
            status=wanted.value,
            reason=reason,
        )
        current = wanted
    changes: dict[str, Any] = {"message_status": current.value, "last_modified_time": now}
    if path and MessageStatus(row["message_status"]) is MessageStatus.QUEUED:
        changes.update(next_attempt_at=None, lease_owner=None)
    if current in FAILED and path:
        changes["failure_reason"] = reason
    changes.update(values or {})
    await conn.execute(sa.update(messages).where(messages.c.id == message_id).values(changes))
    await add_events(conn, events)
    return changes
