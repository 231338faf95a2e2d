"""A batcher: what many callers ask for while a batch is being written goes together
in the next one.

New messages from sixteen SMTP sessions, or thousands of SMS acceptances and receipts
a second, would otherwise each wait for a transaction and an fsync of their own.
Callers hand an item to ``submit`` and wait; one worker task hands ``apply`` a
``Take``, and gives each caller its own result (or its own exception) once the batch
is written. A failure of the whole batch is every caller's. A caller that gives up
does not stop the write: its item is written anyway. A worker stopped (cancelled)
fails what it has not answered, and its Take, if the writer thread has not called it
yet, then takes nothing: what is asked for later is left to the next worker.

``apply`` calls its Take where it holds the writers' turn: on SQLite, in the writer
thread, once the lock file is held (Database.transact makes the transaction's body
there). So everything that arrived while another process wrote goes in this batch,
and the turn is held for no trip between the event loop and the thread: taking it on
the event loop and then gathering there held it ~0.9 ms a batch longer, and another
~1 ms when it had to be waited for in the thread and the loop told, time the other
process waited. Traced under ``bench/sms_vs_kannel.py --only api``, alternating with
the code before, three rounds: the SMS ledger's batch 12.7, 12.6, 12.4 → 11.2, 11.4,
11.0 ms from asking to written; end to end 11.8, 11.7, 11.4 → 11.0, 11.1, 11.1 s.
The group commit takes its batch at once instead (``early``) when the turn is free:
what is here now is all there is to wait for. Taken in the thread even then, the
SMTP door's 32 clients fell into step (batches of 3 to 32, with pauses of 22 ms
between a tenth of them) and it accepted ~5 % fewer mails a second.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from gatewayd.errors import StoreError

Item = TypeVar("Item")
Result = TypeVar("Result")

_Pairs = list[tuple[Item, "asyncio.Future[Result]"]]


class Take(Generic[Item, Result]):
    """What waits, taken once (on whichever thread calls first); the same items after.
    The first call may take only the ``limit`` first: the rest wait for the next."""

    def __init__(self, batcher: Batcher[Item, Result]) -> None:
        self._batcher = batcher
        self.pairs: _Pairs[Item, Result] | None = None

    def __call__(self, limit: int | None = None) -> list[Item]:
        return [item for item, _ in self._batcher._claim(self, limit)]

    def taken(self) -> list[Item] | None:
        """The items if taken already (None: not yet), without taking them."""
        pairs = self.pairs
        return None if pairs is None else [item for item, _ in pairs]

    def count(self) -> int:
        """How many items it has, or would have if taken now."""
        pairs = self.pairs
        return len(self._batcher._waiting) if pairs is None else len(pairs)


Apply = Callable[[Take[Item, Result]], Awaitable[Sequence[Result | Exception]]]
"""Writes the batch its Take gives; returns one result or exception per item, in order."""


class Batcher(Generic[Item, Result]):
    def __init__(
        self,
        apply: Apply[Item, Result],
        *,
        name: str,
        early: Callable[[], bool] | None = None,
        gather_below: int = 0,
    ) -> None:
        """``early``: whether to take the batch at once, on the event loop (the group
        commit: when the writers' turn is free, Database.turn_free); otherwise it is
        taken where ``apply`` holds the turn. ``gather_below``: fewer items than this
        waiting, the worker first lets the loop go round twice (reading whatever
        sockets are ready: more callers' items)."""
        self._apply = apply
        self._name = name
        self._early = early
        self._gather_below = gather_below
        self._waiting: _Pairs[Item, Result] = []
        self._lock = threading.Lock()  # the writer thread takes what the loop appends to
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """``item``'s result once its batch is written; its exception raised here."""
        return await self.submit_nowait(item)  # giving up cancels only the caller's future

    def submit_nowait(self, item: Item) -> asyncio.Future[Result]:
        """Queue ``item``; the future of its result (for callers that chain callbacks
        rather than await: the SMS hot path)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiting.append((item, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name=self._name)
        return future

    async def close(self) -> None:
        """Wait for what is being written."""
        if self._worker is not None:
            await self._worker

    def _claim(self, take: Take[Item, Result], limit: int | None = None) -> _Pairs[Item, Result]:
        with self._lock:
            if take.pairs is None:
                if limit is None or len(self._waiting) <= limit:
                    take.pairs, self._waiting = self._waiting, []
                else:
                    take.pairs, self._waiting = self._waiting[:limit], self._waiting[limit:]
            return take.pairs

    async def _run(self) -> None:
        take: Take[Item, Result] | None = None
        try:
            while self._waiting:
                if len(self._waiting) < self._gather_below:
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                take = Take(self)
                if self._early is not None and self._early():
                    take()
                try:
                    results = await self._apply(take)
                except Exception as exc:  # the whole batch failed: every caller's
                    # (taken now if it was not: the turn or the database was not had)
                    for _, future in self._claim(take):
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(self._claim(take), results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
                if self._waiting:
                    # A batch written on this thread (a quick transaction) and capped
                    # leaves the rest with no await between: the loop runs, and another
                    # process may take the writers' turn, before the next.
                    await asyncio.sleep(0)
            take = None
        finally:
            with self._lock:  # only if we were cancelled mid-way:
                taken: _Pairs[Item, Result] = []
                if take is not None:
                    if take.pairs is None:
                        take.pairs = []  # a transaction still to come takes nothing
                    taken = take.pairs
                left, self._waiting = taken + self._waiting, []
            for _, future in left:
                if not future.done():
                    future.set_exception(StoreError("the mailbox was closed while writing"))
