"""The SMS ledger: what SMSCs say of submitted parts, written in bulk.

An SMPP link at thousands of messages a second answers every part (submit_sm_resp)
and later reports on it (a receipt). One write transaction for each would cap the
gateway at what the disk can fsync; here the facts that arrive while a transaction is
being written gather and go together in the next, set-based: two SELECTs for the whole
group (the parts the receipts name; the messages and their parts), the status machine
applied in memory item by item, in arrival order (a receipt right behind its own
acceptance finds it), then each table's rows in one statement (or a few). Every
caller still gets its own answer, after the commit. The statements go straight to the
driver over plain tuples (_driver.py): this runs for every SMS, twice.

On SQLite the ledger holds the writers' turn for as long as its batch takes, and the
daemon's group commit, with clients waiting on it, waits that long when it comes
meanwhile. So while another process is writing (another connection has committed
since the ledger's last transaction: SQLite's ``PRAGMA data_version``, read once the
turn is held), a transaction takes at most SHARED_BATCH items and leaves the rest, in
order, to the next; and while that process's group commit writes for waiting clients
(its transactions come thick), a transaction first waits, a few milliseconds at
most, to begin right after one of them ends, and then may take QUICK_ITEMS: it holds
the turn while the daemon answers and reads its clients, not when it comes back to
write (_driver.py, ``SqliteWriter.behind_front``). Alone (the SMS service draining a
queue) it takes all that waits: a cap there costs throughput. Measured in docs/sms.md.

The status machine is the one in gatewayd.model: a part moves
Queued -> Sent -> Delivered / DeliveryFailed, or Queued -> SendingFailed; the message
follows its parts (derive_sms_status) and never moves back; a receipt that changes
nothing is kept as an event. Facts from the carrier are recorded whoever holds the
message's lease: the SMSC took the part, whatever became of the lease.

Events: a part's move is a ``part`` event, and the message's moves that follow are
``status`` events; when a message of one part moves with its part, the ``status``
event carries the part's details (part, link, carrier_id, the receipt's) and no
``part`` event repeats it. "split into N parts" is written for N > 1 only.
``message.status`` log lines are debug for Sent and Delivered (the events are the
audit trail; ``gatewayd trace`` shows them) and info for the failures.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gatewayd.clock import Clock
from gatewayd.errors import MessageNotFound, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._batch import Batcher, Take
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._driver import Body, Fetch, Insert, Op, Spelling, Update
from gatewayd.mailbox._rows import EVENT_COLUMNS
from gatewayd.mailbox._schema import to_micros
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
Result = Outcome | None
SHARED_BATCH = 48
"""Items a transaction at most while another process writes too (the daemon taking in
messages): its group commit waits for the writers' turn while the ledger holds it.
Right behind one of its group commits (Database.behind_front), QUICK_ITEMS."""
QUICK_ITEMS = 2 * SHARED_BATCH
"""A transaction that may run on the event loop's thread (Database.transact's
``quick``: when the writers' turn is free at once) takes at most this many items;
when more wait and nobody else has been writing (the SMS service draining a queue
alone), the transaction goes to the writer thread, beside the loop, and takes all."""
EventRow = tuple[int, int, str, str | None, str | None, str, str | None]
"""message_events without its id: (message_id, at, kind, from, to, reason, detail)."""

_STATUS = {s.value: s for s in MessageStatus}
_PART_STATUS = {s.value: s for s in PartStatus}
# The stored text of each status (an enum's ``.value`` is a Python-level lookup, and
# this runs several times for every acceptance and receipt). A message status and a
# part status of the same text are equal strings and share an entry: that text.
_STORED: dict[MessageStatus | PartStatus, str] = {s: s.value for s in (*MessageStatus, *PartStatus)}
_ONE_PART = {s: derive_sms_status((s,)) for s in PartStatus}  # an SMS of one part
_SMS = MessageType.SMS.value
_PATHS: dict[tuple[MessageStatus, MessageStatus], tuple[MessageStatus, ...] | None] = {}


def _path(current: MessageStatus, target: MessageStatus) -> tuple[MessageStatus, ...] | None:
    key = (current, target)
    if key not in _PATHS:
        found = status_path(MessageType.SMS, current, target)
        _PATHS[key] = None if found is None else tuple(found)
    return _PATHS[key]


def _json(detail: dict[str, Any] | None) -> str | None:
    return orjson.dumps(detail).decode() if detail else None


# -- applying a group -------------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    id: int
    type: str
    status: MessageStatus
    columns: dict[str, Any] = field(default_factory=dict)  # to write, as stored


@dataclass(slots=True)
class _Part:
    """A part as the group changes it in memory (gatewayd.mailbox.Part is its frozen
    record for readers); times in microseconds, as stored."""

    status: PartStatus
    link: str | None = None
    carrier_id: str | None = None
    error_code: str | None = None
    submitted_at: int | None = None
    done_at: int | None = None

    def values(self) -> tuple[Any, ...]:
        return (
            _STORED[self.status],
            self.link,
            self.carrier_id,
            self.error_code,
            self.submitted_at,
            self.done_at,
        )


@dataclass(slots=True)
class _Group:
    """The group's messages and parts in memory, and what to write."""

    now: int  # microseconds
    messages: dict[int, _Message] = field(default_factory=dict)
    parts: dict[int, dict[int, _Part]] = field(default_factory=dict)
    new_parts: set[tuple[int, int]] = field(default_factory=set)
    changed_parts: set[tuple[int, int]] = field(default_factory=set)
    events: list[EventRow] = field(default_factory=list)
    logs: list[tuple[int, MessageStatus, MessageStatus, str]] = field(default_factory=list)
    accepted: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)

    def event(
        self,
        message_id: int,
        kind: str,
        reason: str,
        detail: dict[str, Any] | None = None,
        moved: tuple[str | None, str | None] = (None, None),
    ) -> None:
        self.events.append((message_id, self.now, kind, *moved, reason, _json(detail)))

    def ensure_parts(self, message_id: int, count: int) -> None:
        parts = self.parts.setdefault(message_id, {})
        if parts:
            if len(parts) != count:
                raise StoreError(f"message {message_id} has {len(parts)} parts, not {count}")
            return
        for index in range(count):
            parts[index] = _Part(PartStatus.QUEUED)
            self.new_parts.add((message_id, index))
        if count > 1:
            self.event(message_id, "part", f"split into {count} parts", {"parts": count})

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
        parts = self.parts[message_id]
        part = parts[index]
        current = part.status
        check_part_transition(current, to)
        for name, value in values.items():
            setattr(part, name, value)
        part.status = to
        self.changed_parts.add((message_id, index))
        about = {
            "part": index,
            **{k: v for k, v in values.items() if isinstance(v, str)},
            **(detail or {}),
        }
        message = self.messages[message_id]
        if len(parts) == 1:
            target = _ONE_PART[to]
        else:
            target = derive_sms_status(p.status for p in parts.values())
        path = _path(message.status, target)
        if len(parts) == 1 and path:
            self.follow(message, path, reason, about)  # the status events say it all
            return
        self.event(message_id, "part", reason, about, (_STORED[current], _STORED[to]))
        if path is None:
            why = f"status stays {message.status}: parts say {target}"
            self.event(message_id, "note", why, detail)
            return
        self.follow(message, path, reason, detail)

    def follow(
        self,
        message: _Message,
        path: tuple[MessageStatus, ...],
        reason: str,
        detail: dict[str, Any] | None,
    ) -> None:
        """Bring the message along ``path`` to what its parts now say (never back)."""
        if not path:
            return
        columns = message.columns
        columns["last_modified_time"] = self.now
        for step in path:
            moved = (_STORED[message.status], _STORED[step])
            self.event(message.id, "status", reason, detail, moved)
            self.logs.append((message.id, message.status, step, reason))
            if message.status is MessageStatus.QUEUED:
                columns.update(next_attempt_at=None, lease_owner=None)
            message.status = step
        columns["message_status"] = _STORED[message.status]
        parts = self.parts[message.id].values()
        if message.status is MessageStatus.DELIVERED:
            done = [p.done_at for p in parts if p.done_at is not None]
            columns["sms_delivery_time"] = max(done) if done else self.now
        if message.status in FAILED:
            columns["delivery_error_code"] = next(
                (p.error_code for p in parts if p.error_code), None
            )
            columns["failure_reason"] = reason


