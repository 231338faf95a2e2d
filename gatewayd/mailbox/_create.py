"""Storing new messages: attachment bytes first, then the rows and a creation event
per message in one transaction (through the group commit, _commit.py).

Ids come from _rows.new_id. An SMS is threaded by its two numbers (a conversation id
derived from the account and both numbers, so a reply finds the thread); a new pager
thread is named after its first message unless the caller gives one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gatewayd.clock import Clock
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._blobs import BlobRef, BlobStore
from gatewayd.mailbox._commit import GroupCommit
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._lifecycle import Lifecycle
from gatewayd.mailbox._rows import attachment_from_row, event_row, message_from_row, new_id
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
            rows, files, _ = await self._commit.insert(
                lambda: self._rows_for(batch, statuses, refs)
            )
        except BaseException:
            # The rows never came: their files go with the next sweep (if nothing else
            # has come to use them by then).
            self._lifecycle.pending_erase.update(
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
        self._feed.publish(
            StatusEntered(m.id, m.type, m.direction, m.message_status, "created") for m in created
        )
        return created

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
            conversation = _conversation_id(new.account_id, from_number, to_number)
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
