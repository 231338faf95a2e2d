"""Where a part's acceptance and its receipt meet, when the receipt comes first.

Some SMSCs send a part's delivery receipt before (or while) its submit_sm_resp is
recorded: the receipt names a message id the mailbox does not know yet. The
dispatcher tells this rendezvous what it is doing on each link (``submitting`` ...
``answered``: a submit_sm is out and its answer not yet recorded; ``accept``: an
answer is being recorded, then is in the mailbox), and the inbound handler records
receipts through it. A receipt for an acceptance already handed to the mailbox needs
no waiting: the mailbox's ledger writes what it is given in order (_ledger.py), so
the receipt finds its part. A receipt for an id nobody knows, while submits on its
link still wait for their answers, waits (up to ``within``) for one of its ids to be
recorded, then is tried again. Ids recorded a moment ago are remembered a while, for
a receipt that looked just before the commit.

The SMPP link itself only speaks SMPP; this is the one place that knows both sides.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from functools import partial

from gatewayd.mailbox import Mailbox, Outcome, PartAccepted, ReceiptIn

RECENT_IDS = 65536  # ids a late-looking receipt may still find (a few seconds of traffic)


class Rendezvous:
    def __init__(self, mailbox: Mailbox) -> None:
        self._mailbox = mailbox
        self._submitting: dict[str, int] = {}  # link -> submit_sm whose answer is not in
        self._recording: set[tuple[str, str]] = set()  # (link, id): answered, being recorded
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()  # recorded lately
        self._waiters: dict[tuple[str, str], asyncio.Event] = {}

    # -- the dispatcher's side ----------------------------------------------------------

    def submitting(self, link: str) -> None:
        """A submit_sm goes out on ``link``; ``answered`` when its answer is in (and,
        if accepted, recorded)."""
        self._submitting[link] = self._submitting.get(link, 0) + 1

    def answered(self, link: str) -> None:
        left = self._submitting[link] - 1
        if left:
            self._submitting[link] = left
        else:
            del self._submitting[link]

    async def accept(self, item: PartAccepted) -> Outcome:
        """Record an acceptance; receipts waiting for its id go on once it is in."""
        outcome = await self.accept_nowait(item)
        assert outcome is not None  # only a receipt finds nothing
        return outcome

    def accept_nowait(self, item: PartAccepted) -> asyncio.Future[Outcome | None]:
        """``accept`` as a future of the outcome."""
        key = (item.link, item.carrier_id)
        self._recording.add(key)
        recorded = self._mailbox.recording(item)
        recorded.add_done_callback(partial(self._accepted, key))
        return recorded

    def _accepted(self, key: tuple[str, str], _recorded: asyncio.Future[Outcome | None]) -> None:
        self._recording.discard(key)
        self._recent[key] = None
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        waiter = self._waiters.pop(key, None)
        if waiter is not None:
            waiter.set()

    # -- the inbound side -----------------------------------------------------------------

    def receipt_nowait(self, item: ReceiptIn) -> asyncio.Future[Outcome | None]:
        """The first look: the receipt recorded, or None (no part has its ids yet)."""
        return self._mailbox.recording(item)

    async def receipt_again(self, item: ReceiptIn, *, within: float) -> Outcome | None:
        """After a first look found no part: wait (up to ``within``) when one of its
        parts may still be recorded, and look again; None when none is."""
        keys = [(item.link, carrier_id) for carrier_id in item.carrier_ids]
        if self._may_come(item.link, keys) and await self._wait(keys, within):
            return await self._mailbox.record_receipt(item)
        return None

    def _may_come(self, link: str, keys: list[tuple[str, str]]) -> bool:
        """Whether a part with one of these ids may still be recorded: it is being
        recorded, was a moment ago, or an answer on its link is still awaited."""
        if any(k in self._recording or k in self._recent for k in keys):
            return True
        return link in self._submitting

    async def _wait(self, keys: list[tuple[str, str]], within: float) -> bool:
        if any(k in self._recent for k in keys):
            return True
        events = [self._waiters.setdefault(k, asyncio.Event()) for k in keys]
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            done, _ = await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
            return bool(done)
        finally:
            for wait in waits:
                wait.cancel()
            for key, event in zip(keys, events, strict=True):
                if not event.is_set() and self._waiters.get(key) is event:
                    del self._waiters[key]