_PART_VALUES = ("status", "link", "carrier_id", "error_code", "submitted_at", "done_at")
_PART_KEY = ("message_id", "part_index")
Places = dict[tuple[str, str], tuple[int, int]]  # (link, carrier id) -> (message, part)


def _load(sql: Spelling, group: _Group, items: Sequence[Item]) -> Generator[Op, Any, Places]:
    """Read the group's messages and parts; returns where each receipt's ids point."""
    by_carrier: Places = {}
    wanted: dict[str, set[str]] = defaultdict(set)
    for item in items:
        if isinstance(item, ReceiptIn):
            wanted[item.link].update(item.carrier_ids)
    for link, carrier_ids in wanted.items():
        found = yield Fetch(
            "SELECT message_id, part_index, carrier_id FROM message_parts "
            f"WHERE link = ? AND {sql.any_of('carrier_id', 'text')} ORDER BY submitted_at",
            (link, sql.values(sorted(carrier_ids))),
        )
        for message_id, index, carrier_id in found:
            by_carrier[link, carrier_id] = (message_id, index)  # the newest wins
    ids = {i.message_id for i in items if not isinstance(i, ReceiptIn)}
    ids.update(message_id for message_id, _ in by_carrier.values())
    if not ids:
        return by_carrier
    rows = yield Fetch(
        "SELECT m.id, m.type, m.message_status, p.part_index, p.status, p.link, "
        "p.carrier_id, p.error_code, p.submitted_at, p.done_at "
        "FROM messages m LEFT JOIN message_parts p ON p.message_id = m.id "
        f"WHERE {sql.any_of('m.id', 'bigint')}",
        (sql.values(sorted(ids)),),
    )
    for message_id, kind, status, index, *part in rows:
        if message_id not in group.messages:
            group.messages[message_id] = _Message(message_id, kind, _STATUS[status])
            group.parts[message_id] = {}
        if index is not None:
            group.parts[message_id][index] = _Part(_PART_STATUS[part[0]], *part[1:])
    for message_id in [m for m, parts in group.parts.items() if not parts]:
        del group.parts[message_id]  # no parts yet: ensure_parts makes them
    return by_carrier


