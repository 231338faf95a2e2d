"""The SMS ledger: what SMSCs say of submitted parts, written in bulk.

An SMPP link at thousands of messages a second answers every part (submit_sm_resp)
and later reports on it (a receipt). One write transaction for each would cap the
gateway at what the disk can fsync; here the facts that arrive while a transaction is
being written gather and go together in the next, set-based: a few SELECTs for the
whole group, the status machine applied in memory item by item, in arrival order (a
receipt right behind its own acceptance finds it), then one executemany per table.
Every caller still gets its own answer, after the commit.

The status machine is the one in gatewayd.model: a part moves
Queued -> Sent -> Delivered / DeliveryFailed, or Queued -> SendingFailed; the message
follows its parts (derive_sms_status) and never moves back; a receipt that changes
nothing is kept as an event. Facts from the carrier are recorded whoever holds the
message's lease: the SMSC took the part, whatever became of the lease.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from gatewayd.clock import Clock
from gatewayd.errors import MessageNotFound, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._batch import Batcher
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import event_row
from gatewayd.mailbox._schema import message_events, message_parts, messages
from gatewayd.mailbox._status import FAILED, StatusFeed, log_status
from gatewayd.mailbox.records import Outcome, PartAccepted, PartRefused, ReceiptIn, StatusEntered
from gatewayd.model import (
    Direction,
    MessageStatus,
    MessageType,
    PartStatus,
    check_part_transition,
    derive_sms_status,
    status_path,
)

log = get_logger("gatewayd.mailbox")


Item = PartAccepted | PartRefused | ReceiptIn


# -- applying a group -------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    id: int
    type: str
    status: MessageStatus
    columns: dict[str, Any] = field(default_factory=dict)  # to write


@dataclass(slots=True)
class _Part:
    """A part as the group changes it in memory (gatewayd.mailbox.Part is its frozen
    record for readers)."""

    status: PartStatus
    link: str | None = None
    carrier_id: str | None = None
    error_code: str | None = None
    submitted_at: datetime | None = None
    done_at: datetime | None = None

    def columns(self) -> dict[str, Any]:
        return {
            "status": self.status.value,
            "link": self.link,
            "carrier_id": self.carrier_id,
            "error_code": self.error_code,
            "submitted_at": self.submitted_at,
            "done_at": self.done_at,
        }


@dataclass(slots=True)
class _Group:
    """The group's messages and parts in memory, and what to write."""

    now: datetime
    messages: dict[int, _Message] = field(default_factory=dict)
    parts: dict[int, dict[int, _Part]] = field(default_factory=dict)
    new_parts: set[tuple[int, int]] = field(default_factory=set)
    changed_parts: set[tuple[int, int]] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[int, MessageStatus, MessageStatus, str]] = field(default_factory=list)
    accepted: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def ensure_parts(self, message_id: int, count: int) -> None:
        parts = self.parts.setdefault(message_id, {})
        if parts:
            if len(parts) != count:
                raise StoreError(f"message {message_id} has {len(parts)} parts, not {count}")
            return
        for index in range(count):
            parts[index] = _Part(PartStatus.QUEUED)
            self.new_parts.add((message_id, index))
        self.events.append(
            event_row(
                message_id, self.now, "part", f"split into {count} parts", detail={"parts": count}
            )
        )

    def move_part(
        self,
        message_id: int,
        index: int,
        to: PartStatus,
        *,
        reason: str,
        values: dict[str, Any],
        detail: dict[str, Any] | None = None,
    ) -> None:
        part = self.parts[message_id][index]
        current = part.status
        check_part_transition(current, to)
        for name, value in values.items():
            setattr(part, name, value)
        part.status = to
        self.changed_parts.add((message_id, index))
        self.events.append(
            event_row(
                message_id,
                self.now,
                "part",
                reason,
                from_value=current.value,
                to_value=to.value,
                detail={
                    "part": index,
                    **{k: v for k, v in values.items() if isinstance(v, str)},
                    **(detail or {}),
                },
            )
        )
        self.follow(message_id, reason, detail)

    def follow(self, message_id: int, reason: str, detail: dict[str, Any] | None) -> None:
        """Bring the message to what its parts now say (never backwards)."""
        message = self.messages[message_id]
        parts = self.parts[message_id].values()
        target = derive_sms_status(p.status for p in parts)
        path = status_path(MessageType.SMS, message.status, target)
        if path is None:
            self.events.append(
                event_row(
                    message_id,
                    self.now,
                    "note",
                    f"status stays {message.status}: parts say {target}",
                    detail=detail,
                )
            )
            return
        message.columns["last_modified_time"] = self.now
        for step in path:
            self.events.append(
                event_row(
                    message_id,
                    self.now,
                    "status",
                    reason,
                    from_value=message.status.value,
                    to_value=step.value,
                    detail=detail,
                )
            )
            self.logs.append((message_id, message.status, step, reason))
            if message.status is MessageStatus.QUEUED:
                message.columns.update(next_attempt_at=None, lease_owner=None)
            message.status = step
        if not path:
            return
        message.columns["message_status"] = message.status.value
        if message.status is MessageStatus.DELIVERED:
            done = [p.done_at for p in parts if p.done_at is not None]
            message.columns["sms_delivery_time"] = max(done) if done else self.now
        if message.status in (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED):
            message.columns["delivery_error_code"] = next(
                (p.error_code for p in parts if p.error_code), None
            )
            message.columns["failure_reason"] = reason


