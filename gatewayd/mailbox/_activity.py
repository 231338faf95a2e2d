"""What the mailbox has been doing, for people watching it: status changes counted by
time from the event rows (so they cover every node of a cluster and survive
restarts), the latest failures, and the queue.

Each reads one index: status events by (kind, at), the queue by its partial index of
Queued rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import message_events, messages, to_micros
from gatewayd.mailbox.records import Failure, StatusCount, StatusTally
from gatewayd.model import MessageStatus, MessageType

FAILED = (MessageStatus.SENDING_FAILED.value, MessageStatus.DELIVERY_FAILED.value)


async def status_history(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    account_id: int | None,
) -> list[StatusTally]:
    e = message_events.c
    width = bucket // timedelta(microseconds=1)
    if width <= 0:
        raise ValueError("bucket must be positive")
    start = to_micros(since)
    at = sa.type_coerce(e.at, sa.BigInteger)
    index = ((at - start) // width).label("bucket")
    where: list[Any] = [e.kind == "status", e.at >= since, e.at < until, e.to_value.is_not(None)]
    query = sa.select(index, e.to_value, sa.func.count())
    if account_id is not None:
        query = query.join(messages, messages.c.id == e.message_id)
        where.append(messages.c.account_id == account_id)
    query = query.where(*where).group_by(index, e.to_value).order_by(index, e.to_value)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        StatusTally(since + bucket * int(number), MessageStatus(status), count)
        for number, status, count in rows
        if status in MessageStatus._value2member_map_
    ]


async def failures(db: Database, *, limit: int, account_id: int | None) -> list[Failure]:
    e, m = message_events.c, messages.c
    query = (
        sa.select(e.message_id, e.at, e.to_value, e.reason, m.type, m.extension_id, m.to_number)
        .join(messages, m.id == e.message_id)
        .where(e.kind == "status", e.to_value.in_(FAILED))
        .order_by(e.at.desc(), e.id.desc())
        .limit(limit)
    )
    if account_id is not None:
        query = query.where(m.account_id == account_id)
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        Failure(
            message_id=row[0],
            at=row[1],
            status=MessageStatus(row[2]),
            reason=row[3],
            type=MessageType(row[4]),
            extension_id=row[5],
            to_number=row[6],
        )
        for row in rows
    ]


async def queue(db: Database) -> list[StatusCount]:
    c = messages.c
    query = (
        sa.select(c.type, sa.func.count(), sa.func.min(c.creation_time))
        .where(c.message_status == MessageStatus.QUEUED.value)
        .group_by(c.type)
    )
    async with db.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        StatusCount(MessageType(kind), MessageStatus.QUEUED, count, oldest)
        for kind, count, oldest in rows
    ]