def _apply(group: _Group, item: Item, by_carrier: Places) -> Outcome | Exception | None:
    if isinstance(item, ReceiptIn):
        return _receipt(group, item, by_carrier)
    message = group.messages.get(item.message_id)
    if message is None:
        return MessageNotFound(item.message_id)
    if message.type != _SMS:
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


def _receipt(group: _Group, item: ReceiptIn, by_carrier: Places) -> Outcome | None:
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
        group.event(message_id, "receipt", why, detail)
        return Outcome(message_id, message.status, changed=False)
    done_at = to_micros(item.done_at) if item.done_at is not None else group.now
    group.move_part(
        message_id,
        index,
        item.outcome,
        reason=f"receipt: {item.outcome}",
        values={"done_at": done_at, "error_code": item.error_code},
        detail=detail,
    )
    return Outcome(message_id, message.status, changed=True)


def _write(group: _Group) -> Generator[Op, Any, None]:
    if group.new_parts:
        yield Insert(
            "message_parts",
            _PART_KEY + _PART_VALUES,
            [(m, i, *group.parts[m][i].values()) for m, i in sorted(group.new_parts)],
        )
    changed = group.changed_parts - group.new_parts
    if changed:
        yield Update(
            "message_parts",
            _PART_VALUES,
            _PART_KEY,
            [(*group.parts[m][i].values(), m, i) for m, i in sorted(changed)],
        )
    by_columns: dict[tuple[str, ...], list[tuple[Any, ...]]] = defaultdict(list)
    for message in group.messages.values():
        if message.columns:
            keys = tuple(sorted(message.columns))
            by_columns[keys].append((*(message.columns[k] for k in keys), message.id))
    for keys, rows in by_columns.items():
        yield Update("messages", keys, ("id",), rows)
    yield Insert("message_events", EVENT_COLUMNS, group.events)


