"""The worker kit the dispatchers share: one lease loop and one back-off rule.

``LeaseLoop`` is the life of a worker that takes its work from the mailbox's queue:

1. adopt: what this owner held when its previous process stopped without letting go
   (the owner name is the same across restarts), handed to ``adopt``; in a cluster,
   also (at most once a heartbeat) what the workers of nodes that are gone held;
2. lease: while there is room (``room``), lease up to that many due Queued messages of
   its types (``take``: ``Mailbox.lease`` unless a subclass leases its own way) and
   hand each to ``start``, which runs it as a tracked task;
3. nap: when there was nothing (or no room), wait for ``wake`` (new messages were
   queued) or a poll interval;
4. stop: ``stop`` ends the leasing; ``run`` returns once every task it started is done.

A failure of the mailbox while leasing is logged once per attempt and retried after a
second: the loop never dies of it. While the node's heartbeat is failing (the others
may count it gone and adopt its work) it leases nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Collection, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from gatewayd.cluster import Cluster
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, Message
from gatewayd.model import MessageType

log = get_logger("gatewayd.worker")

STORE_RETRY = 1.0

Work = TypeVar("Work")


def backoff(
    first: float, attempt: int, *, cap: float, jitter: float = 0.0, rng: random.Random | None = None
) -> float:
    """The wait before try ``attempt + 1`` after ``attempt`` failed tries: ``first``
    doubling per try (attempt 1 waits ``first``), at most ``cap``, spread by
    ±``jitter`` (a fraction) so that many waiters do not come back together."""
    delay: float = min(first * 2.0 ** max(0, attempt - 1), cap)
    if jitter:
        delay *= (rng or random).uniform(1 - jitter, 1 + jitter)
    return delay


class LeaseLoop(Generic[Work]):
    """Subclasses say how much room there is, what to do with a message, and with
    what an earlier life held."""

    name = "worker"  # log events: <name>.lease_failed, <name>.adopt_failed
    idle_poll = 1.0  # seconds between looks at an empty queue
    busy_poll = 0.05  # seconds between looks while there is no room
    # After a lease that found less than there was room for, the next one waits at
    # least this long even when woken: while messages trickle in (a wake for each),
    # each lease still takes many, not one transaction each.
    lease_interval = 0.0

    def __init__(
        self,
        mailbox: Mailbox,
        owner: str,
        types: Collection[MessageType],
        *,
        lease_for: float,
        cluster: Cluster | None = None,
    ) -> None:
        self.mailbox = mailbox
        self.owner = owner
        self.cluster = cluster
        self.types = tuple(types)
        self.lease_for = lease_for
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- what a subclass says ---------------------------------------------------------

    def room(self) -> int | None:
        """How many more messages to take now; None: not ready to take any (a link is
        down), so look again after ``idle_poll``."""
        raise NotImplementedError

    async def take(self, limit: int) -> Sequence[Work]:
        """Lease up to ``limit`` due messages (a subclass may lease its own way)."""
        raise NotImplementedError

    def start(self, work: Work) -> None:
        """Begin work on a leased message (usually: ``spawn`` a task for it)."""
        raise NotImplementedError

    async def adopt(self, held: Sequence[Message]) -> None:
        """What this owner held when its previous process stopped without letting go."""
        raise NotImplementedError

    # -- control ----------------------------------------------------------------------

    def wake(self) -> None:
        """New messages are queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        """Lease no more; ``run`` returns when the tasks started are done."""
        self._stopped.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    @property
    def busy(self) -> int:
        """Messages started and not yet done (tasks, and ``in_flight``)."""
        return len(self._tasks) + self.in_flight()

    def in_flight(self) -> int:
        """Messages a subclass works on without a task of their own (callbacks)."""
        return 0

    def spawn(self, body: Coroutine[Any, Any, None], name: str | None = None) -> None:
        task = asyncio.create_task(body, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def nap(self, seconds: float) -> None:
        """Wait ``seconds``, or less when woken or stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    # -- the loop ---------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._adopt()
            while not self.stopping:
                if self.cluster is not None:
                    if not self.cluster.healthy:
                        await self.nap(self.idle_poll)
                        continue
                    await self._adopt_from_gone_nodes()
                room = self.room()
                if room is None:
                    await self.nap(self.idle_poll)
                    continue
                if room <= 0:
                    await self.nap(self.busy_poll)
                    continue
                try:
                    batch = await self.take(room)
                except StoreError as exc:
                    log.error(f"{self.name}.lease_failed", error=str(exc))
                    await self.nap(STORE_RETRY)
                    continue
                leased_at = loop.time()
                for work in batch:
                    self.start(work)
                if len(batch) < room:
                    await self.nap(self.idle_poll)
                    pause = leased_at + self.lease_interval - loop.time()
                    if pause > 0 and not self.stopping:
                        await asyncio.sleep(pause)
                else:
                    await asyncio.sleep(0)  # let what was started begin
        finally:
            while self._tasks or self.in_flight():  # callbacks may start tasks yet
                if self._tasks:
                    await asyncio.wait(set(self._tasks))
                else:
                    await asyncio.sleep(0.01)

    async def lease(self, limit: int) -> list[Message]:
        """``take`` as most workers do it: ``Mailbox.lease`` for their types."""
        return await self.mailbox.lease(
            self.owner, types=self.types, limit=limit, lease_for=self.lease_for
        )

    async def _adopt_from_gone_nodes(self) -> None:
        assert self.cluster is not None
        kind = self.owner.partition("@")[0]
        try:
            for node in await self.cluster.gone_peers():
                held = await self.mailbox.adopt(
                    f"{kind}@{node}",
                    self.owner,
                    types=self.types,
                    reason=f"node {node} stopped; adopted by node {self.cluster.name}",
                )
                if held:
                    log.warning(f"{self.name}.adopted", from_node=node, messages=len(held))
                    await self.adopt(held)
        except StoreError as exc:
            log.error(f"{self.name}.adopt_failed", error=str(exc))

    async def _adopt(self) -> None:
        try:
            held = await self.mailbox.leased_by(self.owner, types=self.types)
        except StoreError as exc:
            log.error(f"{self.name}.adopt_failed", error=str(exc))
            return
        if held:
            await self.adopt(held)
