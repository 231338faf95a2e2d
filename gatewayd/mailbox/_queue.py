"""The mailbox as the queue: leases of due Queued messages.

A lease marks a message with its owner and pushes ``next_attempt_at`` to the lease's
expiry, in the same statement batch that picked it, inside one write transaction
(BEGIN IMMEDIATE on SQLite, SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL), so two
workers never hold the same message. A worker that dies simply stops renewing: when
the expiry passes the message is due again, and the next lease records that the
earlier one lapsed. Every lease counts as an attempt.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.clock import Clock
from gatewayd.errors import LeaseLost
from gatewayd.logging import get_logger
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._driver import Body, Execute, Fetch, Insert, Spelling
from gatewayd.mailbox._rows import (
    EVENT_COLUMNS,
    Row,
    add_events,
    event_row,
    fetch_message,
    load_messages,
    message_row,
    select_messages,
)
from gatewayd.mailbox._schema import from_micros, messages, to_micros
from gatewayd.mailbox._status import refuse
from gatewayd.mailbox.records import Message, SmsToSend
from gatewayd.model import MessageStatus, MessageType

log = get_logger("gatewayd.mailbox")

CarrierNote = tuple[str, dict[str, Any] | None]
"""Why something was done to a message: (the reason, the event's detail)."""
CarrierJob = tuple[str | None, str | None, str, dict[str, Any] | None]
"""A carrier change: (carrier, its job ref, the reason, the event's detail)."""


def check_lease(row: Row, owner: str | None) -> None:
    """LeaseLost unless ``owner`` (when given) still holds the message."""
    if owner is not None and row["lease_owner"] != owner:
        raise LeaseLost(row["id"], owner)


async def _leased_queued(conn: AsyncConnection, message_id: int, owner: str, why: str) -> Row:
    """The message's row, locked: LeaseLost unless ``owner`` holds it, refused (``why``)
    unless it is Queued."""
    row = await message_row(conn, message_id, for_update=True)
    check_lease(row, owner)
    if row["message_status"] != MessageStatus.QUEUED.value:
        refuse(message_id, "messageStatus", row["message_status"], "Queued", why)
    return row


async def lease(
    db: Database,
    clock: Clock,
    owner: str,
    *,
    types: Collection[MessageType],
    limit: int,
    lease_for: float,
) -> list[Message]:
    now = clock.now()
    until = now + timedelta(seconds=lease_for)
    due = (
        sa.select(messages.c.id, messages.c.lease_owner, messages.c.attempts)
        .where(
            # A literal, not a parameter: SQLite uses the partial index only then.
            messages.c.message_status == sa.literal_column("'Queued'"),
            messages.c.type.in_([t.value for t in types]),
            messages.c.next_attempt_at <= now,
        )
        .order_by(messages.c.next_attempt_at, messages.c.id)
        .limit(limit)
    )
    async with db.write() as conn:
        if conn.dialect.name != "sqlite":
            due = due.with_for_update(skip_locked=True)
        picked = (await conn.execute(due)).all()
        if not picked:
            return []
        ids = [row.id for row in picked]
        await conn.execute(
            sa.update(messages)
            .where(messages.c.id.in_(ids))
            .values(lease_owner=owner, next_attempt_at=until, attempts=messages.c.attempts + 1)
        )
        lapsed = [
            event_row(
                row.id,
                now,
                "lease",
                f"lease of {row.lease_owner} expired; leased again",
                detail={
                    "previous_owner": row.lease_owner,
                    "owner": owner,
                    "attempt": row.attempts + 1,
                },
            )
            for row in picked
            if row.lease_owner is not None
        ]
        await add_events(conn, lapsed)
        found = await load_messages(conn, select_messages(conn).where(messages.c.id.in_(ids)))
        order = {message_id: i for i, message_id in enumerate(ids)}
        leased = sorted(found, key=lambda message: order[message.id])  # oldest due first
    for event in lapsed:
        log.warning(
            "message.lease_expired",
            message_id=event["message_id"],
            previous_owner=event["detail"]["previous_owner"],
            owner=owner,
        )
    return leased


QUICK_LEASE = 500
"""A lease of at most this many messages may run on the event loop's thread
(Database.transact's ``quick``): a few milliseconds. The SMS dispatcher's are at most
that (its LEASE_BATCH), and usually its windows' room."""
_LEASE_SMS = (
    "SELECT id, lease_owner, attempts, from_number, to_number, subject, creation_time, "
    "delivery_error_code FROM messages WHERE message_status = 'Queued' AND type = 'SMS' "
    "AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?"
)


async def lease_sms(
    db: Database, clock: Clock, owner: str, *, limit: int, lease_for: float
) -> list[SmsToSend]:
    """``lease`` for SMS, in one trip (_driver.py) and with only what the dispatcher
    needs: it runs for every SMS. The status and type are literals in the SQL, so that
    both databases use the queue's partial index."""
    now = clock.now()
    now_us = to_micros(now)
    until = to_micros(now + timedelta(seconds=lease_for))

    def body(sql: Spelling) -> Body[Sequence[Sequence[Any]]]:
        picked: Sequence[Sequence[Any]] = yield Fetch(
            _LEASE_SMS + ("" if db.is_sqlite else " FOR UPDATE SKIP LOCKED"), (now_us, limit)
        )
        if not picked:
            return picked
        yield Execute(
            "UPDATE messages SET lease_owner = ?, next_attempt_at = ?, attempts = attempts + 1 "
            f"WHERE {sql.any_of('id', 'bigint')}",
            (owner, until, sql.values(row[0] for row in picked)),
        )
        yield Insert(
            "message_events",
            EVENT_COLUMNS,
            [
                (
                    row[0],
                    now_us,
                    "lease",
                    None,
                    None,
                    f"lease of {row[1]} expired; leased again",
                    orjson.dumps(
                        {"previous_owner": row[1], "owner": owner, "attempt": row[2] + 1}
                    ).decode(),
                )
                for row in picked
                if row[1] is not None
            ],
        )
        return picked

    picked = await db.transact(body, quick=limit <= QUICK_LEASE)
    for row in picked:
        if row[1] is not None:
            log.warning(
                "message.lease_expired", message_id=row[0], previous_owner=row[1], owner=owner
            )
    return [
        SmsToSend(
            id=message_id,
            from_number=from_number,
            to_number=to_number,
            text=text,
            attempts=attempts + 1,
            creation_time=from_micros(created),
            delivery_error_code=code,
        )
        for message_id, _, attempts, from_number, to_number, text, created, code in picked
    ]


async def retry_later(
    db: Database, clock: Clock, message_id: int, owner: str, *, delay: float, why: CarrierNote
) -> Message:
    """Give a leased message back, due again in ``delay`` seconds, with an event saying
    ``why`` (a reason and the event's detail)."""
    reason, detail = why
    now = clock.now()
    at = now + timedelta(seconds=delay)
    async with db.write() as conn:
        row = await _leased_queued(conn, message_id, owner, "only a Queued message can be retried")
        await conn.execute(
            sa.update(messages)
            .where(messages.c.id == message_id)
            .values(lease_owner=None, next_attempt_at=at, last_modified_time=now)
        )
        await add_events(
            conn,
            [
                event_row(
                    message_id,
                    now,
                    "retry",
                    reason,
                    detail={
                        "attempt": row["attempts"],
                        "next_attempt_at": at.isoformat(),
                        **(detail or {}),
                    },
                )
            ],
        )
        message = await fetch_message(conn, message_id)
    log.warning(
        "message.retry", message_id=message_id, attempt=row["attempts"], delay=delay, reason=reason
    )
    return message


async def renew(
    db: Database, clock: Clock, message_id: int, owner: str, *, lease_for: float
) -> None:
    until = clock.now() + timedelta(seconds=lease_for)
    async with db.write() as conn:
        result = await conn.execute(
            sa.update(messages)
            .where(
                messages.c.id == message_id,
                messages.c.lease_owner == owner,
                messages.c.message_status == MessageStatus.QUEUED.value,
            )
            .values(next_attempt_at=until)
        )
        if result.rowcount == 0:
            raise LeaseLost(message_id, owner)


async def set_carrier(
    db: Database, clock: Clock, message_id: int, owner: str, job: CarrierJob
) -> Message:
    """Record (or clear) the carrier job a leased Queued message is with, with an event;
    committed before anyone relies on it (a restart asks the carrier about this job)."""
    carrier, ref, reason, detail = job
    now = clock.now()
    async with db.write() as conn:
        await _leased_queued(conn, message_id, owner, "only a Queued message is with a carrier")
        await conn.execute(
            sa.update(messages)
            .where(messages.c.id == message_id)
            .values(carrier=carrier, carrier_ref=ref, last_modified_time=now)
        )
        event_detail = {"carrier": carrier, "carrier_ref": ref, **(detail or {})}
        await add_events(conn, [event_row(message_id, now, "carrier", reason, detail=event_detail)])
        return await fetch_message(conn, message_id)


async def leased_by(db: Database, owner: str, *, types: Collection[MessageType]) -> list[Message]:
    """The Queued messages ``owner`` holds (an earlier life of the same worker)."""
    async with db.read() as conn:
        query = select_messages(conn).where(
            messages.c.lease_owner == owner,
            messages.c.message_status == MessageStatus.QUEUED.value,
            messages.c.type.in_([t.value for t in types]),
        )
        return await load_messages(conn, query)
