"""The availability life cycle and its sweeper.

Alive -> Deleted (restorable) -> Purged (attachments and text erased) -> removed.
The sweeper purges messages Deleted for ``retention_deleted_days``, removes messages
Purged for ``retention_purged_days``, deletes the oldest messages of a mailbox over
``max_messages`` (never a Queued one: it is still on its way out), and erases the
attachment files nothing refers to any more. It runs in the daemon every
``sweep_interval`` and once with ``gatewayd purge``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.clock import Clock
from gatewayd.config.settings import MailboxSettings
from gatewayd.logging import get_logger
from gatewayd.mailbox._blobs import DEFAULT_GRACE_SECONDS, BlobStore
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import Row, add_events, event_row
from gatewayd.mailbox._schema import attachments, messages
from gatewayd.mailbox.records import SweepReport
from gatewayd.model import Availability, MessageStatus, MessageType

log = get_logger("gatewayd.mailbox")

BATCH = 500
_TEXT_TYPES = (MessageType.SMS.value, MessageType.PAGER.value, MessageType.TEXT.value)


async def set_availability(
    conn: AsyncConnection,
    rows: Sequence[Row],
    wanted: Availability,
    *,
    now: datetime,
    reason: str,
) -> set[str]:
    """Move these messages to ``wanted``, with an event each, in three statements
    whatever their number. A purge also drops the attachment rows and the message text
    (the subject of SMS, pager and text messages, a fax's cover-page text). Returns the
    blob digests the purge freed."""
    if not rows:
        return set()
    ids = [row["id"] for row in rows]
    values: dict[str, Any] = {
        "availability": wanted.value,
        "availability_changed_at": now,
        "last_modified_time": now,
    }
    erased: dict[int, int] = {}
    freed: set[str] = set()
    if wanted is Availability.PURGED:
        found = await conn.execute(
            sa.delete(attachments)
            .where(attachments.c.message_id.in_(ids))
            .returning(attachments.c.message_id, attachments.c.sha256)
        )
        for message_id, sha256 in found:
            erased[message_id] = erased.get(message_id, 0) + 1
            if sha256 is not None:
                freed.add(sha256)
        values["cover_page_text"] = None
        values["subject"] = sa.case(
            (messages.c.type.in_(_TEXT_TYPES), sa.null()), else_=messages.c.subject
        )
    await conn.execute(sa.update(messages).where(messages.c.id.in_(ids)).values(values))
    await add_events(
        conn,
        [
            event_row(
                row["id"],
                now,
                "availability",
                reason,
                from_value=row["availability"],
                to_value=wanted.value,
                detail={"attachments_erased": erased[row["id"]]} if row["id"] in erased else None,
            )
            for row in rows
        ],
    )
    return freed


async def _unreferenced(conn: AsyncConnection, digests: set[str]) -> set[str]:
    if not digests:
        return set()
    still = await conn.execute(
        sa.select(attachments.c.sha256).distinct().where(attachments.c.sha256.in_(digests))
    )
    return digests - {r.sha256 for r in still}


class Lifecycle:
    """The sweeper and the blobs waiting to be erased."""

    def __init__(
        self, settings: MailboxSettings, db: Database, blobs: BlobStore, clock: Clock
    ) -> None:
        self.settings = settings
        self.db = db
        self.blobs = blobs
        self.clock = clock
        # Blobs freed but too fresh to erase yet (see _blobs.py); retried by each sweep.
        self.pending_erase: set[str] = set()

    def _cutoff(self, days: int) -> datetime:
        return self.clock.now() - timedelta(days=days)

    async def erase_pending(self, *, grace: float = DEFAULT_GRACE_SECONDS) -> int:
        """Erase freed blobs no row refers to; ones too fresh to erase stay pending."""
        if not self.pending_erase:
            return 0
        candidates = set(self.pending_erase)
        async with self.db.read() as conn:
            free = await _unreferenced(conn, candidates)
        self.pending_erase -= candidates - free  # referenced again: not ours to erase
        gone = await self.blobs.erase(free, grace=grace)
        self.pending_erase -= gone
        return len(gone)

    async def _purge_deleted(self, now: datetime) -> int:
        cutoff = self._cutoff(self.settings.retention_deleted_days)
        total = 0
        while True:
            async with self.db.write() as conn:
                rows = (
                    (
                        await conn.execute(
                            sa.select(messages.c.id, messages.c.availability)
                            .where(
                                messages.c.availability == Availability.DELETED.value,
                                messages.c.availability_changed_at <= cutoff,
                            )
                            .limit(BATCH)
                        )
                    )
                    .mappings()
                    .all()
                )
                reason = f"deleted {self.settings.retention_deleted_days} days ago"
                self.pending_erase |= await set_availability(
                    conn, rows, Availability.PURGED, now=now, reason=reason
                )
            total += len(rows)
            if len(rows) < BATCH:
                return total

    async def _remove_purged(self) -> int:
        cutoff = self._cutoff(self.settings.retention_purged_days)
        total = 0
        while True:
            async with self.db.write() as conn:
                batch = (
                    sa.select(messages.c.id)
                    .where(
                        messages.c.availability == Availability.PURGED.value,
                        messages.c.availability_changed_at <= cutoff,
                    )
                    .limit(BATCH)
                )
                ids = list((await conn.execute(batch)).scalars())
                if ids:
                    # Parts, attachments and events go with them (ON DELETE CASCADE).
                    await conn.execute(sa.delete(messages).where(messages.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < BATCH:
                return total

    async def _trim_mailboxes(self, now: datetime) -> int:
        limit = self.settings.max_messages
        if limit == 0:
            return 0
        alive = messages.c.availability == Availability.ALIVE.value
        async with self.db.read() as conn:
            over = (
                await conn.execute(
                    sa.select(messages.c.extension_id, sa.func.count().label("n"))
                    .where(alive)
                    .group_by(messages.c.extension_id)
                    .having(sa.func.count() > limit)
                )
            ).all()
        total = 0
        for extension_id, count in over:
            excess = count - limit
            while excess > 0:
                wanted = min(excess, BATCH)
                async with self.db.write() as conn:
                    rows = (
                        (
                            await conn.execute(
                                sa.select(messages.c.id, messages.c.availability)
                                .where(
                                    alive,
                                    messages.c.extension_id == extension_id,
                                    messages.c.message_status != MessageStatus.QUEUED.value,
                                )
                                .order_by(messages.c.creation_time, messages.c.id)
                                .limit(wanted)
                            )
                        )
                        .mappings()
                        .all()
                    )
                    await set_availability(
                        conn,
                        rows,
                        Availability.DELETED,
                        now=now,
                        reason=f"mailbox over max_messages ({limit})",
                    )
                total += len(rows)
                excess -= len(rows)
                if len(rows) < wanted:
                    break  # what is left over the limit is still Queued
        return total

    async def _erase_orphans(self) -> int:
        on_disk = await self.blobs.all_digests()
        async with self.db.read() as conn:
            orphans: set[str] = set()
            listed = sorted(on_disk)
            for start in range(0, len(listed), BATCH):
                orphans |= await _unreferenced(conn, set(listed[start : start + BATCH]))
        return len(await self.blobs.erase(orphans))

    async def sweep(self, *, orphans: bool) -> SweepReport:
        now = self.clock.now()
        report = SweepReport(
            purged=await self._purge_deleted(now),
            removed=await self._remove_purged(),
            auto_deleted=await self._trim_mailboxes(now),
            blobs_erased=await self.erase_pending(),
            orphans_erased=await self._erase_orphans() if orphans else 0,
        )
        log.info(
            "mailbox.swept",
            purged=report.purged,
            removed=report.removed,
            auto_deleted=report.auto_deleted,
            blobs_erased=report.blobs_erased,
            orphans_erased=report.orphans_erased,
        )
        return report
