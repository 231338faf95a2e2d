"""Group commit: new messages from concurrent callers share write transactions.

Sixteen SMTP sessions storing a mail each at the same moment would otherwise queue for
sixteen transactions, sixteen fsyncs, one after the other. Here, while one transaction
is being written, the callers that arrive meanwhile gather, and go together in the
next one. Each caller still gets its own answer: when a group fails because one random
id collided with a stored one, every member is written again on its own (drawing new
ids), so one caller's bad luck is nobody else's failure.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import IntegrityError

from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox.database import Database
from gatewayd.mailbox.rows import add_events
from gatewayd.mailbox.schema import attachments, messages

log = get_logger("gatewayd.mailbox")

Rows = tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]
"""The rows of new messages: (messages, attachments, events)."""

ID_ATTEMPTS = 5


class GroupCommit:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: list[tuple[Callable[[], Rows], asyncio.Future[Rows]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def insert(self, make_rows: Callable[[], Rows]) -> Rows:
        """Commit the rows ``make_rows`` builds (it is called again, with new ids, if an
        id collides); returns the rows as written."""
        future: asyncio.Future[Rows] = asyncio.get_running_loop().create_future()
        self._waiting.append((make_rows, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="mailbox-group-commit")
        # A caller that gives up does not stop the write: the rows are committed anyway.
        return await asyncio.shield(future)

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker

    async def _run(self) -> None:
        group: list[tuple[Callable[[], Rows], asyncio.Future[Rows]]] = []
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                await self._commit_group(group)
        finally:
            for _, future in group + self._waiting:  # only if we were cancelled mid-way
                if not future.done():
                    future.set_exception(StoreError("the mailbox was closed while writing"))

    async def _commit_group(
        self, group: list[tuple[Callable[[], Rows], asyncio.Future[Rows]]]
    ) -> None:
        made = [make() for make, _ in group]
        try:
            await self._write(made)
        except IntegrityError:
            for make, future in group:
                await self._commit_alone(make, future)
            return
        except Exception as exc:  # handed to every caller, who decides what it means
            for _, future in group:
                future.set_exception(exc)
            return
        for rows, (_, future) in zip(made, group, strict=True):
            future.set_result(rows)

    async def _commit_alone(self, make: Callable[[], Rows], future: asyncio.Future[Rows]) -> None:
        for attempt in range(1, ID_ATTEMPTS + 1):
            rows = make()
            try:
                await self._write([rows])
            except IntegrityError as exc:
                log.info("message.id_collision", attempt=attempt)
                if attempt == ID_ATTEMPTS:
                    future.set_exception(StoreError(f"could not store the messages: {exc.orig}"))
                continue
            except Exception as exc:  # handed to the caller
                future.set_exception(exc)
                return
            future.set_result(rows)
            return

    async def _write(self, made: list[Rows]) -> None:
        message_rows = [row for rows in made for row in rows[0]]
        file_rows = [row for rows in made for row in rows[1]]
        event_rows = [row for rows in made for row in rows[2]]
        async with self._db.write() as conn:
            await conn.execute(messages.insert(), message_rows)
            if file_rows:
                await conn.execute(attachments.insert(), file_rows)
            await add_events(conn, event_rows)
