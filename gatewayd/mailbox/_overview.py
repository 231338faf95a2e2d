"""What the mailbox has been doing, at a glance (``gatewayd status``, the admin API):
the queue, the statuses messages entered in a recent window, the latest failures.

Each reads an index, not the table: the queue its partial index of Queued rows; the
other two the partial index of status events by (status entered, time). The
conditions that select a partial index are written as literals (SQLite uses such an
index only when the query's own text implies the index's WHERE). Counting from the
events, not from in-process counters, makes the figures cover every node sharing the
mailbox and survive restarts.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import message_events, messages
from gatewayd.mailbox.records import Failure, StatusCount, StatusTally
from gatewayd.model import Direction, MessageStatus, MessageType

FAILED = (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED)
_STATUS_EVENT = message_events.c.kind == sa.literal_column("'status'")
_QUEUED = messages.c.message_status == sa.literal_column("'Queued'")


async def queue(db: Database) -> list[StatusCount]:
    c = messages.c
    query = sa.select(c.type, sa.func.count(), sa.func.min(c.creation_time)).where(_QUEUED)
    async with db.read() as conn:
        rows = (await conn.execute(query.group_by(c.type))).all()
    return [
        StatusCount(MessageType(kind), MessageStatus.QUEUED, count, oldest)
        for kind, count, oldest in rows
    ]


async def tallies(db: Database, since: datetime) -> list[StatusTally]:
    e, m = message_events.c, messages.c
    query = (
        sa.select(m.type, m.direction, e.to_value, sa.func.count())
        .select_from(message_events.join(messages, m.id == e.message_id))
        .where(_STATUS_EVENT, e.to_value.in_([s.value for s in MessageStatus]), e.at >= since)
        .group_by(m.type, m.direction, e.to_value)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return sorted(
        (
            StatusTally(MessageType(kind), Direction(direction), MessageStatus(status), count)
            for kind, direction, status, count in rows
        ),
        key=lambda t: (t.type.value, t.direction.value, list(MessageStatus).index(t.status)),
    )


async def failures(db: Database, *, limit: int, account_id: int | None) -> list[Failure]:
    """The newest ``limit`` moves to a failed status: one index range per status,
    newest first, merged."""

    async def newest(status: MessageStatus) -> list[Any]:
        e, m = message_events.c, messages.c
        query = (
            sa.select(
                e.message_id,
                e.at,
                e.to_value,
                e.reason,
                m.type,
                m.extension_id,
                m.to_number,
                m.fax_error_code,
                m.delivery_error_code,
            )
            .select_from(message_events.join(messages, m.id == e.message_id))
            .where(_STATUS_EVENT, e.to_value == status.value)
            .order_by(e.at.desc(), e.id.desc())
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(m.account_id == account_id)
        async with db.read() as conn:
            return list((await conn.execute(query)).all())

    found = [row for rows in await asyncio.gather(*map(newest, FAILED)) for row in rows]
    found.sort(key=lambda row: row[1], reverse=True)
    return [
        Failure(
            message_id=row[0],
            at=row[1],
            status=MessageStatus(row[2]),
            reason=row[3],
            type=MessageType(row[4]),
            extension_id=row[5],
            to_number=row[6],
            code=row[7] or row[8],
        )
        for row in found[:limit]
    ]


async def ping(db: Database) -> None:
    """One round trip to the database (StoreUnavailable when it cannot be reached)."""
    async with db.read() as conn:
        await conn.execute(sa.select(sa.literal(1)))
