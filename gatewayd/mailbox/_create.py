"""Storing new messages: attachment bytes first, then the rows and a creation event
per message in one transaction (through the group commit, _commit.py), written as
tuples in their stored form; the records the callers get back are made from the same
values, not read back.

Ids come from _ids.new_ids. An SMS is threaded by its two numbers (a conversation id
derived from the account and both numbers, so a reply finds the thread); a new pager
thread is named after its first message unless the caller gives one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from gatewayd.clock import Clock
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._blobs import BlobRef, BlobStore
from gatewayd.mailbox._commit import GroupCommit, NewRows
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._ids import new_ids
from gatewayd.mailbox._lifecycle import Lifecycle
from gatewayd.mailbox._schema import to_micros
from gatewayd.mailbox._status import StatusFeed
from gatewayd.mailbox.records import Attachment, Message, NewMessage, StatusEntered
from gatewayd.model import (
    Availability,
    MessageStatus,
    MessageType,
    TransitionRefused,
    initial_status,
)

log = get_logger("gatewayd.mailbox")


def _conversation_id(account_id: int, number_a: str, number_b: str) -> int:
    """The conversation of two phone numbers in one account: the same id whichever
    side wrote, so replies thread with the messages before them."""
    low, high = sorted((number_a, number_b))
    digest = hashlib.blake2b(f"{account_id}|{low}|{high}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1) or 1


class Creator:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        clock: Clock,
        lifecycle: Lifecycle,
        feed: StatusFeed,
    ) -> None:
        self.blobs = blobs
        self.clock = clock
        self._lifecycle = lifecycle
        self._feed = feed
        self._commit = GroupCommit(db)

    async def close(self) -> None:
        await self._commit.close()

    async def create_many(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store several messages atomically: all of them or none (one email with
        several recipients becomes several messages)."""
        if not batch:
            return []
        statuses = [self._initial_status(new) for new in batch]  # refuse before any I/O
        refs = await self._store_bytes(batch)
        try:
            return await self._written(batch, statuses, refs)
        except BaseException:
            # The rows never came: their files go with the next sweep (if nothing else
            # has come to use them by then).
            self._lifecycle.pending_erase.update(
                ref.sha256 for group in refs for ref in group if ref is not None
            )
            raise

    def create_texts(
        self, batch: Sequence[NewMessage], *, eager: bool = True
    ) -> asyncio.Future[list[Message]]:
        """``create_many`` for messages whose attachments are only their text (SMS,
        pager), with no task: the future of the records. StoreError at once when a
        message may not be stored; ValueError for one with bytes to store. ``eager``:
        see _written."""
        statuses = [self._initial_status(new) for new in batch]
        if any(not item.message_text for new in batch for item in new.attachments):
            raise ValueError("create_texts stores messages with no attachment bytes")
        refs: list[list[BlobRef | None]] = [[None] * len(new.attachments) for new in batch]
        return self._written(batch, statuses, refs, eager=eager)

    def _written(
        self,
        batch: Sequence[NewMessage],
        statuses: Sequence[MessageStatus],
        refs: list[list[BlobRef | None]],
        *,
        eager: bool = False,
    ) -> asyncio.Future[list[Message]]:
        """The future of the records once the group commit has written the rows, set
        by a callback on its answer, which first tells of their creation. Nothing the
        caller does to the future stops the write or what follows it; anything that
        fails after the commit fails the future, so that no caller is left waiting.
        ``eager``: the group commit may write a batch of such callers alone on the
        event loop's thread however small (_commit.py, QUICK_AT_LEAST)."""
        made: asyncio.Future[list[Message]] = asyncio.get_running_loop().create_future()
        if not batch:
            made.set_result([])
            return made

        def done(written: asyncio.Future[NewRows]) -> None:
            try:
                if written.cancelled():  # (nobody else holds it: not to be seen)
                    raise StoreError("the mailbox gave up the write")
                records = self._created(written.result())  # (its failure raised here)
            except Exception as exc:
                if not made.done():  # (else the caller gave up)
                    made.set_exception(exc)
                return
            if not made.done():
                made.set_result(records)

        written = self._commit.insert(
            lambda: _rows_for(self.clock, batch, statuses, refs), eager=eager
        )
        written.add_done_callback(done)
        return made

    def _created(self, rows: NewRows) -> list[Message]:
        """What follows a commit of new messages: their creation told (status feed,
        and the debug log when it is on); their records."""
        if log.isEnabledFor(logging.DEBUG):  # (a line a message costs even when dropped)
            for message in rows.records:
                log.debug(
                    "message.created",
                    message_id=message.id,
                    type=message.type.value,
                    direction=message.direction.value,
                    status=message.message_status.value,
                    extension_id=message.extension_id,
                    origin=message.origin,
                    attachments=len(message.attachments),
                )
        self._feed.publish(
            StatusEntered(m.id, m.type, m.direction, m.message_status, "created")
            for m in rows.records
        )
        return rows.records

    async def _store_bytes(self, batch: Sequence[NewMessage]) -> list[list[BlobRef | None]]:
        """Each attachment's bytes into the blob store (None for the message's text)."""
        sources = [
            item.data if item.data is not None else item.path
            for new in batch
            for item in new.attachments
        ]
        stored = iter(await self.blobs.put_all(sources))
        return [[next(stored) for _ in new.attachments] for new in batch]

    @staticmethod
    def _initial_status(new: NewMessage) -> MessageStatus:
        try:
            return initial_status(new.type, new.direction)
        except TransitionRefused as exc:
            raise StoreError(str(exc)) from exc


