"""Status changes inside an open write transaction: checked against the machine in
gatewayd.model, written together with their event rows, refused with a typed error;
and the watchers told of them once committed (``StatusFeed``).

A move to SendingFailed or DeliveryFailed is logged at warning, any other at info.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, NoReturn

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.errors import InvalidTransition
from gatewayd.logging import get_logger
from gatewayd.mailbox._rows import Row, add_events, event_row
from gatewayd.mailbox._schema import messages
from gatewayd.mailbox.records import StatusEntered
from gatewayd.model import (
    Direction,
    MessageStatus,
    MessageType,
    TransitionRefused,
    check_transition,
)

log = get_logger("gatewayd.mailbox")

FAILED = (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED)

StatusWatcher = Callable[[StatusEntered], None]


class StatusFeed:
    """Who wants to know of every status a message enters (the daemon's metrics):
    told after the commit, in the process that wrote it. A watcher that raises is
    logged and does not stop the others."""

    def __init__(self) -> None:
        self.watchers: list[StatusWatcher] = []

    def publish(self, entered: Iterable[StatusEntered]) -> None:
        if not self.watchers:
            return
        for item in entered:
            for watcher in self.watchers:
                try:
                    watcher(item)
                except Exception:  # a watcher's bug must not undo a committed change
                    log.exception("mailbox.status_watcher_failed", message_id=item.message_id)


def log_status(message_id: int, type_: str, previous: str, status: str, reason: str) -> None:
    """``message.status``: a failure at warning, anything else at info."""
    failed = status in (MessageStatus.SENDING_FAILED.value, MessageStatus.DELIVERY_FAILED.value)
    (log.warning if failed else log.info)(
        "message.status",
        message_id=message_id,
        type=type_,
        previous=previous,
        status=status,
        reason=reason,
    )


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
) -> list[StatusEntered]:
    """Take the message through ``path`` (each step checked), one event per step, and
    write ``values`` with the last step. Returns the statuses entered, for the
    ``StatusFeed`` once the transaction is committed."""
    message_id = row["id"]
    message_type = MessageType(row["type"])
    current = MessageStatus(row["message_status"])
    events = []
    entered = []
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
        log_status(message_id, message_type.value, current.value, wanted.value, reason)
        entered.append(wanted)
        current = wanted
    changes: dict[str, Any] = {"message_status": current.value, "last_modified_time": now}
    if path and MessageStatus(row["message_status"]) is MessageStatus.QUEUED:
        changes.update(next_attempt_at=None, lease_owner=None)
    if current in FAILED and path:
        changes["failure_reason"] = reason
    changes.update(values or {})
    await conn.execute(sa.update(messages).where(messages.c.id == message_id).values(changes))
    await add_events(conn, events)
    code_column = "fax_error_code" if message_type is MessageType.FAX else "delivery_error_code"
    code = changes.get(code_column, row[code_column])
    direction = Direction(row["direction"])
    return [
        StatusEntered(
            message_id,
            message_type,
            direction,
            status,
            reason,
            code if status in FAILED else None,
        )
        for status in entered
    ]
