"""Listing a mailbox with the message store's filters, defaults and paging, and the
reads of message sync.

Defaults as the message store gives them: Deleted and Purged are hidden unless asked
for; dateTo is now and dateFrom 24 hours before dateTo; perPage 100, at most 1000 (more
is cut to 1000). Newest first. ``distinctConversations`` keeps the newest message of
each conversation (messages outside any conversation, such as faxes, each stand alone).

Sync reads a mailbox without paging: a full sync the Alive messages created in a window,
newest first; an incremental sync every message changed (or deleted, or restored)
since a moment, oldest change first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import load_messages, select_messages
from gatewayd.mailbox._schema import messages
from gatewayd.mailbox.records import Message
from gatewayd.model import (
    Availability,
    Direction,
    MessageStatus,
    MessageType,
    ReadStatus,
)

DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000
DEFAULT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class MessageQuery:
    """One mailbox (``extension_id``), or every mailbox when it is None (operators)."""

    extension_id: int | None
    account_id: int | None = None
    availability: tuple[Availability, ...] = (Availability.ALIVE,)
    conversation_id: int | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    direction: tuple[Direction, ...] = ()
    distinct_conversations: bool = False
    message_type: tuple[MessageType, ...] = ()
    read_status: tuple[ReadStatus, ...] = ()
    message_status: tuple[MessageStatus, ...] = ()
    phone_number: str | None = None
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def __post_init__(self) -> None:
        if self.page < 1:
            raise ValueError("page must be 1 or more")
        if self.per_page < 1:
            raise ValueError("perPage must be 1 or more")


@dataclass(frozen=True, slots=True)
class MessagePage:
    records: list[Message]
    total: int
    page: int
    per_page: int
    date_from: datetime
    date_to: datetime
    query: MessageQuery = field(repr=False)

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.per_page) if self.total else 0

    def paging(self) -> dict[str, Any]:
        """``paging`` as the reference shapes it: pageStart/pageEnd are zero-based
        element indexes; page, pageStart and pageEnd are left out of an empty page."""
        out: dict[str, Any] = {
            "perPage": self.per_page,
            "totalPages": self.total_pages,
            "totalElements": self.total,
        }
        if self.records:
            start = (self.page - 1) * self.per_page
            out.update(page=self.page, pageStart=start, pageEnd=start + len(self.records) - 1)
        return out


def _conditions(
    query: MessageQuery, date_from: datetime, date_to: datetime, table: sa.FromClause = messages
) -> list[Any]:
    c = table.c
    where: list[Any] = [c.creation_time >= date_from, c.creation_time <= date_to]
    if query.extension_id is not None:
        where.append(c.extension_id == query.extension_id)
    if query.account_id is not None:
        where.append(c.account_id == query.account_id)
    for column, values in (
        (c.availability, query.availability),
        (c.direction, query.direction),
        (c.type, query.message_type),
        (c.read_status, query.read_status),
        (c.message_status, query.message_status),
    ):
        if values:
            where.append(column.in_([v.value for v in values]))
    if query.conversation_id is not None:
        where.append(c.conversation_id == query.conversation_id)
    if query.phone_number:
        where.append(sa.or_(c.from_number == query.phone_number, c.to_number == query.phone_number))
    return where


def _newest_of_conversation(
    query: MessageQuery, date_from: datetime, date_to: datetime
) -> sa.ColumnElement[bool]:
    """True for a message outside any conversation, or for the newest message of its
    conversation among those the query matches."""
    c = messages.c
    newer = messages.alias("newer")
    n = newer.c
    newer_exists = sa.exists().where(
        n.extension_id == c.extension_id,
        n.conversation_id == c.conversation_id,
        sa.or_(
            n.creation_time > c.creation_time,
            sa.and_(n.creation_time == c.creation_time, n.id > c.id),
        ),
        *_conditions(query, date_from, date_to, newer),
    )
    return sa.or_(c.conversation_id.is_(None), ~newer_exists)


async def list_messages(db: Database, clock: Clock, query: MessageQuery) -> MessagePage:
    per_page = min(query.per_page, MAX_PER_PAGE)
    date_to = query.date_to or clock.now()
    date_from = query.date_from or date_to - DEFAULT_WINDOW
    where = _conditions(query, date_from, date_to)
    if query.distinct_conversations:
        where.append(_newest_of_conversation(query, date_from, date_to))
    c = messages.c
    newest_first = (c.creation_time.desc(), c.id.desc())
    # Pick the page's ids from the index first, then read only those rows (and their
    # attachments): skipping earlier pages then costs index entries, not whole rows.
    page_ids = (
        sa.select(c.id)
        .where(*where)
        .order_by(*newest_first)
        .limit(per_page)
        .offset((query.page - 1) * per_page)
    )
    async with db.read() as conn:
        records = await load_messages(
            conn, select_messages(conn).where(c.id.in_(page_ids)).order_by(*newest_first)
        )
        if query.page == 1 and len(records) < per_page:
            total = len(records)  # the whole result fits on the first page
        else:
            counted = sa.select(sa.func.count()).select_from(messages).where(*where)
            total = (await conn.execute(counted)).scalar_one()
    return MessagePage(
        records=records,
        total=total,
        page=query.page,
        per_page=per_page,
        date_from=date_from,
        date_to=date_to,
        query=query,
    )


@dataclass(frozen=True, slots=True)
class SyncQuery:
    """One mailbox's messages for message sync. With ``changed_since`` (incremental):
    every message changed since then, whatever its availability, oldest change first.
    Without (full): the Alive messages created from ``date_from`` to ``date_to``,
    newest first. At most ``limit`` messages."""

    extension_id: int
    limit: int
    changed_since: datetime | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    message_type: tuple[MessageType, ...] = ()
    direction: tuple[Direction, ...] = ()
    conversation_id: int | None = None


async def sync_messages(db: Database, query: SyncQuery) -> list[Message]:
    c = messages.c
    where: list[Any] = [c.extension_id == query.extension_id]
    order: list[Any]
    if query.changed_since is not None:
        since = query.changed_since
        where.append(sa.or_(c.last_modified_time >= since, c.availability_changed_at >= since))
        order = [c.last_modified_time, c.id]
    else:
        if query.date_from is not None:
            where.append(c.creation_time >= query.date_from)
        if query.date_to is not None:
            where.append(c.creation_time <= query.date_to)
        where.append(c.availability == Availability.ALIVE.value)
        order = [c.creation_time.desc(), c.id.desc()]
    if query.message_type:
        where.append(c.type.in_([t.value for t in query.message_type]))
    if query.direction:
        where.append(c.direction.in_([d.value for d in query.direction]))
    if query.conversation_id is not None:
        where.append(c.conversation_id == query.conversation_id)
    async with db.read() as conn:
        chosen = select_messages(conn).where(*where).order_by(*order).limit(query.limit)
        return await load_messages(conn, chosen)
