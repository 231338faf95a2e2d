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

import functools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.sql.compiler import SQLCompiler

from gatewayd.clock import Clock
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._message_json import BASE, array, document
from gatewayd.mailbox._rows import fetch_plain, load_messages, select_messages
from gatewayd.mailbox._schema import messages, to_micros
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


def _paging(page: int, per_page: int, total: int, size: int) -> dict[str, Any]:
    """``paging`` as the reference shapes it: pageStart/pageEnd are zero-based element
    indexes; page, pageStart and pageEnd are left out of an empty page."""
    out: dict[str, Any] = {
        "perPage": per_page,
        "totalPages": math.ceil(total / per_page) if total else 0,
        "totalElements": total,
    }
    if size:
        start = (page - 1) * per_page
        out.update(page=page, pageStart=start, pageEnd=start + size - 1)
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class _Page:
    """What every page of a list says besides its messages."""

    total: int
    page: int
    per_page: int
    date_from: datetime
    date_to: datetime
    query: MessageQuery = field(repr=False)

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.per_page) if self.total else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagePage(_Page):
    records: list[Message]

    def paging(self) -> dict[str, Any]:
        return _paging(self.page, self.per_page, self.total, len(self.records))


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonPage(_Page):
    """A page as the message store's list writes it: ``records`` is the JSON array of
    the page's messages (UTF-8), each exactly ``Message.to_json(base_url)``; ``size``
    is how many there are."""

    records: bytes
    size: int

    def paging(self) -> dict[str, Any]:
        return _paging(self.page, self.per_page, self.total, self.size)


# -- the SQL of a list ---------------------------------------------------------------------
#
# A list's SQL depends only on which filters are given and how many values each has (its
# shape); the values are bind parameters. So each shape's statements are built (and, for
# the JSON page, compiled) once per dialect and reused: building and compiling them cost
# more than running them. The caches are bounded (a caller chooses the shape).

_MULTI = ("availability", "direction", "type", "read_status", "message_status")


@dataclass(frozen=True, slots=True)
class _Shape:
    extension: bool
    account: bool
    counts: tuple[int, ...]  # values of each of _MULTI
    conversation: bool
    phone_number: bool
    distinct: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    shape: _Shape
    values: dict[str, Any]
    date_from: datetime
    date_to: datetime
    per_page: int


def _plan(query: MessageQuery, clock: Clock) -> _Plan:
    per_page = min(query.per_page, MAX_PER_PAGE)
    date_to = query.date_to or clock.now()
    date_from = query.date_from or date_to - DEFAULT_WINDOW
    values: dict[str, Any] = {
        "date_from": to_micros(date_from),
        "date_to": to_micros(date_to),
        "limit": per_page,
        "offset": (query.page - 1) * per_page,
    }
    if query.extension_id is not None:
        values["extension_id"] = query.extension_id
    if query.account_id is not None:
        values["account_id"] = query.account_id
    chosen = tuple(  # each value once: a list repeating one is the same list
        tuple(dict.fromkeys(members))
        for members in (
            query.availability,
            query.direction,
            query.message_type,
            query.read_status,
            query.message_status,
        )
    )
    for name, members in zip(_MULTI, chosen, strict=True):
        for number, member in enumerate(members):
            values[f"{name}_{number}"] = member.value
    if query.conversation_id is not None:
        values["conversation_id"] = query.conversation_id
    if query.phone_number:
        values["phone_number"] = query.phone_number
    shape = _Shape(
        extension=query.extension_id is not None,
        account=query.account_id is not None,
        counts=tuple(len(members) for members in chosen),
        conversation=query.conversation_id is not None,
        phone_number=bool(query.phone_number),
        distinct=query.distinct_conversations,
    )
    return _Plan(shape, values, date_from, date_to, per_page)


def _param(name: str, kind: Any = sa.String) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=kind)


def _conditions(shape: _Shape) -> list[sa.ColumnElement[bool]]:
    c = messages.c
    time = sa.BigInteger  # microseconds, as stored: parameters skip the column's type
    where: list[sa.ColumnElement[bool]] = [
        c.creation_time >= _param("date_from", time),
        c.creation_time <= _param("date_to", time),
    ]
    if shape.extension:
        where.append(c.extension_id == _param("extension_id", sa.BigInteger))
    if shape.account:
        where.append(c.account_id == _param("account_id", sa.BigInteger))
    for name, count in zip(_MULTI, shape.counts, strict=True):
        if count:
            where.append(c[name].in_([_param(f"{name}_{n}") for n in range(count)]))
    if shape.conversation:
        where.append(c.conversation_id == _param("conversation_id", sa.BigInteger))
    if shape.phone_number:
        number = _param("phone_number")
        where.append(sa.or_(c.from_number == number, c.to_number == number))
    return where


@dataclass(frozen=True, slots=True)
class _Statements:
    page: sa.CTE  # id, creation_time of the page's messages, newest first
    total: sa.ColumnElement[int]  # every message the list matches


