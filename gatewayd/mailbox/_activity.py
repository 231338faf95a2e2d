"""Status changes counted by time from the event rows, for the web console's charts:
they cover every node of a cluster and survive restarts. One query per status, each
on the partial index of status events by (status entered, time)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gatewayd.mailbox._database import Database
from gatewayd.mailbox._schema import message_events, messages, to_micros
from gatewayd.mailbox.records import StatusBucket
from gatewayd.model import MessageStatus


async def status_history(
    db: Database,
    *,
    since: datetime,
    until: datetime,
    bucket: timedelta,
    account_id: int | None,
) -> list[StatusBucket]:
    e = message_events.c
    width = bucket // timedelta(microseconds=1)
    if width <= 0:
        raise ValueError("bucket must be positive")
    start = to_micros(since)
    at = sa.type_coerce(e.at, sa.BigInteger)
    index = ((at - start) // width).label("bucket")
    out: list[StatusBucket] = []
    async with db.read() as conn:
        for status in MessageStatus:
            # the literal kind = 'status' lets SQLite choose the partial index
            where: list[Any] = [
                sa.text("message_events.kind = 'status'"),
                e.to_value == status.value,
                e.at >= since,
                e.at < until,
            ]
            query = sa.select(index, sa.func.count())
            if account_id is not None:
                query = query.join(messages, messages.c.id == e.message_id)
                where.append(messages.c.account_id == account_id)
            query = query.where(*where).group_by(index)
            for number, count in (await conn.execute(query)).all():
                out.append(StatusBucket(since + bucket * int(number), status, count))
    out.sort(key=lambda item: (item.start, item.status.value))
    return out
