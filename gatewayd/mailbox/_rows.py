"""Rows to records and back, and the few statements every mailbox module shares."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.errors import MessageNotFound
from gatewayd.mailbox._schema import attachments, message_events, message_parts, messages
from gatewayd.mailbox.records import Attachment, Event, Message, Part, Party
from gatewayd.model import (
    AttachmentType,
    Availability,
    Direction,
    FaxResolution,
    MessageStatus,
    MessageType,
    PartStatus,
    Priority,
    ReadStatus,
    VmTranscriptionStatus,
)

# A row as SQLAlchemy returns it (RowMapping) or as the store builds it (dict).
Row = Mapping[Any, Any]

# The columns of the rows the hot path writes as tuples (_driver.py), in this order.
MESSAGE_COLUMNS = (
    "id",
    "account_id",
    "extension_id",
    "type",
    "direction",
    "from_party",
    "to_parties",
    "from_number",
    "to_number",
    "creation_time",
    "last_modified_time",
    "read_status",
    "priority",
    "availability",
    "availability_changed_at",
    "message_status",
    "subject",
    "conversation_id",
    "fax_resolution",
    "fax_page_count",
    "cover_index",
    "cover_page_text",
    "sms_delivery_time",
    "delivery_error_code",
    "fax_error_code",
    "vm_transcription_status",
    "pg_to_department",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "send_time",
    "carrier",
    "carrier_ref",
    "failure_reason",
    "sender_email",
    "origin",
)
ATTACHMENT_COLUMNS = (
    "id",
    "message_id",
    "position",
    "type",
    "content_type",
    "file_name",
    "size",
    "sha256",
    "width",
    "height",
    "vm_duration",
)
EVENT_COLUMNS = ("message_id", "at", "kind", "from_value", "to_value", "reason", "detail")


def _lookup(kind: Any) -> dict[str | None, Any]:
    """Value -> member, with None -> None: a dict lookup is ten times faster than
    calling the enum, and this runs for several columns of every row read."""
    return {None: None, **{member.value: member for member in kind}}


_TYPE = _lookup(MessageType)
_DIRECTION = _lookup(Direction)
_READ = _lookup(ReadStatus)
_PRIORITY = _lookup(Priority)
_AVAILABILITY = _lookup(Availability)
_STATUS = _lookup(MessageStatus)
_RESOLUTION = _lookup(FaxResolution)
_TRANSCRIPTION = _lookup(VmTranscriptionStatus)
_ATTACHMENT_TYPE = _lookup(AttachmentType)

# Each message row carries its attachments as one JSON array (a correlated subquery),
# so reading a page of messages is one statement, not two.
_FILE_FIELDS = tuple(column for column in ATTACHMENT_COLUMNS if column != "message_id")


def _files_column(dialect_name: str) -> sa.ColumnElement[Any]:
    a = attachments.c
    pairs: list[Any] = []
    for name in _FILE_FIELDS:  # keys inline, not as parameters: PostgreSQL needs their type
        pairs += [sa.literal_column(f"'{name}'"), a[name]]
    if dialect_name == "postgresql":
        aggregate = sa.func.json_agg(
            aggregate_order_by(sa.func.json_build_object(*pairs), a.position)
        )
    else:
        aggregate = sa.func.json_group_array(sa.func.json_object(*pairs))
    files = sa.select(aggregate).where(a.message_id == messages.c.id).scalar_subquery()
    return sa.type_coerce(files, sa.JSON).label("files")


_SELECTS: dict[str, sa.Select[Any]] = {}


def select_messages(conn: AsyncConnection) -> sa.Select[Any]:
    """SELECT of every message column plus its attachments (``files``); built once per
    dialect, since constructing it costs more than SQLAlchemy's cached compile."""
    dialect = conn.dialect.name
    if dialect not in _SELECTS:
        _SELECTS[dialect] = sa.select(messages, _files_column(dialect))
    return _SELECTS[dialect]


def _attachments_from_json(
    message_id: int, files: list[dict[str, Any]] | None
) -> tuple[Attachment, ...]:
    out = [
        Attachment(
            id=f["id"],
            message_id=message_id,
            position=f["position"],
            type=_ATTACHMENT_TYPE[f["type"]],
            content_type=f["content_type"],
            file_name=f["file_name"],
            size=f["size"],
            sha256=f["sha256"],
            width=f["width"],
            height=f["height"],
            vm_duration=f["vm_duration"],
        )
        for f in files or ()
    ]
    out.sort(key=lambda item: item.position)
    return tuple(out)