@functools.lru_cache(maxsize=256)
def _statements(shape: _Shape) -> _Statements:
    """The page's ids and the list's total, for a shape. With distinctConversations a
    message counts when it is outside any conversation or the newest (then the highest
    id) of its conversation in that mailbox among those the list matches."""
    c = messages.c
    where = _conditions(shape)
    limit, offset = _param("limit", sa.Integer), _param("offset", sa.Integer)
    if shape.distinct:
        newest = sa.func.row_number().over(
            partition_by=(c.extension_id, c.conversation_id),
            order_by=(c.creation_time.desc(), c.id.desc()),
        )
        ranked = (
            sa.select(c.id, c.creation_time, c.conversation_id, newest.label("n"))
            .where(*where)
            .subquery("ranked")
        )
        r = ranked.c
        kept = (
            sa.select(r.id, r.creation_time)
            .where(sa.or_(r.n == 1, r.conversation_id.is_(None)))
            .cte("kept")
        )
        page = (
            sa.select(kept.c.id, kept.c.creation_time)
            .order_by(kept.c.creation_time.desc(), kept.c.id.desc())
            .limit(limit)
            .offset(offset)
            .cte("page")
        )
        return _Statements(page, sa.select(sa.func.count()).select_from(kept).scalar_subquery())
    page = (
        sa.select(c.id, c.creation_time)
        .where(*where)
        .order_by(c.creation_time.desc(), c.id.desc())
        .limit(limit)
        .offset(offset)
        .cte("page")
    )
    # The first page, not full: its size is the total, and nothing more is counted.
    on_page = sa.select(sa.func.count()).select_from(page).scalar_subquery()
    everything = sa.select(sa.func.count()).select_from(messages).where(*where)
    total = sa.case(
        (sa.and_(offset == 0, on_page < limit), on_page),
        else_=everything.scalar_subquery(),
    )
    return _Statements(page, total)


async def list_messages(db: Database, clock: Clock, query: MessageQuery) -> MessagePage:
    plan = _plan(query, clock)
    built = _statements(plan.shape)
    page = built.page
    newest_first = (page.c.creation_time.desc(), page.c.id.desc())
    async with db.read() as conn:
        chosen = (
            select_messages(conn)
            .select_from(page.join(messages, messages.c.id == page.c.id))
            .order_by(*newest_first)
        )
        records = await load_messages(conn, chosen, plan.values)
        if query.page == 1 and len(records) < plan.per_page:
            total = len(records)  # the whole result fits on the first page
        else:
            counted = sa.select(built.total)
            total = (await conn.execute(counted, plan.values)).scalar_one()
    return MessagePage(
        records=records,
        total=total,
        page=query.page,
        per_page=plan.per_page,
        date_from=plan.date_from,
        date_to=plan.date_to,
        query=query,
    )


@dataclass(frozen=True, slots=True)
class _Compiled:
    """A statement as the driver takes it: its SQL, and where each parameter goes."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]  # values set in the statement itself

    @classmethod
    def of(cls, statement: sa.ClauseElement, dialect: sa.Dialect) -> _Compiled:
        compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        return cls(compiled.string, tuple(compiled.positiontup or ()), dict(compiled.params))

    def parameters(self, values: dict[str, Any]) -> tuple[Any, ...]:
        fixed = self.fixed
        return tuple(values[n] if n in values else fixed[n] for n in self.names)


_DIALECTS: dict[str, sa.Dialect] = {}


def _json_statement(dialect: sa.Dialect, shape: _Shape) -> _Compiled:
    """One row: the page's messages as a JSON array (bytes), how many, and the total."""
    _DIALECTS.setdefault(dialect.name, dialect)  # one compiles as well as another
    return _json_compiled(dialect.name, shape)


@functools.lru_cache(maxsize=256)
def _json_compiled(dialect_name: str, shape: _Shape) -> _Compiled:
    built = _statements(shape)
    page = built.page
    docs = (
        sa.select(document(dialect_name).label("document"), page.c.creation_time, page.c.id)
        .select_from(page.join(messages, messages.c.id == page.c.id))
        .order_by(page.c.creation_time.desc(), page.c.id.desc())
        .subquery("docs")
    )
    newest_first = (docs.c.creation_time.desc(), docs.c.id.desc())
    statement = sa.select(
        array(dialect_name, docs, newest_first), sa.func.count(), built.total
    ).select_from(docs)
    return _Compiled.of(statement, _DIALECTS[dialect_name])


async def list_json(db: Database, clock: Clock, query: MessageQuery, base_url: str) -> JsonPage:
    plan = _plan(query, clock)
    values = {**plan.values, BASE: base_url.rstrip("/")}
    async with db.read() as conn:
        statement = _json_statement(conn.dialect, plan.shape)
        ((records, size, total),) = await fetch_plain(
            conn, statement.sql, statement.parameters(values)
        )
    return JsonPage(
        records=bytes(records),
        size=size,
        total=total,
        page=query.page,
        per_page=plan.per_page,
        date_from=plan.date_from,
        date_to=plan.date_to,
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