async def _load(
    conn: AsyncConnection, group: _Group, items: Sequence[Item]
) -> dict[tuple[str, str], tuple[int, int]]:
    """Read the group's messages and parts; returns where each receipt's ids point."""
    by_carrier: dict[tuple[str, str], tuple[int, int]] = {}
    wanted: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if isinstance(item, ReceiptIn):
            wanted[item.link].update(item.carrier_ids)
    for link, carrier_ids in wanted.items():
        found = await conn.execute(
            sa.select(
                message_parts.c.message_id, message_parts.c.part_index, message_parts.c.carrier_id
            )
            .where(
                message_parts.c.link == link, message_parts.c.carrier_id.in_(sorted(carrier_ids))
            )
            .order_by(message_parts.c.submitted_at)
        )
        for message_id, index, carrier_id in found:
            by_carrier[link, carrier_id] = (message_id, index)  # the newest wins
    ids = {i.message_id for i in items if not isinstance(i, ReceiptIn)}
    ids.update(message_id for message_id, _ in by_carrier.values())
    if not ids:
        return by_carrier
    rows = await conn.execute(
        sa.select(messages.c.id, messages.c.type, messages.c.message_status).where(
            messages.c.id.in_(sorted(ids))
        )
    )
    for message_id, kind, status in rows:
        group.messages[message_id] = _Message(message_id, kind, MessageStatus(status))
    parts = await conn.execute(
        sa.select(message_parts).where(message_parts.c.message_id.in_(sorted(ids)))
    )
    for row in parts.mappings():
        group.parts.setdefault(row["message_id"], {})[row["part_index"]] = _Part(
            PartStatus(row["status"]),
            row["link"],
            row["carrier_id"],
            row["error_code"],
            row["submitted_at"],
            row["done_at"],
        )
    return by_carrier


def _apply(
    group: _Group, item: Item, by_carrier: dict[tuple[str, str], tuple[int, int]]
) -> Outcome | Exception | None:
    if isinstance(item, ReceiptIn):
        return _receipt(group, item, by_carrier)
    message = group.messages.get(item.message_id)
    if message is None:
        return MessageNotFound(item.message_id)
    if message.type != MessageType.SMS.value:
        return StoreError(f"message {item.message_id} is a {message.type}, not an SMS")
    try:
        group.ensure_parts(item.message_id, item.parts)
        part = group.parts[item.message_id].get(item.index)
        if part is None:
            return StoreError(f"message {item.message_id} has no part {item.index}")
        if isinstance(item, PartAccepted):
            if part.status is not PartStatus.QUEUED:  # an answer we already have
                return Outcome(item.message_id, message.status, changed=False)
            group.move_part(
                item.message_id,
                item.index,
                PartStatus.SENT,
                reason="accepted by the SMSC",
                values={
                    "link": item.link,
                    "carrier_id": item.carrier_id,
                    "submitted_at": group.now,
                },
            )
            group.accepted[item.link, item.carrier_id] = (item.message_id, item.index)
        else:
            group.move_part(
                item.message_id,
                item.index,
                PartStatus.SENDING_FAILED,
                reason=item.reason,
                values={"error_code": item.error_code, "done_at": group.now},
            )
    except Exception as exc:  # the item's own failure, returned to its caller
        return exc
    return Outcome(item.message_id, message.status, changed=True)


