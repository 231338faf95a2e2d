"""The notifier's cursor over the event rows, and its queue of result emails.

``collect`` reads the status events after the cursor (only those old enough that no
transaction still writing could commit an event with a smaller id), asks the caller
which deserve an email and to whom, queues those (one per message and kind) and moves
the cursor, all in one transaction: nothing is queued twice or skipped across
restarts. On the first call the cursor starts at the newest event: history is not
told. ``due`` and ``mark`` serve the sending side.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import message_events, messages, notifications, notify_cursor
from gatewayd.mailbox.records import NotificationDue, StatusEvent
from gatewayd.model import Direction, MessageStatus, MessageType

Decide = Callable[[StatusEvent], tuple[str, str] | None]
"""For a status event: (kind, recipient) of the email it deserves, or None."""


async def collect(
    db: Database, clock: Clock, decide: Decide, *, settle: timedelta, batch: int
) -> int:
    added = 0
    async with db.write() as conn:
        cursor = await conn.scalar(sa.select(notify_cursor.c.last_event_id))
        if cursor is None:
            newest = await conn.scalar(sa.select(sa.func.max(message_events.c.id))) or 0
            await conn.execute(notify_cursor.insert().values(id=1, last_event_id=newest))
            return 0
        e, m = message_events.c, messages.c
        now = clock.now()
        query = (
            sa.select(
                e.id, e.message_id, e.to_value, m.type, m.direction, m.extension_id, m.sender_email
            )
            .select_from(message_events.join(messages, messages.c.id == e.message_id))
            .where(e.id > cursor, e.kind == "status", e.at <= now - settle)
            .order_by(e.id)
            .limit(batch)
        )
        rows = (await conn.execute(query)).all()
        for row in rows:
            wanted = decide(
                StatusEvent(
                    event_id=row.id,
                    message_id=row.message_id,
                    status=MessageStatus(row.to_value),
                    type=MessageType(row.type),
                    direction=Direction(row.direction),
                    extension_id=row.extension_id,
                    sender_email=row.sender_email,
                )
            )
            if wanted is None:
                continue
            kind, recipient = wanted
            n = notifications.c
            exists = await conn.scalar(
                sa.select(n.id).where(n.message_id == row.message_id, n.kind == kind)
            )
            if exists is not None:
                continue
            await conn.execute(
                notifications.insert().values(
                    message_id=row.message_id,
                    kind=kind,
                    recipient=recipient,
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
            added += 1
        if rows:
            await conn.execute(sa.update(notify_cursor).values(last_event_id=rows[-1].id))
    return added


async def due(db: Database, clock: Clock, *, limit: int) -> list[NotificationDue]:
    n = notifications.c
    query = (
        sa.select(n.id, n.message_id, n.kind, n.recipient, n.attempts, n.created_at)
        .where(n.state == "pending", n.next_attempt_at <= clock.now())
        .order_by(n.next_attempt_at)
        .limit(limit)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        NotificationDue(r.id, r.message_id, r.kind, r.recipient, r.attempts, r.created_at)
        for r in rows
    ]


async def mark(db: Database, notification_id: int, values: dict[str, object]) -> None:
    """Set these columns of one notification (state, attempts, last_error, ...)."""
    async with db.write() as conn:
        await conn.execute(
            sa.update(notifications).where(notifications.c.id == notification_id).values(values)
        )