def message_from_row(row: Row, files: Sequence[Attachment] | None = None) -> Message:
    """A record from a message row; attachments from ``files`` or the row's own."""
    return Message(
        id=row["id"],
        account_id=row["account_id"],
        extension_id=row["extension_id"],
        type=_TYPE[row["type"]],
        direction=_DIRECTION[row["direction"]],
        from_=Party.from_json(row["from_party"]),
        to=tuple(Party.from_json(p) for p in row["to_parties"]),
        creation_time=row["creation_time"],
        last_modified_time=row["last_modified_time"],
        read_status=_READ[row["read_status"]],
        priority=_PRIORITY[row["priority"]],
        availability=_AVAILABILITY[row["availability"]],
        availability_changed_at=row["availability_changed_at"],
        message_status=_STATUS[row["message_status"]],
        subject=row["subject"],
        conversation_id=row["conversation_id"],
        fax_resolution=_RESOLUTION[row["fax_resolution"]],
        fax_page_count=row["fax_page_count"],
        cover_index=row["cover_index"],
        cover_page_text=row["cover_page_text"],
        sms_delivery_time=row["sms_delivery_time"],
        delivery_error_code=row["delivery_error_code"],
        fax_error_code=row["fax_error_code"],
        vm_transcription_status=_TRANSCRIPTION[row["vm_transcription_status"]],
        pg_to_department=row["pg_to_department"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        send_time=row["send_time"],
        carrier=row["carrier"],
        carrier_ref=row["carrier_ref"],
        failure_reason=row["failure_reason"],
        sender_email=row["sender_email"],
        origin=row["origin"],
        attachments=tuple(files)
        if files is not None
        else _attachments_from_json(row["id"], row["files"]),
    )


def attachment_from_row(row: Row) -> Attachment:
    return Attachment(
        id=row["id"],
        message_id=row["message_id"],
        position=row["position"],
        type=_ATTACHMENT_TYPE[row["type"]],
        content_type=row["content_type"],
        file_name=row["file_name"],
        size=row["size"],
        sha256=row["sha256"],
        width=row["width"],
        height=row["height"],
        vm_duration=row["vm_duration"],
    )


def part_from_row(row: Row) -> Part:
    return Part(
        message_id=row["message_id"],
        index=row["part_index"],
        status=PartStatus(row["status"]),
        link=row["link"],
        carrier_id=row["carrier_id"],
        error_code=row["error_code"],
        submitted_at=row["submitted_at"],
        done_at=row["done_at"],
    )


def event_from_row(row: Row) -> Event:
    return Event(
        id=row["id"],
        message_id=row["message_id"],
        at=row["at"],
        kind=row["kind"],
        from_value=row["from_value"],
        to_value=row["to_value"],
        reason=row["reason"],
        detail=row["detail"],
    )


def event_row(
    message_id: int,
    at: datetime,
    kind: str,
    reason: str,
    *,
    from_value: str | None = None,
    to_value: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "at": at,
        "kind": kind,
        "reason": reason,
        "from_value": from_value,
        "to_value": to_value,
        "detail": dict(detail) if detail else None,
    }


async def add_events(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    if rows:
        await conn.execute(message_events.insert(), list(rows))


async def load_messages(
    conn: AsyncConnection, query: sa.Select[Any], values: Mapping[str, Any] | None = None
) -> list[Message]:
    """Run a query built on ``select_messages`` and return its records."""
    return [message_from_row(row) for row in (await conn.execute(query, values)).mappings()]


async def fetch_plain(
    conn: AsyncConnection, sql: str, parameters: Sequence[Any]
) -> list[Sequence[Any]]:
    """The rows of a statement in the driver's own SQL and parameter style, as plain
    tuples: no result processing. On SQLite it is one call into aiosqlite's thread (a
    statement through SQLAlchemy takes three or four: cursor, execute, fetch, close);
    the driver's error becomes SQLAlchemy's, as ``Database`` translates them."""
    if conn.dialect.name == "sqlite":
        driver: Any = (await conn.get_raw_connection()).driver_connection
        try:
            return list(await driver.execute_fetchall(sql, parameters))
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, parameters, exc, sqlite3.Error) from exc
    return list((await conn.exec_driver_sql(sql, tuple(parameters))).all())


def _scoped(message_id: int, extension_id: int | None) -> sa.ColumnElement[bool]:
    condition = messages.c.id == message_id
    if extension_id is not None:
        condition = sa.and_(condition, messages.c.extension_id == extension_id)
    return condition


async def message_row(
    conn: AsyncConnection,
    message_id: int,
    *,
    extension_id: int | None = None,
    for_update: bool = False,
) -> Row:
    """The message's row, or MessageNotFound (also when it belongs to another extension).
    ``for_update`` locks the row on PostgreSQL; SQLite's write transaction already has."""
    query = sa.select(messages).where(_scoped(message_id, extension_id))
    if for_update and conn.dialect.name != "sqlite":
        query = query.with_for_update()
    row = (await conn.execute(query)).mappings().first()
    if row is None:
        raise MessageNotFound(message_id)
    return row


async def fetch_message(
    conn: AsyncConnection, message_id: int, *, extension_id: int | None = None
) -> Message:
    found = await load_messages(
        conn, select_messages(conn).where(_scoped(message_id, extension_id))
    )
    if not found:
        raise MessageNotFound(message_id)
    return found[0]


async def parts_of(conn: AsyncConnection, message_id: int) -> list[Part]:
    result = await conn.execute(
        sa.select(message_parts)
        .where(message_parts.c.message_id == message_id)
        .order_by(message_parts.c.part_index)
    )
    return [part_from_row(r) for r in result.mappings()]