def _receipt(
    group: _Group, item: ReceiptIn, by_carrier: dict[tuple[str, str], tuple[int, int]]
) -> Outcome | None:
    where = None
    for rank, carrier_id in enumerate(item.carrier_ids):
        found = group.accepted.get((item.link, carrier_id)) or by_carrier.get(
            (item.link, carrier_id)
        )
        if found is None or found[0] not in group.messages:
            continue
        if rank and group.parts[found[0]][found[1]].status is not PartStatus.SENT:
            # Only another reading of the id (decimal for hex, or the other way round)
            # names a part, and that part is done: more likely the receipt came before
            # its own part's answer. Unknown for now; the caller may wait and ask again.
            continue
        where = found
        break
    if where is None:
        return None
    message_id, index = where
    message = group.messages[message_id]
    part = group.parts[message_id][index]
    detail = {
        "link": item.link,
        "carrier_id": part.carrier_id,
        "part": index,
        "error_code": item.error_code,
        **item.detail,
    }
    if item.outcome is None or part.status is not PartStatus.SENT:
        why = (
            "intermediate receipt"
            if item.outcome is None
            else f"receipt {item.outcome} for part {index} already {part.status}"
        )
        group.events.append(event_row(message_id, group.now, "receipt", why, detail=detail))
        return Outcome(message_id, message.status, changed=False)
    group.move_part(
        message_id,
        index,
        item.outcome,
        reason=f"receipt: {item.outcome}",
        values={"done_at": item.done_at or group.now, "error_code": item.error_code},
        detail=detail,
    )
    return Outcome(message_id, message.status, changed=True)


async def _write(conn: AsyncConnection, group: _Group) -> None:
    if group.new_parts:
        await conn.execute(
            message_parts.insert(),
            [
                {"message_id": m, "part_index": i, **group.parts[m][i].columns()}
                for m, i in sorted(group.new_parts)
            ],
        )
    changed = group.changed_parts - group.new_parts
    if changed:
        await conn.execute(
            sa.update(message_parts)
            .where(
                message_parts.c.message_id == sa.bindparam("m_id"),
                message_parts.c.part_index == sa.bindparam("p_index"),
            )
            .values({c: sa.bindparam(f"v_{c}") for c in _PART_COLUMNS}),
            [
                {
                    "m_id": m,
                    "p_index": i,
                    **{f"v_{c}": v for c, v in group.parts[m][i].columns().items()},
                }
                for m, i in sorted(changed)
            ],
        )
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for message in group.messages.values():
        if message.columns:
            keys = tuple(sorted(message.columns))
            by_columns[keys].append(
                {"m_id": message.id, **{f"v_{k}": message.columns[k] for k in keys}}
            )
    for keys, rows in by_columns.items():
        await conn.execute(
            sa.update(messages)
            .where(messages.c.id == sa.bindparam("m_id"))
            .values({k: sa.bindparam(f"v_{k}") for k in keys}),
            rows,
        )
    if group.events:
        await conn.execute(message_events.insert(), group.events)


_PART_COLUMNS = ("status", "link", "carrier_id", "error_code", "submitted_at", "done_at")


# -- group commit -----------------------------------------------------------------------

Result = Outcome | None


class Ledger:
    """Takes items from many callers; writes each gathering in one transaction."""

    def __init__(self, db: Database, clock: Clock, feed: StatusFeed) -> None:
        self._db = db
        self._clock = clock
        self._feed = feed
        self._batcher: Batcher[Item, Result] = Batcher(self.apply, name="sms-ledger")

    async def record(self, item: Item) -> Outcome | None:
        """Write ``item``; its outcome once committed (None: a receipt for no known
        part). A failure of the item alone is raised here; so is the transaction's."""
        return await self._batcher.submit(item)

    async def close(self) -> None:
        await self._batcher.close()

    async def apply(self, items: Sequence[Item]) -> list[Result | Exception]:
        """Apply ``items`` in one transaction, in order."""
        group = _Group(self._clock.now())
        async with self._db.write() as conn:
            by_carrier = await _load(conn, group, items)
            results = [_apply(group, item, by_carrier) for item in items]
            await _write(conn, group)
        entered = []
        for message_id, previous, status, reason in group.logs:
            log_status(message_id, MessageType.SMS.value, previous.value, status.value, reason)
            code = group.messages[message_id].columns.get("delivery_error_code")
            entered.append(
                StatusEntered(
                    message_id,
                    MessageType.SMS,
                    Direction.OUTBOUND,
                    status,
                    reason,
                    code if status in FAILED else None,
                )
            )
        self._feed.publish(entered)
        return results
