"""The unified mailbox: every message of every extension, durable, and the queue.

``Mailbox`` is the one door the rest of gatewayd uses: every read and write it needs
is a method here, with typed arguments and results, and every failure of the database
underneath is a StoreError (gatewayd.errors). Behind the door the work is split by
what it does, and each part is given only the database, clock and blob store it needs:

- _create.py: new messages (bytes first, then rows and a creation event, group-committed)
- _changes.py: one message's status, rendered pages, notes, read state, availability
- _ledger.py: what SMSCs say of SMS parts, written in bulk
- _queue.py: leases of due Queued messages, retries, carrier jobs
- _queries.py: the message-store list and message sync
- _lifecycle.py: the sweeper and blob erasure
- _fragments.py, _notifications.py: parts of inbound SMS; the notifier's cursor and queue
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock, SystemClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import BlobError, MessageNotFound, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import _fragments, _notifications, _queries, _queue
from gatewayd.mailbox._blobs import BlobStore, FileBlobStore
from gatewayd.mailbox._changes import Changes
from gatewayd.mailbox._create import Creator
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._ledger import Ledger
from gatewayd.mailbox._lifecycle import Lifecycle
from gatewayd.mailbox._rows import (
    event_from_row,
    fetch_message,
    load_messages,
    message_row,
    new_id,
    parts_of,
    select_messages,
)
from gatewayd.mailbox._schema import message_events, messages
from gatewayd.mailbox.records import (
    Attachment,
    Content,
    Event,
    Fragment,
    Message,
    NewMessage,
    NotificationDue,
    Outcome,
    Part,
    PartAccepted,
    PartRefused,
    ReceiptIn,
    StatusCount,
    SweepReport,
)
from gatewayd.model import (
    AvailabilityAction,
    FaxErrorCode,
    MessageStatus,
    MessageType,
    ReadStatus,
)

log = get_logger("gatewayd.mailbox")


class Mailbox:
    def __init__(
        self, settings: MailboxSettings, db: Database, blobs: BlobStore, clock: Clock
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._db = db
        self._blobs = blobs
        self._lifecycle = Lifecycle(settings, db, blobs, clock)
        self._creator = Creator(db, blobs, clock, self._lifecycle)
        self._changes = Changes(db, blobs, clock, self._lifecycle)
        self._ledger = Ledger(db, clock)

    @classmethod
    async def open(cls, settings: MailboxSettings, *, clock: Clock | None = None) -> Mailbox:
        """Open (creating if needed) the database and blob store, migrating the schema."""
        blobs = FileBlobStore(settings.blob_dir)
        try:
            await asyncio.to_thread(_private_files, settings)
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
        await self._creator.close()
        await self._ledger.close()
        await self._db.close()

    def describe(self) -> str:
        """Where the mailbox is (its database URL without a password), for people."""
        return self._db.describe()

    # -- creating ---------------------------------------------------------------------

    async def create(self, new: NewMessage) -> Message:
        return (await self.create_many([new]))[0]

    async def create_many(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store several messages atomically: all of them or none (one email with
        several recipients becomes several messages)."""
        return await self._creator.create_many(batch)

    @staticmethod
    def new_conversation_id() -> int:
        """A fresh id for a new thread (a pager message and its copies share one)."""
        return new_id()

    # -- reading ----------------------------------------------------------------------

    async def get(self, message_id: int, *, extension_id: int | None = None) -> Message:
        async with self._db.read() as conn:
            return await fetch_message(conn, message_id, extension_id=extension_id)

    async def get_many(self, message_ids: Collection[int]) -> dict[int, Message]:
        """The messages of these ids that exist, in one query."""
        if not message_ids:
            return {}
        async with self._db.read() as conn:
            query = select_messages(conn).where(messages.c.id.in_(sorted(message_ids)))
            return {m.id: m for m in await load_messages(conn, query)}

    async def find(self, query: _queries.MessageQuery) -> _queries.MessagePage:
        """A page of a mailbox, with the message store's filters and defaults."""
        return await _queries.list_messages(self._db, self.clock, query)

    async def sync(self, query: _queries.SyncQuery) -> list[Message]:
        """A mailbox's messages for a full or an incremental message sync."""
        return await _queries.sync_messages(self._db, query)

    async def events(self, message_id: int) -> list[Event]:
        async with self._db.read() as conn:
            await message_row(conn, message_id)
            result = await conn.execute(
                sa.select(message_events)
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            )
            return [event_from_row(r) for r in result.mappings()]

    async def parts(self, message_id: int) -> list[Part]:
        async with self._db.read() as conn:
            await message_row(conn, message_id)
            return await parts_of(conn, message_id)

    async def counts(self) -> list[StatusCount]:
        """Messages per type and status, with the creation time of the oldest."""
        c = messages.c
        query = sa.select(
            c.type, c.message_status, sa.func.count(), sa.func.min(c.creation_time)
        ).group_by(c.type, c.message_status)
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
        return [
            StatusCount(MessageType(kind), MessageStatus(status), count, oldest)
            for kind, status, count, oldest in found
        ]

    async def attachment(
        self, message_id: int, attachment_id: int, *, extension_id: int | None = None
    ) -> tuple[Attachment, Content]:
        """The attachment record and its content (for the text of an SMS or pager
        message: the message's subject)."""
        message = await self.get(message_id, extension_id=extension_id)
        for item in message.attachments:
            if item.id == attachment_id:
                if item.sha256 is None:
                    return item, Content.of_bytes((message.subject or "").encode())
                return item, await self._content(item.sha256)
        raise MessageNotFound(attachment_id, what="attachment")

    async def _content(self, sha256: str) -> Content:
        blobs = self._blobs
        try:
            size = await asyncio.to_thread(lambda: blobs.path(sha256).stat().st_size)
        except OSError as exc:
            raise BlobError(f"attachment bytes {sha256} missing: {exc.strerror}") from exc

        async def read(offset: int, length: int) -> bytes:
            return await asyncio.to_thread(blobs.read_range, sha256, offset, length)

        return Content(size, read)

    async def has_blob(self, sha256: str) -> bool:
        """Whether an attachment's bytes are still stored."""
        return await asyncio.to_thread(self._blobs.exists, sha256)

    @asynccontextmanager
    async def blob_file(self, sha256: str) -> AsyncIterator[Path]:
        """An attachment's bytes as a file this process (and its render workers) can
        read, for as long as the block runs. BlobError when they are gone."""
        if not await self.has_blob(sha256):
            raise BlobError(f"attachment bytes {sha256} missing")
        yield self._blobs.path(sha256)

    # -- status -----------------------------------------------------------------------

    async def transition(
        self,
        message_id: int,
        to: MessageStatus,
        *,
        reason: str,
        lease_owner: str | None = None,
        detail: dict[str, Any] | None = None,
        fax_page_count: int | None = None,
        fax_error_code: FaxErrorCode | None = None,
        delivery_error_code: str | None = None,
        carrier: str | None = None,
        carrier_ref: str | None = None,
    ) -> Message:
        """Move a message to ``to`` if the status machine allows it, with an event,
        setting the columns given (None: left as they are). ``lease_owner`` makes it
        conditional on still holding the lease."""
        fields = {
            key: value
            for key, value in (
                ("fax_page_count", fax_page_count),
                ("fax_error_code", fax_error_code and fax_error_code.value),
                ("delivery_error_code", delivery_error_code),
                ("carrier", carrier),
                ("carrier_ref", carrier_ref),
            )
            if value is not None
        }
        return await self._changes.transition(
            message_id, to, reason=reason, lease_owner=lease_owner, detail=detail, fields=fields
        )

    async def add_rendered(
        self, message_id: int, path: Path, pages: int, *, lease_owner: str | None = None
    ) -> Message:
        """Store a Queued fax's rendered pages (a TIFF file) as its RenderedDocument,
        replacing an earlier rendering, and set faxPageCount."""
        return await self._changes.add_rendered(message_id, path, pages, lease_owner=lease_owner)

    async def record_event(
        self, message_id: int, kind: str, reason: str, detail: dict[str, Any] | None = None
    ) -> None:
        """An event that changes nothing: a late receipt, a carrier note, a warning."""
        await self._changes.record_event(message_id, kind, reason, detail)

    # -- SMS parts at the SMSC (_ledger.py) ---------------------------------------------

    async def record_acceptance(self, item: PartAccepted) -> Outcome:
        """The SMSC took a part (and named it): the part is Sent, and the message too
        once every part is."""
        outcome = await self._ledger.record(item)
        assert outcome is not None  # only a receipt finds nothing
        return outcome

    async def record_refusal(self, item: PartRefused) -> Outcome:
        """The SMSC refused a part for good: the SMS is SendingFailed."""
        outcome = await self._ledger.record(item)
        assert outcome is not None
        return outcome

    async def record_receipt(self, item: ReceiptIn) -> Outcome | None:
        """A delivery receipt; None when no part has one of its ids (yet)."""
        return await self._ledger.record(item)

    # -- parts of inbound SMS (_fragments.py) -------------------------------------------

    async def add_fragment(self, fragment: Fragment) -> list[Fragment] | None:
        """Store one part of a concatenated inbound SMS; every part, in order, once
        this one completes the message (they are then no longer stored)."""
        return await _fragments.add(self._db, fragment)

    async def take_stale_fragments(self, older_than: datetime) -> list[list[Fragment]]:
        """The parts of every message whose first part came before ``older_than``, taken
        out of the store, grouped by message."""
        return await _fragments.take_stale(self._db, older_than)

    # -- the queue (_queue.py) ----------------------------------------------------------

    async def lease(
        self,
        owner: str,
        *,
        types: Collection[MessageType],
        limit: int,
        lease_for: float | None = None,
    ) -> list[Message]:
        """Up to ``limit`` due Queued messages of these types, leased to ``owner``."""
        seconds = self.settings.lease_timeout if lease_for is None else lease_for
        return await _queue.lease(
            self._db, self.clock, owner, types=types, limit=limit, lease_for=seconds
        )

    async def retry_later(
        self,
        message_id: int,
        owner: str,
        *,
        delay: float,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Message:
        """Give a leased message back, due again in ``delay`` seconds."""
        return await _queue.retry_later(
            self._db, self.clock, message_id, owner, delay=delay, reason=reason, detail=detail
        )

    async def renew_lease(self, message_id: int, owner: str, *, lease_for: float) -> None:
        await _queue.renew(self._db, self.clock, message_id, owner, lease_for=lease_for)

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
        """Record (or clear) the carrier job a leased Queued message is with."""
        return await _queue.set_carrier(
            self._db,
            self.clock,
            message_id,
            owner,
            carrier=carrier,
            ref=ref,
            reason=reason,
            detail=detail,
        )

    async def leased_by(self, owner: str, *, types: Collection[MessageType]) -> list[Message]:
        """The Queued messages ``owner`` holds (an earlier life of the same worker)."""
        return await _queue.leased_by(self._db, owner, types=types)

    # -- read state and life cycle ----------------------------------------------------

    async def set_read_status(
        self, message_id: int, status: ReadStatus, *, extension_id: int | None = None
    ) -> Message:
        return await self._changes.set_read_status(message_id, status, extension_id=extension_id)

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
        return await self._changes.change_availability(
            message_id, action, reason=reason, extension_id=extension_id
        )

    async def sweep(self, *, orphans: bool = False) -> SweepReport:
        """The life-cycle sweep: purge old Deleted, remove old Purged, trim mailboxes
        over max_messages, erase freed attachment files (and, with ``orphans``, files
        no row refers to)."""
        return await self._lifecycle.sweep(orphans=orphans)

    # -- result emails (_notifications.py) ----------------------------------------------

    async def collect_notifications(
        self, decide: _notifications.Decide, *, settle: timedelta, batch: int
    ) -> int:
        """Status events since the notifier's cursor that ``decide`` says deserve an
        email become queued notifications (one per message and kind); the cursor
        moves past them in the same transaction. Returns how many were queued."""
        return await _notifications.collect(
            self._db, self.clock, decide, settle=settle, batch=batch
        )

    async def notifications_due(self, *, limit: int) -> list[NotificationDue]:
        return await _notifications.due(self._db, self.clock, limit=limit)

    async def mark_notification(
        self,
        notification_id: int,
        *,
        state: str | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        await _notifications.mark(
            self._db,
            notification_id,
            state=state,
            attempts=attempts,
            last_error=last_error,
            next_attempt_at=next_attempt_at,
            sent_at=sent_at,
        )


def _private_files(settings: MailboxSettings) -> None:
    """The data directory (0700) and an SQLite database file (0600, which SQLite gives
    its -wal and -shm files too) made private to the daemon, whatever its umask: they
    hold every message's text."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = "sqlite+aiosqlite:///"
    name = settings.url.partition("?")[0]
    if name.startswith(prefix) and name[len(prefix) :] not in ("", ":memory:"):
        path = Path(name[len(prefix) :])
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
