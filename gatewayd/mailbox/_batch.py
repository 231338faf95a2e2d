"""A batcher: what many callers ask for while a batch is being written goes together
in the next one.

New messages from sixteen SMTP sessions, or thousands of SMS acceptances and receipts
a second, would otherwise each wait for a transaction and an fsync of their own.
Callers hand an item to ``submit`` and wait; one worker task takes everything waiting,
hands it to ``apply`` as one batch, and gives each caller its own result (or its own
exception) once the batch is written. A failure of the whole batch is every caller's.
A caller that gives up does not stop the write: its item is written anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Generic, TypeVar

from gatewayd.errors import StoreError
from gatewayd.logging import get_logger

Item = TypeVar("Item")
Result = TypeVar("Result")
log = get_logger("gatewayd.mailbox")

Apply = Callable[[Sequence[Item]], Awaitable[Sequence[Result | Exception]]]
"""Writes a batch; returns one result or exception per item, in order."""


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        apply: Apply[Item, Result],
        *,
        name: str,
        turn: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        """``turn``: what to wait for before a batch is gathered (the writers' turn:
        Database.turn), so that what comes meanwhile goes in this batch."""
        self._apply = apply
        self._name = name
        self._turn = turn
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """``item``'s result once its batch is written; its exception raised here."""
        return await self.submit_nowait(item)  # giving up cancels only the caller's future

    def submit_nowait(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future of its result (for callers that chain callbacks
        rather than await: the SMS hot path)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=self._name)
        return future

    async def close(self) -> None:
        """Wait for what is being written."""
        if self._worker is not None:
            await self._worker

    async def _run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                batch = []
                results: Sequence[Result | Exception] | None = None
                try:
                    async with self._turn() if self._turn else contextlib.nullcontext():
                        batch, self._waiting = self._waiting, []
                        results = await self._apply([item for item, _ in batch])
                except Exception as exc:
                    if results is None:  # the whole batch failed: every caller's
                        if not batch:  # (the turn could not be taken: what waits fails)
                            batch, self._waiting = self._waiting, []
                        for _, future in batch:
                            if not future.done():
                                future.set_exception(exc)
                        continue
                    # Committed; only giving the turn back failed: the callers have
                    # their results (an error would make them write it all again).
                    log.error("mailbox.turn_release_failed", batcher=self._name, error=str(exc))
                for (_, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
            batch = []
        finally:
            for _, future in batch + self._waiting:  # only if we were cancelled mid-way
                if not future.done():
                    future.set_exception(StoreError("the mailbox was closed while writing"))
