"""The unified mailbox: every message of every extension, durable, and the queue.

``Mailbox`` is the one object the rest of gatewayd talks to. Creating a message writes
its attachment bytes first, then the rows and a creation event in one transaction.
Status changes, SMS parts, read state and the availability life cycle each commit
together with their event rows; the queue (lease, retry), the list queries and the
sweeper live in their own modules and are reached through this class.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock, SystemClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import MessageNotFound, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import lifecycle, parts, queries, queue
from gatewayd.mailbox.blobs import BlobRef, BlobStore, FileBlobStore
from gatewayd.mailbox.commit import GroupCommit
from gatewayd.mailbox.database import Database
from gatewayd.mailbox.ledger import Ledger
from gatewayd.mailbox.records import Attachment, Event, Message, NewMessage, Part
from gatewayd.mailbox.rows import (
    add_events,
    attachment_from_row,
    event_from_row,
    event_row,
    fetch_message,
    load_messages,
    message_from_row,
    message_row,
    new_id,
    parts_of,
    select_messages,
)
from gatewayd.mailbox.schema import attachments, message_events, message_parts, messages
from gatewayd.mailbox.status import move_status, refuse
from gatewayd.model import (
    AttachmentType,
    Availability,
    AvailabilityAction,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
    TransitionRefused,
    initial_status,
    next_availability,
)

log = get_logger("gatewayd.mailbox")

# Columns a caller may set along with a status change.
TRANSITION_FIELDS = frozenset(
    {"fax_page_count", "fax_error_code", "delivery_error_code", "carrier", "carrier_ref"}
)


def conversation_id_for(account_id: int, number_a: str, number_b: str) -> int:
    """The conversation of two phone numbers in one account: the same id whichever
    side wrote, so replies thread with the messages before them."""
    low, high = sorted((number_a, number_b))
    digest = hashlib.blake2b(f"{account_id}|{low}|{high}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1) or 1


class Mailbox:
    def __init__(
        self, settings: MailboxSettings, db: Database, blobs: BlobStore, clock: Clock
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.clock = clock
        # Blobs freed but too fresh to erase yet (see blobs.py); retried by each sweep.
        self.pending_erase: set[str] = set()
        self._commits = GroupCommit(db)
        # What SMSCs say of SMS parts, written in bulk (ledger.py).
        self.ledger = Ledger(self)

    @classmethod
    async def open(cls, settings: MailboxSettings, *, clock: Clock | None = None) -> Mailbox:
        """Open (creating if needed) the database and blob store, migrating the schema."""
        blobs = FileBlobStore(settings.blob_dir)
        try:
            await asyncio.to_thread(settings.data_dir.mkdir, parents=True, exist_ok=True)
            await asyncio.to_thread(blobs.prepare)
        except OSError as exc:
            raise StoreError(
                f"mailbox.data_dir {str(settings.data_dir)!r}: {exc.strerror}"
            ) from exc
        db = Database(settings)
        try:
            revision = await db.migrate()
        except BaseException:
            await db.close()
            raise
        log.info(
            "mailbox.opened",
            database=db.describe(),
            revision=revision,
            blobs=str(settings.blob_dir),
        )
        return cls(settings, db, blobs, clock or SystemClock())

    async def close(self) -> None:
        await self._commits.close()
        await self.ledger.close()
        await self.db.close()

    # -- creating ---------------------------------------------------------------------

    async def create(self, new: NewMessage) -> Message:
        return (await self.create_many([new]))[0]

    async def create_many(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store several messages atomically: all of them or none (one email with
        several recipients becomes several messages)."""
        if not batch:
            return []
        statuses = [self._initial_status(new) for new in batch]  # refuse before any I/O
        if any(a.data is not None or a.path is not None for n in batch for a in n.attachments):
            refs = await asyncio.to_thread(self._store_bytes, batch)
        else:  # nothing to write to files (an SMS): no trip to a thread
            refs = self._store_bytes(batch)
        try:
            rows, files, _ = await self._commits.insert(
                lambda: self._rows_for(batch, statuses, refs)
            )
        except BaseException:
            # The rows never came: their files go with the next sweep (if nothing else
            # has come to use them by then).
            self.pending_erase.update(
                ref.sha256 for group in refs for ref in group if ref is not None
            )
            raise
        by_message: dict[int, list[Attachment]] = {row["id"]: [] for row in rows}
        for file in files:
            by_message[file["message_id"]].append(attachment_from_row(file))
        created = [message_from_row(row, by_message[row["id"]]) for row in rows]
        for message in created:
            log.info(
                "message.created",
                message_id=message.id,
                type=message.type.value,
                direction=message.direction.value,
                status=message.message_status.value,
                extension_id=message.extension_id,
                origin=message.origin,
                attachments=len(message.attachments),
            )
        return created

    def _store_bytes(self, batch: Sequence[NewMessage]) -> list[list[BlobRef | None]]:
        """Each attachment's bytes into the blob store (None for the message's text)."""
        out: list[list[BlobRef | None]] = []
        for new in batch:
            refs: list[BlobRef | None] = []
            for item in new.attachments:
                if item.data is not None:
                    refs.append(self.blobs.put_bytes(item.data))
                elif item.path is not None:
                    refs.append(self.blobs.put_file(item.path))
                else:
                    refs.append(None)
            out.append(refs)
        return out

    @staticmethod
    def _initial_status(new: NewMessage) -> MessageStatus:
        try:
            return initial_status(new.type, new.direction)
        except TransitionRefused as exc:
            raise StoreError(str(exc)) from exc

    def _rows_for(
        self,
        batch: Sequence[NewMessage],
        statuses: Sequence[MessageStatus],
        refs: list[list[BlobRef | None]],
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        now = self.clock.now()
        rows, files, events = [], [], []
        for new, status, blob_refs in zip(batch, statuses, refs, strict=True):
            message_id = new_id()
            created = new.creation_time or now
            rows.append(self._message_row(new, message_id, status, created, now))
            for position, (item, ref) in enumerate(zip(new.attachments, blob_refs, strict=True)):
                files.append(
                    {
                        "id": new_id(),
                        "message_id": message_id,
                        "position": position,
                        "type": item.type.value,
                        "content_type": item.content_type,
                        "file_name": item.file_name,
                        "size": ref.size if ref else len((new.subject or "").encode()),
                        "sha256": ref.sha256 if ref else None,
                        "width": item.width,
                        "height": item.height,
                        "vm_duration": item.vm_duration,
                    }
                )
            events.append(
                event_row(
                    message_id,
                    now,
                    "status",
                    "created",
                    to_value=status.value,
                    detail={"origin": new.origin},
                )
            )
        return rows, files, events

    def _message_row(
        self,
        new: NewMessage,
        message_id: int,
        status: MessageStatus,
        created: datetime,
        now: datetime,
    ) -> dict[str, Any]:
        from_number = new.from_.phone_number
        to_number = new.to[0].phone_number if new.to else None
        conversation = new.conversation_id
        if conversation is None and new.type is MessageType.SMS and from_number and to_number:
            conversation = conversation_id_for(new.account_id, from_number, to_number)
        if conversation is None and new.type is MessageType.PAGER:
            conversation = message_id  # a new pager thread is named after its first message
        queued = status is MessageStatus.QUEUED
        return {
            "id": message_id,
            "account_id": new.account_id,
            "extension_id": new.extension_id,
            "type": new.type.value,
            "direction": new.direction.value,
            "from_party": new.from_.to_json(),
            "to_parties": [p.to_json() for p in new.to],
            "from_number": from_number,
            "to_number": to_number,
            "creation_time": created,
            "last_modified_time": now,
            "read_status": new.read_status.value,
            "priority": new.priority.value,
            "availability": Availability.ALIVE.value,
            "availability_changed_at": now,
            "message_status": status.value,
            "subject": new.subject,
            "conversation_id": conversation,
            "fax_resolution": new.fax_resolution and new.fax_resolution.value,
            "fax_page_count": new.fax_page_count,
            "cover_index": new.cover_index,
            "cover_page_text": new.cover_page_text,
            "sms_delivery_time": None,
            "delivery_error_code": None,
            "fax_error_code": None,
            "vm_transcription_status": new.vm_transcription_status
            and new.vm_transcription_status.value,
            "pg_to_department": new.pg_to_department,
            "attempts": 0,
            "next_attempt_at": (new.send_time or now) if queued else None,
            "lease_owner": None,
            "send_time": new.send_time,
            "carrier": None,
            "carrier_ref": None,
            "failure_reason": None,
            "sender_email": new.sender_email,
            "origin": new.origin,
        }

    # -- reading ----------------------------------------------------------------------

    async def get(self, message_id: int, *, extension_id: int | None = None) -> Message:
        async with self.db.read() as conn:
            return await fetch_message(conn, message_id, extension_id=extension_id)

    async def get_many(self, message_ids: Collection[int]) -> dict[int, Message]:
        """The messages of these ids that exist, in one query."""
        if not message_ids:
            return {}
        async with self.db.read() as conn:
            query = select_messages(conn).where(messages.c.id.in_(sorted(message_ids)))
            return {m.id: m for m in await load_messages(conn, query)}

    async def find(self, query: queries.MessageQuery) -> queries.MessagePage:
        return await queries.list_messages(self, query)

    async def events(self, message_id: int) -> list[Event]:
        async with self.db.read() as conn:
            await message_row(conn, message_id)
            result = await conn.execute(
                sa.select(message_events)
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            )
            return [event_from_row(r) for r in result.mappings()]

    async def parts(self, message_id: int) -> list[Part]:
        async with self.db.read() as conn:
            await message_row(conn, message_id)
            return await parts_of(conn, message_id)

    async def attachment(
        self, message_id: int, attachment_id: int, *, extension_id: int | None = None
    ) -> tuple[Attachment, Path | bytes]:
        """The attachment record and its content: the path of its file, or, for the
        text of an SMS or pager message, the bytes."""
        message = await self.get(message_id, extension_id=extension_id)
        for item in message.attachments:
            if item.id == attachment_id:
                if item.sha256 is None:
                    return item, (message.subject or "").encode()
                return item, self.blobs.path(item.sha256)
        raise MessageNotFound(attachment_id, what="attachment")

    # -- status -----------------------------------------------------------------------

    async def transition(
        self,
        message_id: int,
        to: MessageStatus,
        *,
        reason: str,
        lease_owner: str | None = None,
        detail: dict[str, Any] | None = None,
        **fields: Any,
    ) -> Message:
        """Move a message to ``to`` if the status machine allows it, with an event.
        ``lease_owner`` makes it conditional on still holding the lease."""
        unknown = fields.keys() - TRANSITION_FIELDS
        if unknown:
            raise TypeError(f"transition() cannot set {', '.join(sorted(unknown))}")
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await message_row(conn, message_id, for_update=True)
            queue.check_lease(row, lease_owner)
            current = MessageStatus(row["message_status"])
            if row["type"] == MessageType.SMS and to is not MessageStatus.SENDING_FAILED:
                refuse(
                    message_id,
                    "messageStatus",
                    current,
                    to,
                    "an SMS moves to Sent, Delivered or DeliveryFailed through its parts",
                )
            values = {k: getattr(v, "value", v) for k, v in fields.items()}
            if row["type"] == MessageType.SMS:
                # Giving up on an SMS gives up on its parts not yet accepted.
                waiting = await conn.execute(
                    sa.update(message_parts)
                    .where(
                        message_parts.c.message_id == message_id,
                        message_parts.c.status == PartStatus.QUEUED.value,
                    )
                    .values(status=PartStatus.SENDING_FAILED.value, done_at=now)
                    .returning(message_parts.c.part_index)
                )
                given_up = sorted(part for (part,) in waiting)
                if given_up:
                    detail = {**(detail or {}), "parts_given_up": given_up}
            await move_status(conn, row, [to], now=now, reason=reason, detail=detail, values=values)
            return await fetch_message(conn, message_id)

    async def add_rendered(
        self,
        message_id: int,
        path: Path,
        pages: int,
        *,
        lease_owner: str | None = None,
    ) -> Message:
        """Store a Queued fax's rendered pages (a TIFF file) as its RenderedDocument,
        replacing an earlier rendering, and set faxPageCount."""
        ref = await asyncio.to_thread(self.blobs.put_file, path)
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                row = await message_row(conn, message_id, for_update=True)
                queue.check_lease(row, lease_owner)
                if row["type"] != MessageType.FAX.value or row["message_status"] != (
                    MessageStatus.QUEUED.value
                ):
                    raise StoreError(f"message {message_id} is not a queued fax")
                found = await conn.execute(
                    sa.select(attachments).where(attachments.c.message_id == message_id)
                )
                current = [attachment_from_row(r) for r in found.mappings()]
                earlier = [a for a in current if a.type is AttachmentType.RENDERED_DOCUMENT]
                if earlier:
                    await conn.execute(
                        sa.delete(attachments).where(attachments.c.id.in_([a.id for a in earlier]))
                    )
                await conn.execute(
                    attachments.insert().values(
                        id=new_id(),
                        message_id=message_id,
                        position=max((a.position for a in current), default=-1) + 1,
                        type=AttachmentType.RENDERED_DOCUMENT.value,
                        content_type="image/tiff",
                        file_name="fax.tif",
                        size=ref.size,
                        sha256=ref.sha256,
                    )
                )
                await conn.execute(
                    sa.update(messages)
                    .where(messages.c.id == message_id)
                    .values(fax_page_count=pages, last_modified_time=now)
                )
                detail = {"pages": pages, "bytes": ref.size}
                await add_events(
                    conn, [event_row(message_id, now, "rendered", "rendered", detail=detail)]
                )
                message = await fetch_message(conn, message_id)
        except BaseException:
            self.pending_erase.add(ref.sha256)  # unless something else holds it
            raise
        self.pending_erase.update(a.sha256 for a in earlier if a.sha256 and a.sha256 != ref.sha256)
        return message

    async def record_event(
        self, message_id: int, kind: str, reason: str, detail: dict[str, Any] | None = None
    ) -> None:
        """An event that changes nothing: a late receipt, a carrier note, a warning."""
        async with self.db.write() as conn:
            await message_row(conn, message_id)
            await add_events(
                conn, [event_row(message_id, self.clock.now(), kind, reason, detail=detail)]
            )

    # -- SMS parts and receipts (mailbox/parts.py) --------------------------------------

    async def set_parts(
        self, message_id: int, count: int, *, lease_owner: str | None = None
    ) -> list[Part]:
        return await parts.set_parts(self, message_id, count, lease_owner=lease_owner)

    async def part_accepted(
        self,
        message_id: int,
        index: int,
        *,
        link: str,
        carrier_id: str,
        lease_owner: str | None = None,
    ) -> Message:
        return await parts.accepted(
            self, message_id, index, link=link, carrier_id=carrier_id, lease_owner=lease_owner
        )

    async def part_refused(
        self,
        message_id: int,
        index: int,
        *,
        error_code: str,
        reason: str,
        lease_owner: str | None = None,
    ) -> Message:
        return await parts.refused(
            self, message_id, index, error_code=error_code, reason=reason, lease_owner=lease_owner
        )

    async def apply_receipt(
        self,
        link: str,
        carrier_id: str,
        outcome: PartStatus | None,
        *,
        error_code: str | None = None,
        done_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
    ) -> Message | None:
        return await parts.apply_receipt(
            self, link, carrier_id, outcome, error_code=error_code, done_at=done_at, detail=detail
        )

    # -- the queue (mailbox/queue.py) -------------------------------------------------

    async def lease(
        self,
        owner: str,
        *,
        types: Collection[MessageType],
        limit: int,
        lease_for: float | None = None,
    ) -> list[Message]:
        seconds = self.settings.lease_timeout if lease_for is None else lease_for
        return await queue.lease(self, owner, types=types, limit=limit, lease_for=seconds)

    async def retry_later(
        self,
        message_id: int,
        owner: str,
        *,
        delay: float,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Message:
        return await queue.retry_later(
            self, message_id, owner, delay=delay, reason=reason, detail=detail
        )

    async def renew_lease(self, message_id: int, owner: str, *, lease_for: float) -> None:
        await queue.renew(self, message_id, owner, lease_for=lease_for)

    async def set_carrier(
        self,
        message_id: int,
        owner: str,
        *,
        carrier: str | None,
        ref: str | None,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Message:
        return await queue.set_carrier(
            self, message_id, owner, carrier=carrier, ref=ref, reason=reason, detail=detail
        )

    async def leased_by(self, owner: str, *, types: Collection[MessageType]) -> list[Message]:
        return await queue.leased_by(self, owner, types=types)

    # -- read state and life cycle ----------------------------------------------------

    async def set_read_status(
        self, message_id: int, status: ReadStatus, *, extension_id: int | None = None
    ) -> Message:
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
            if row["read_status"] != status.value:
                await conn.execute(
                    sa.update(messages)
                    .where(messages.c.id == message_id)
                    .values(read_status=status.value, last_modified_time=now)
                )
                await add_events(
                    conn,
                    [
                        event_row(
                            message_id,
                            now,
                            "read",
                            f"marked {status}",
                            from_value=row["read_status"],
                            to_value=status.value,
                        )
                    ],
                )
            return await fetch_message(conn, message_id)

    async def change_availability(
        self,
        message_id: int,
        action: AvailabilityAction,
        *,
        reason: str,
        extension_id: int | None = None,
    ) -> Message:
        """delete (Alive -> Deleted -> Purged), purge (-> Purged) or restore
        (Deleted -> Alive). Purging erases the attachments and the text."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
            current = Availability(row["availability"])
            try:
                wanted = next_availability(current, action)
            except TransitionRefused as exc:
                refuse(message_id, "availability", current, action, str(exc))
            if wanted is not current:
                freed = await lifecycle.set_availability(
                    conn, [row], wanted, now=now, reason=reason
                )
                self.pending_erase.update(freed)
            message = await fetch_message(conn, message_id)
        if wanted is not current:
            log.info(
                "message.availability",
                message_id=message_id,
                previous=current.value,
                availability=wanted.value,
                reason=reason,
            )
            await lifecycle.erase_pending(self)
        return message

    async def sweep(self, *, orphans: bool = False) -> lifecycle.SweepReport:
        """The life-cycle sweep: purge old Deleted, remove old Purged, trim mailboxes
        over max_messages, erase freed attachment files (and, with ``orphans``, files
        no row refers to)."""
        return await lifecycle.sweep(self, orphans=orphans)

    def cutoff(self, days: int) -> datetime:
        return self.clock.now() - timedelta(days=days)
