"""Events that can come thousands a second, logged once per interval with a count.

The first occurrence is logged at once (so an operator sees when it starts); after
that, at most one line per ``interval`` says how many more there were, by key. Runs on
the event loop (``call_later`` flushes what is left).
"""

from __future__ import annotations

import asyncio
import errno
from collections import Counter
from typing import Any

from gatewayd.logging import get_logger

log = get_logger("gatewayd.guard")

ACCEPT_ERROR = "socket.accept() out of system resource"


class Tally:
    """Counts of one event by a key (an errno name, a reason), logged as ``event``
    with ``count`` and ``by`` at most once per ``interval`` seconds."""

    def __init__(self, event: str, interval: float = 10.0, **fields: Any) -> None:
        self.event = event
        self.interval = interval
        self.fields = fields
        self.total = 0
        self._pending: Counter[str] = Counter()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: str) -> None:
        self.total += 1
        if self._timer is None:
            self._log(Counter({key: 1}))
            self._arm()
        else:
            self._pending[key] += 1

    def _arm(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._pending:
            pending, self._pending = self._pending, Counter()
            self._log(pending)
            self._arm()

    def _log(self, counts: Counter[str]) -> None:
        log.warning(
            self.event,
            count=sum(counts.values()),
            by=dict(counts),
            interval=self.interval,
            total=self.total,
            **self.fields,
        )

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            self._log(self._pending)
            self._pending = Counter()


def install_accept_error_filter(loop: asyncio.AbstractEventLoop, interval: float = 10.0) -> Tally:
    """Make ``loop`` count asyncio's own "socket.accept() out of system resource"
    reports (a listener made by ``loop.create_server`` that ran out of descriptors)
    instead of logging a traceback for each; everything else goes to the handler
    there was before. Our listeners (gatewayd.guard.listener) do not go through it."""
    tally = Tally("listener.accept_failed", interval, source="asyncio")
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            exc = context.get("exception")
            tally.add(errno_name(exc))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    return tally


def errno_name(exc: object) -> str:
    number = getattr(exc, "errno", None)
    return errno.errorcode.get(number, str(number)) if isinstance(number, int) else "unknown"
