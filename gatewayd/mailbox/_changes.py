"""Changes to one message, each in one transaction with its event rows: its status
(checked against the machine in gatewayd.model; an SMS moves through its parts, in
_ledger.py, except to SendingFailed), a fax's rendered pages, a note, its read status
and its availability (Alive -> Deleted -> Purged, and restore)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._blobs import BlobStore
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._ids import new_id
from gatewayd.mailbox._lifecycle import Lifecycle, set_availability
from gatewayd.mailbox._queue import check_lease
from gatewayd.mailbox._rows import (
    add_events,
    attachment_from_row,
    event_row,
    fetch_message,
    message_row,
)
from gatewayd.mailbox._schema import attachments, message_parts, messages
from gatewayd.mailbox._status import StatusFeed, move_status, refuse
from gatewayd.mailbox.records import Message
from gatewayd.model import (
    AttachmentType,
    Availability,
    AvailabilityAction,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
    TransitionRefused,
    next_availability,
)

log = get_logger("gatewayd.mailbox")


class Changes:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        clock: Clock,
        lifecycle: Lifecycle,
        feed: StatusFeed,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.clock = clock
        self._lifecycle = lifecycle
        self._feed = feed

    async def transition(
        self,
        message_id: int,
        to: MessageStatus,
        *,
        reason: str,
        lease_owner: str | None,
        detail: dict[str, Any] | None,
        fields: Mapping[str, str | int | None],
    ) -> Message:
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await message_row(conn, message_id, for_update=True)
            check_lease(row, lease_owner)
            current = MessageStatus(row["message_status"])
            if row["type"] == MessageType.SMS and to is not MessageStatus.SENDING_FAILED:
                refuse(
                    message_id,
                    "messageStatus",
                    current,
                    to,
                    "an SMS moves to Sent, Delivered or DeliveryFailed through its parts",
                )
            values = dict(fields)
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
            entered = await move_status(
                conn, row, [to], now=now, reason=reason, detail=detail, values=values
            )
            message = await fetch_message(conn, message_id)
        self._feed.publish(entered)
        return message

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
        [ref] = await self.blobs.put_all([path])
        assert ref is not None
        now = self.clock.now()
        try:
            async with self.db.write() as conn:
                row = await message_row(conn, message_id, for_update=True)
                check_lease(row, lease_owner)
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
            self._lifecycle.pending_erase.add(ref.sha256)  # unless something else holds it
            raise
        self._lifecycle.pending_erase.update(
            a.sha256 for a in earlier if a.sha256 and a.sha256 != ref.sha256
        )
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
        self, message_id: int, action: AvailabilityAction, reason: str, extension_id: int | None
    ) -> Message:
        """See Mailbox.change_availability."""
        now = self.clock.now()
        async with self.db.write() as conn:
            row = await message_row(conn, message_id, extension_id=extension_id, for_update=True)
            current = Availability(row["availability"])
            try:
                wanted = next_availability(current, action)
            except TransitionRefused as exc:
                refuse(message_id, "availability", current, action, str(exc))
            if wanted is not current:
                freed = await set_availability(conn, [row], wanted, now=now, reason=reason)
                self._lifecycle.pending_erase.update(freed)
            message = await fetch_message(conn, message_id)
        if wanted is not current:
            log.info(
                "message.availability",
                message_id=message_id,
                previous=current.value,
                availability=wanted.value,
                reason=reason,
            )
            await self._lifecycle.erase_pending()
        return message
