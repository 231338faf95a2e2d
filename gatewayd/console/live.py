"""What the dashboard shows, gathered: the SMPP links (state, window in use, submits a
second), the fax carrier, the queue per type, messages per status over the last hour
and day (from the mailbox's status events), the last failures and the latest messages.

Submits a second are measured from each link's submit_sm count, sampled whenever the
dashboard asks (``RateMeter``): the rate over the last ``RATE_WINDOW`` seconds of
samples. Mailbox reads are kept for a few seconds (``Cached``), so that several open
dashboards do not each cost the same queries.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from gatewayd.api.deps import LiveView
from gatewayd.config.settings import Settings
from gatewayd.mailbox import EPOCH, Failure, Mailbox, MessageQuery, StatusCount
from gatewayd.model import MessageStatus, MessageType

T = TypeVar("T")
RATE_WINDOW = 10.0
CACHE_SECONDS = 2.0
SERIES_CACHE_SECONDS = 5.0
STATUSES = (
    MessageStatus.QUEUED,
    MessageStatus.SENT,
    MessageStatus.DELIVERED,
    MessageStatus.DELIVERY_FAILED,
    MessageStatus.SENDING_FAILED,
    MessageStatus.RECEIVED,
)
RANGES = {  # name: (span, bucket)
    "hour": (timedelta(hours=1), timedelta(minutes=1)),
    "day": (timedelta(days=1), timedelta(minutes=15)),
}


class RateMeter:
    """Events a second from a growing count, over the samples of the last window."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def rate(self, key: str, count: int, now: float | None = None) -> float | None:
        """None until there are two samples a moment apart."""
        now = time.monotonic() if now is None else now
        samples = self._samples.setdefault(key, deque())
        if not samples or now - samples[-1][0] >= 0.5:
            samples.append((now, count))
        while len(samples) > 2 and now - samples[1][0] >= self.window:
            samples.popleft()
        (t0, c0), (t1, c1) = samples[0], samples[-1]
        if t1 - t0 < 0.5:
            return None
        return max(0, c1 - c0) / (t1 - t0)


class Cached(Generic[T]):
    """One value per key, read again when older than ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._values: dict[Any, tuple[float, T]] = {}

    async def get(self, key: Any, read: Callable[[], Awaitable[T]]) -> T:
        found = self._values.get(key)
        if found is not None and time.monotonic() - found[0] < self.seconds:
            return found[1]
        value = await read()
        self._values[key] = (time.monotonic(), value)
        return value


@dataclass(frozen=True, slots=True)
class LinkRow:
    name: str
    state: str
    bound: bool
    window_in_use: int
    window: int | None
    submits_per_second: float | None
    submitted: int


@dataclass(frozen=True, slots=True)
class FaxRow:
    carrier: str
    problem: str | None
    jobs: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    type: MessageType
    count: int
    oldest_seconds: float | None


class Dashboard:
    def __init__(self, mailbox: Mailbox, live: LiveView | None) -> None:
        self.mailbox = mailbox
        self.live = live
        self.rates = RateMeter()
        self._queue: Cached[list[StatusCount]] = Cached(CACHE_SECONDS)
        self._failures: Cached[list[Failure]] = Cached(CACHE_SECONDS)
        self._series: Cached[dict[str, Any]] = Cached(SERIES_CACHE_SECONDS)
        self._latest: Cached[Any] = Cached(CACHE_SECONDS)

    def links(self, settings: Settings) -> list[LinkRow]:
        if self.live is None:
            return []
        windows = {link.name: link.window for link in settings.sms.links}
        rows = []
        for link in self.live.links:
            submitted = int(link.counts.get("submit_sm", 0))
            rows.append(
                LinkRow(
                    name=link.name,
                    state=link.state_name,
                    bound=link.bound,
                    window_in_use=link.window_in_use,
                    window=windows.get(link.name),
                    submits_per_second=self.rates.rate(link.name, submitted),
                    submitted=submitted,
                )
            )
        return rows

    def fax(self) -> FaxRow | None:
        view = self.live.fax if self.live is not None else None
        return FaxRow(view.name, view.problem, view.jobs) if view is not None else None

    async def queue(self) -> list[QueueRow]:
        counts = {c.type: c for c in await self._queue.get("queue", self.mailbox.queue)}
        now = self.mailbox.clock.now()
        rows = []
        usual = [MessageType.SMS, MessageType.FAX]
        for kind in usual + sorted(k for k in counts if k not in usual):
            found = counts.get(kind)
            oldest = found.oldest if found else None
            rows.append(
                QueueRow(
                    kind,
                    found.count if found else 0,
                    (now - oldest).total_seconds() if oldest else None,
                )
            )
        return rows

    async def failures(self, account_id: int) -> list[Failure]:
        return await self._failures.get(
            account_id,
            lambda: self.mailbox.recent_failures(limit=10, account_id=account_id),
        )

    async def latest(self, account_id: int) -> Any:
        query = MessageQuery(extension_id=None, account_id=account_id, date_from=EPOCH, per_page=10)
        page = await self._latest.get(account_id, lambda: self.mailbox.find(query))
        return page.records

    async def series(self, name: str, account_id: int) -> dict[str, Any]:
        """Messages entering each status per bucket: {"x": bucket starts (Unix
        seconds), "series": [{"label", "values"}], "bucket": seconds}."""
        span, bucket = RANGES[name]

        async def read() -> dict[str, Any]:
            now = self.mailbox.clock.now()
            end = _floor(now, bucket) + bucket
            start = end - span
            tallies = await self.mailbox.status_history(
                since=start, until=end, bucket=bucket, account_id=account_id
            )
            slots = int(span / bucket)
            values = {s: [0] * slots for s in STATUSES}
            for tally in tallies:
                index = int((tally.start - start) / bucket)
                if tally.status in values and 0 <= index < slots:
                    values[tally.status][index] += tally.count
            return {
                "x": [int((start + bucket * i).timestamp()) for i in range(slots)],
                "bucket": int(bucket.total_seconds()),
                "series": [{"label": s.value, "values": values[s]} for s in STATUSES],
            }

        return await self._series.get((name, account_id), read)


def _floor(moment: datetime, bucket: timedelta) -> datetime:
    seconds = bucket.total_seconds()
    return datetime.fromtimestamp(moment.timestamp() // seconds * seconds, moment.tzinfo)
