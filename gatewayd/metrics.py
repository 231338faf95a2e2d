"""Prometheus metrics, served at ``/metrics`` on the API port.

Counted as things happen: SMTP replies by code, render seconds. Read at scrape time:
messages by type and status, queue depth and the age of the oldest Queued message
per type (one grouped query, cached for a few seconds so that several scrapers do not
each cost a scan), SMPP link states, windows in use and PDU counts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd.mailbox.schema import messages
from gatewayd.model import MessageStatus

if TYPE_CHECKING:
    from gatewayd.mailbox import Mailbox
    from gatewayd.sms.link import SmppLink

REGISTRY = CollectorRegistry(auto_describe=True)
SMTP_REPLIES = Counter("gatewayd_smtp_replies", "SMTP replies sent, by code", ["code"],
                       registry=REGISTRY)  # fmt: skip
RENDER_SECONDS = Histogram(
    "gatewayd_render_seconds", "Time to render one fax into its TIFF",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY,
)  # fmt: skip
CACHE_SECONDS = 5.0


class Live(Collector):
    """What the daemon's parts know now (links), and what the mailbox holds (cached)."""

    def __init__(self) -> None:
        self.links: Sequence[SmppLink] = ()
        self.mailbox: Mailbox | None = None
        self._rows: list[tuple[str, str, int, float | None]] = []
        self._read_at = 0.0

    async def refresh(self) -> None:
        if self.mailbox is None or time.monotonic() - self._read_at < CACHE_SECONDS:
            return
        c = messages.c
        query = sa.select(c.type, c.message_status, sa.func.count(), sa.func.min(c.creation_time))
        async with self.mailbox.db.read() as conn:
            found = (await conn.execute(query.group_by(c.type, c.message_status))).all()
        now = self.mailbox.clock.now()
        self._rows = [
            (kind, status, count, (now - oldest).total_seconds() if oldest else None)
            for kind, status, count, oldest in found
        ]
        self._read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        by_status = GaugeMetricFamily("gatewayd_messages", "Messages in the mailbox",
                                      labels=["type", "status"])  # fmt: skip
        depth = GaugeMetricFamily("gatewayd_queue_depth", "Queued messages", labels=["type"])
        oldest = GaugeMetricFamily("gatewayd_queue_oldest_age_seconds",
                                   "Age of the oldest Queued message", labels=["type"])  # fmt: skip
        for kind, status, count, age in self._rows:
            by_status.add_metric([kind, status], count)
            if status == MessageStatus.QUEUED.value:
                depth.add_metric([kind], count)
                if age is not None:
                    oldest.add_metric([kind], age)
        yield from (by_status, depth, oldest)
        yield from self._link_metrics()

    def _link_metrics(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("gatewayd_smpp_link_up", "1 when the link is bound",
                                  labels=["link", "state"])  # fmt: skip
        window = GaugeMetricFamily("gatewayd_smpp_window_in_use", "submit_sm awaiting answer",
                                   labels=["link"])  # fmt: skip
        pdus = CounterMetricFamily("gatewayd_smpp_pdus", "PDUs by kind", labels=["link", "pdu"])
        for link in self.links:
            state.add_metric([link.name, link.state.value], 1 if link.bound else 0)
            window.add_metric([link.name], link.window_in_use)
            for kind, count in sorted(link.counts.items()):
                pdus.add_metric([link.name, kind], count)
        yield from (state, window, pdus)


LIVE = Live()
REGISTRY.register(LIVE)


async def render() -> bytes:
    await LIVE.refresh()
    return generate_latest(REGISTRY)