def _transaction(
    sql: Spelling, group: _Group, items: Sequence[Item]
) -> Body[list[Outcome | Exception | None]]:
    by_carrier = yield from _load(sql, group, items)
    results = [_apply(group, item, by_carrier) for item in items]
    yield from _write(group)
    return results


# -- group commit -----------------------------------------------------------------------


class Ledger:
    """Takes items from many callers; writes each gathering in one transaction."""

    def __init__(self, db: Database, clock: Clock, feed: StatusFeed) -> None:
        self._db = db
        self._clock = clock
        self._feed = feed
        self._batcher: Batcher[Item, Result] = Batcher(self.apply, name="sms-ledger")
        self._seen: object = None  # the last data_version read (in the writer thread)
        self._shared = False  # whether another process had written, at the last look

    async def record(self, item: Item) -> Outcome | None:
        """Write ``item``; its outcome once committed (None: a receipt for no known
        part). A failure of the item alone is raised here; so is the transaction's."""
        return await self._batcher.submit(item)

    def record_nowait(self, item: Item) -> asyncio.Future[Outcome | None]:
        """``record`` as a future (its exception is the future's)."""
        return self._batcher.submit_nowait(item)

    async def close(self) -> None:
        await self._batcher.close()

    def _take(
        self, sql: Spelling, take: Take[Item, Result], most: int | None, shared: int
    ) -> Body[list[Item]]:
        """This transaction's items: at most ``shared`` when another process has
        committed since the ledger last looked (SQLite's data_version), else ``most``
        (None: all)."""
        if sql.data_version is None:  # PostgreSQL: no writers' turn to keep short
            return take()
        [(version,)] = yield Fetch(sql.data_version, ())
        seen, self._seen = self._seen, version
        self._shared = version != seen
        return take(shared if self._shared else most)

    async def apply(self, take: Take[Item, Result]) -> list[Result | Exception]:
        """Apply the items ``take`` gives (where the writers' turn is held) in one
        transaction, in order."""
        group = _Group(now=0)
        # Another process writing: right behind its group commit while that writes for
        # waiting clients (the turn then free for a while: up to QUICK_ITEMS).
        behind = self._shared and await self._db.behind_front()
        # Short enough for the event loop's thread: few wait, or the last transaction
        # saw another process write (this one then most likely takes SHARED_BATCH).
        quick = self._shared or take.count() <= QUICK_ITEMS
        shared = QUICK_ITEMS if behind else SHARED_BATCH

        def make(sql: Spelling) -> Body[list[Outcome | Exception | None]]:
            group.now = to_micros(self._clock.now())  # the batch's time: its turn's
            items = yield from self._take(sql, take, QUICK_ITEMS if quick else None, shared)
            return (yield from _transaction(sql, group, items))

        results = await self._db.transact(make, quick=quick)
        # A failure is logged at warning (log_status); the rest are debug lines, the
        # events being the audit trail (a line for each at thousands a second costs).
        debug = log.isEnabledFor(logging.DEBUG)
        entered = []
        for message_id, previous, step, reason in group.logs:
            final = step in FAILED
            if final:
                log_status(message_id, MessageType.SMS.value, previous.value, step.value, reason)
            elif debug:
                log.debug(
                    "message.status",
                    message_id=message_id,
                    type=MessageType.SMS.value,
                    previous=previous.value,
                    status=step.value,
                    reason=reason,
                )
            code = group.messages[message_id].columns.get("delivery_error_code")
            entered.append(
                StatusEntered(
                    message_id,
                    MessageType.SMS,
                    Direction.OUTBOUND,
                    step,
                    reason,
                    code if final else None,
                )
            )
        self._feed.publish(entered)
        return results