def _rows_for(
    clock: Clock,
    batch: Sequence[NewMessage],
    statuses: Sequence[MessageStatus],
    refs: list[list[BlobRef | None]],
) -> NewRows:
    """The rows of a batch with fresh ids, and the records they are."""
    now = clock.now()
    now_us = to_micros(now)
    ids = iter(new_ids(sum(1 + len(new.attachments) for new in batch)))
    rows = NewRows([], [], [], [])
    for new, status, blob_refs in zip(batch, statuses, refs, strict=True):
        message_id = next(ids)
        files = []
        for position, (item, ref) in enumerate(zip(new.attachments, blob_refs, strict=True)):
            file = Attachment(
                id=next(ids),
                message_id=message_id,
                position=position,
                type=item.type,
                content_type=item.content_type,
                file_name=item.file_name,
                size=ref.size if ref else len((new.subject or "").encode()),
                sha256=ref.sha256 if ref else None,
                width=item.width,
                height=item.height,
                vm_duration=item.vm_duration,
            )
            files.append(file)
            rows.files.append(
                (
                    file.id,
                    message_id,
                    position,
                    file.type._value_,
                    file.content_type,
                    file.file_name,
                    file.size,
                    file.sha256,
                    file.width,
                    file.height,
                    file.vm_duration,
                )
            )
        record = _record(new, message_id, status, now, tuple(files))
        rows.records.append(record)
        rows.messages.append(_message_row(record, now_us))
        detail = orjson.dumps({"origin": new.origin}).decode()
        rows.events.append((message_id, now_us, "status", None, status._value_, "created", detail))
    return rows


def _record(
    new: NewMessage,
    message_id: int,
    status: MessageStatus,
    now: datetime,
    files: tuple[Attachment, ...],
) -> Message:
    from_number = new.from_.phone_number
    to_number = new.to[0].phone_number if new.to else None
    conversation = new.conversation_id
    if conversation is None and new.type is MessageType.SMS and from_number and to_number:
        conversation = _conversation_id(new.account_id, from_number, to_number)
    if conversation is None and new.type is MessageType.PAGER:
        conversation = message_id  # a new pager thread is named after its first message
    queued = status is MessageStatus.QUEUED
    return Message(
        id=message_id,
        account_id=new.account_id,
        extension_id=new.extension_id,
        type=new.type,
        direction=new.direction,
        from_=new.from_,
        to=new.to,
        creation_time=new.creation_time or now,
        last_modified_time=now,
        read_status=new.read_status,
        priority=new.priority,
        availability=Availability.ALIVE,
        availability_changed_at=now,
        message_status=status,
        subject=new.subject,
        conversation_id=conversation,
        fax_resolution=new.fax_resolution,
        fax_page_count=new.fax_page_count,
        cover_index=new.cover_index,
        cover_page_text=new.cover_page_text,
        sms_delivery_time=None,
        delivery_error_code=None,
        fax_error_code=None,
        vm_transcription_status=new.vm_transcription_status,
        pg_to_department=new.pg_to_department,
        attempts=0,
        next_attempt_at=(new.send_time or now) if queued else None,
        lease_owner=None,
        send_time=new.send_time,
        carrier=None,
        carrier_ref=None,
        failure_reason=None,
        sender_email=new.sender_email,
        origin=new.origin,
        attachments=files,
    )


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else to_micros(moment)


def _message_row(m: Message, now_us: int) -> tuple[Any, ...]:
    """``m`` as a messages row, in _rows.MESSAGE_COLUMNS order. (An enum's ``_value_``
    is its value without the ``value`` property's call: a third of the time, eight
    times a message.)"""
    return (
        m.id,
        m.account_id,
        m.extension_id,
        m.type._value_,
        m.direction._value_,
        orjson.dumps(m.from_.to_json()).decode(),
        orjson.dumps([p.to_json() for p in m.to]).decode(),
        m.from_.phone_number,
        m.to[0].phone_number if m.to else None,
        to_micros(m.creation_time),
        now_us,
        m.read_status._value_,
        m.priority._value_,
        m.availability._value_,
        now_us,
        m.message_status._value_,
        m.subject,
        m.conversation_id,
        m.fax_resolution and m.fax_resolution._value_,
        m.fax_page_count,
        m.cover_index,
        m.cover_page_text,
        None,
        None,
        None,
        m.vm_transcription_status and m.vm_transcription_status._value_,
        m.pg_to_department,
        0,
        _micros(m.next_attempt_at),
        None,
        _micros(m.send_time),
        None,
        None,
        None,
        m.sender_email,
        m.origin,
    )
