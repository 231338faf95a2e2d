"""Group commit: new messages from concurrent callers share write transactions.

Thirty-two API clients or SMTP sessions storing a message each at the same moment
would otherwise queue for as many transactions and fsyncs, one after the other. Here
they go through a Batcher (_batch.py): the callers that arrive while one transaction
is being written go together in the next, written with one multi-row INSERT per
table straight to the driver (_driver.py: rows as tuples in their stored form). A caller's
rows are made as it comes, not once the batch has the writers' turn: the turn is what
the SMS process's ledger waits for, and making 32 messages' rows inside it held it
~1.5 ms longer a batch (5.0 → 3.4 ms a batch, traced under bench/sms_vs_kannel.py).
Each caller still gets its own answer: when a batch fails because one random id
collided with a stored one (another process or node drew it in the same 1/64 s:
_ids.py), the whole batch is drawn again and written again; should that keep failing,
every member is written on its own, so that one caller's failure is nobody else's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gatewayd.errors import StoreConflict, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._batch import Batcher, Take
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._driver import Body, Insert
from gatewayd.mailbox._ids import ID_ATTEMPTS
from gatewayd.mailbox._rows import ATTACHMENT_COLUMNS, EVENT_COLUMNS, MESSAGE_COLUMNS
from gatewayd.mailbox.records import Message

log = get_logger("gatewayd.mailbox")


@dataclass(frozen=True, slots=True)
class NewRows:
    """New messages as rows (tuples in _rows.py's column order) and as the records
    their callers get back."""

    messages: list[tuple[Any, ...]]
    files: list[tuple[Any, ...]]
    events: list[tuple[Any, ...]]
    records: list[Message]


MakeRows = Callable[[], NewRows]
QUICK_MESSAGES = 64
"""A batch of at most this many new messages, taken at once because the writers' turn
was free (``early``), may be written on the event loop's thread (Database.transact's
``quick``): its callers wait for it anyway, and the trip to the writer thread and back
is two wake-ups, each waiting for a core on a busy machine (_driver.py, "here"). A
batch that finds the turn held (by the SMS process's ledger) is written there too,
once the turn is given back, if at most this many wait when it starts waiting; it then
takes at most this many. Its callers, and under bench/sms_vs_kannel.py --only api
that is all 32 clients, wait for the turn whatever runs the transaction; run in the
writer thread, it held the turn longer (_driver.py, ``_begun_here``)."""
QUICK_AT_LEAST = 8
"""A batch taken early is written on the loop only if it has at least this many, or
if all its callers are ``eager`` (the API's short way). SMTP sessions end their DATA
one at a time: written on the loop at once, their batches were of one mail (median;
450 commits a second, each with its sync holding the loop), and the door took
~1,880 mails/s; in the writer thread the next mails gather while one batch commits
(16 a batch), ~2,440/s; small ones in the thread and from 8 on the loop, 1,821 →
2,680/s by median against the code before (bench/smtp_ingest.py, three random-order
rounds each).
The API's clients, answered together after each commit, come back in bursts: the
same rule cost its ingest ~11 % (5,230 → 4,650/s), so its batches go on the loop
whatever their size."""


GATHER_BELOW = 8
"""A batch of fewer new messages waits for the loop to go round twice first (_batch.py,
``gather_below``): after the 32 API clients of bench/sms_vs_kannel.py are answered
together, the first to come back was a batch of its own (one in five batches had
fewer than four messages, each a transaction and a sync of the WAL). End to end
through the API, 5.51 → 5.33 s by median of seven runs against the code without it
(won six)."""

Pending = tuple[MakeRows, NewRows, bool]
"""A caller's rows, the function that makes them again (new ids) on a collision, and
whether the caller is ``eager``."""


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._batcher: Batcher[Pending, NewRows] = Batcher(
            self._commit, name="mailbox-group-commit", early=db.turn_free, gather_below=GATHER_BELOW
        )

    def insert(self, make_rows: MakeRows, *, eager: bool = False) -> asyncio.Future[NewRows]:
        """Commit the rows ``make_rows`` builds (here, before the writers' turn, which
        the SMS process waits for meanwhile; again, with new ids, if an id collides);
        the future of the rows as written (no coroutine: the API's short way adds a
        callback to it). ``eager``: a batch of such callers alone is written on the
        event loop's thread however small (QUICK_AT_LEAST)."""
        return self._batcher.submit_nowait((make_rows, make_rows(), eager))

    async def close(self) -> None:
        await self._batcher.close()

    async def _commit(self, take: Take[Pending, NewRows]) -> Sequence[NewRows | Exception]:
        taken = take.taken()  # at once when the turn was free (``early``), else not yet
        if taken is not None:
            quick, most = _quick(taken), None
        else:  # taken once the turn is had: on the loop (waited for) when few wait now
            quick = take.count() <= QUICK_MESSAGES
            most = QUICK_MESSAGES if quick else None
        try:
            await self._db.transact(
                lambda _sql: _insert([r for _, r, _ in take(most)]), quick=quick, front=True
            )
            return [rows for _, rows, _ in take()]
        except StoreConflict as exc:  # an id drawn elsewhere (or a broken row)
            log.info("message.id_collision", attempt=1, batch=len(take()), error=str(exc))
        makes = [make for make, _, _ in take()]
        try:
            return await self._drawing(makes, first=2)
        except StoreConflict:
            pass
        # Not bad luck any more: each on its own, so that whatever collides is only
        # its own caller's failure.
        results: list[NewRows | Exception] = []
        for make in makes:
            try:
                results.extend(await self._drawing([make]))
            except StoreConflict as exc:
                results.append(StoreError(f"could not store the messages: {exc}"))
            except StoreError as exc:  # handed to the caller
                results.append(exc)
        return results

    async def _drawing(self, group: Sequence[MakeRows], first: int = 1) -> list[NewRows]:
        """Write the rows of ``group``, made here, and made again with new ids while one
        collides, up to the ID_ATTEMPTS-th write (counting from ``first``); then the
        last StoreConflict is raised."""
        for attempt in range(first, ID_ATTEMPTS + 1):
            made = [make() for make in group]
            try:
                await self._write(made)
            except StoreConflict as exc:  # an id drawn elsewhere (or a broken row)
                log.info("message.id_collision", attempt=attempt, batch=len(group), error=str(exc))
                if attempt == ID_ATTEMPTS:
                    raise
                continue
            return made
        raise AssertionError("unreachable")  # the loop returns or raises

    async def _write(self, made: list[NewRows]) -> None:
        await self._db.transact(lambda _sql: _insert(made), front=True)


def _quick(batch: list[Pending]) -> bool:
    """Whether a batch taken early is written on the event loop's thread."""
    count = sum(len(rows.messages) for _, rows, _ in batch)
    if count > QUICK_MESSAGES:
        return False
    return count >= QUICK_AT_LEAST or all(eager for _, _, eager in batch)


def _insert(made: list[NewRows]) -> Body[None]:
    yield Insert("messages", MESSAGE_COLUMNS, [row for rows in made for row in rows.messages])
    yield Insert("attachments", ATTACHMENT_COLUMNS, [row for rows in made for row in rows.files])
    yield Insert("message_events", EVENT_COLUMNS, [row for rows in made for row in rows.events])
