"""Group commit: new messages from concurrent callers share write transactions.

Sixteen SMTP sessions storing a mail each at the same moment would otherwise queue for
sixteen transactions, sixteen fsyncs, one after the other. Here they go through a
Batcher (_batch.py): the callers that arrive while one transaction is being written
go together in the next. Each caller still gets its own answer: when a batch fails
because one random id collided with a stored one, every member is written again on
its own (drawing new ids), so one caller's bad luck is nobody else's failure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from gatewayd.errors import StoreConflict, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox._batch import Batcher
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._rows import add_events
from gatewayd.mailbox._schema import attachments, messages

log = get_logger("gatewayd.mailbox")

Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
"""The rows of new messages: (messages, attachments, events)."""

MakeRows = Callable[[], Rows]

ID_ATTEMPTS = 5


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._batcher: Batcher[MakeRows, Rows] = Batcher(self._commit, name="mailbox-group-commit")

    async def insert(self, make_rows: MakeRows) -> Rows:
        """Commit the rows ``make_rows`` builds (it is called again, with new ids, if an
        id collides); returns the rows as written."""
        return await self._batcher.submit(make_rows)

    async def close(self) -> None:
        await self._batcher.close()

    async def _commit(self, group: Sequence[MakeRows]) -> list[Rows | Exception]:
        made = [make() for make in group]
        try:
            await self._write(made)
        except StoreConflict:
            return [await self._commit_alone(make) for make in group]
        return list(made)

    async def _commit_alone(self, make: MakeRows) -> Rows | Exception:
        collision: StoreConflict | None = None
        for attempt in range(1, ID_ATTEMPTS + 1):
            rows = make()
            try:
                await self._write([rows])
            except StoreConflict as exc:
                log.info("message.id_collision", attempt=attempt)
                collision = exc
                continue
            except StoreError as exc:  # handed to the caller
                return exc
            return rows
        return StoreError(f"could not store the messages: {collision}")

    async def _write(self, made: list[Rows]) -> None:
        message_rows = [row for rows in made for row in rows[0]]
        file_rows = [row for rows in made for row in rows[1]]
        event_rows = [row for rows in made for row in rows[2]]
        async with self._db.write() as conn:
            await conn.execute(messages.insert(), message_rows)
            if file_rows:
                await conn.execute(attachments.insert(), file_rows)
            await add_events(conn, event_rows)
