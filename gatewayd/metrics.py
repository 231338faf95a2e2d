"""Prometheus metrics, served at ``/metrics`` on the API port.

The daemon builds one ``Metrics`` and hands it to the parts that count (the SMTP door:
replies by code; the fax dispatcher: render seconds) and to the API that serves it.
Read at scrape time: messages by type and status, queue depth and the age of the
oldest Queued message per type (one grouped query through the mailbox, cached for a
few seconds so that several scrapers do not each cost a scan), and what each SMPP link
says of itself (``LinkView``: state, window in use, PDU counts).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd.mailbox import Mailbox, Node, StatusCount
from gatewayd.model import MessageStatus

CACHE_SECONDS = 5.0
RENDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class LinkView(Protocol):
    """What metrics read of an SMPP link."""

    @property
    def name(self) -> str: ...

    @property
    def state_name(self) -> str: ...

    @property
    def bound(self) -> bool: ...

    @property
    def window_in_use(self) -> int: ...

    @property
    def counts(self) -> Mapping[str, int]: ...


class _Live(Collector):
    """What the daemon's parts know now (links), and what the mailbox holds (cached)."""

    def __init__(self) -> None:
        self.links: Sequence[LinkView] = ()
        self.mailbox: Mailbox | None = None
        self.counts: list[StatusCount] = []
        self.nodes: list[Node] = []
        self.read_at = 0.0

    async def refresh(self) -> None:
        if self.mailbox is None or time.monotonic() - self.read_at < CACHE_SECONDS:
            return
        self.counts = await self.mailbox.counts()
        self.nodes = await self.mailbox.nodes()
        self.read_at = time.monotonic()

    def collect(self) -> Iterable[Metric]:
        by_status = GaugeMetricFamily(
            "gatewayd_messages", "Messages in the mailbox", labels=["type", "status"]
        )
        depth = GaugeMetricFamily("gatewayd_queue_depth", "Queued messages", labels=["type"])
        oldest = GaugeMetricFamily(
            "gatewayd_queue_oldest_age_seconds",
            "Age of the oldest Queued message",
            labels=["type"],
        )
        now = self.mailbox.clock.now() if self.mailbox is not None else None
        for item in self.counts:
            by_status.add_metric([item.type.value, item.status.value], item.count)
            if item.status is MessageStatus.QUEUED:
                depth.add_metric([item.type.value], item.count)
                if item.oldest is not None and now is not None:
                    oldest.add_metric([item.type.value], (now - item.oldest).total_seconds())
        yield from (by_status, depth, oldest)
        yield from self._node_metrics(now)
        yield from self._link_metrics()

    def _node_metrics(self, now: datetime | None) -> Iterator[Metric]:
        age = GaugeMetricFamily(
            "gatewayd_node_heartbeat_age_seconds",
            "Seconds since each node of the cluster wrote its heartbeat",
            labels=["node"],
        )
        held = GaugeMetricFamily(
            "gatewayd_node_held_messages",
            "Queued messages each node holds (leased), by type",
            labels=["node", "type"],
        )
        for node in self.nodes:
            if now is not None and node.stopped_at is None:
                age.add_metric([node.name], node.age(now))
            for kind, count in sorted(node.held.items()):
                held.add_metric([node.name, kind], count)
        yield from (age, held)

    def _link_metrics(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "gatewayd_smpp_link_up", "1 when the link is bound", labels=["link", "state"]
        )
        window = GaugeMetricFamily(
            "gatewayd_smpp_window_in_use", "submit_sm awaiting answer", labels=["link"]
        )
        pdus = CounterMetricFamily("gatewayd_smpp_pdus", "PDUs by kind", labels=["link", "pdu"])
        for link in self.links:
            state.add_metric([link.name, link.state_name], 1 if link.bound else 0)
            window.add_metric([link.name], link.window_in_use)
            for kind, count in sorted(link.counts.items()):
                pdus.add_metric([link.name, kind], count)
        yield from (state, window, pdus)


class Metrics:
    """One daemon's registry: counters its parts feed, and what is read at scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.smtp_replies = Counter(
            "gatewayd_smtp_replies", "SMTP replies sent, by code", ["code"], registry=self.registry
        )
        self.render_seconds = Histogram(
            "gatewayd_render_seconds",
            "Time to render one fax into its TIFF",
            buckets=RENDER_BUCKETS,
            registry=self.registry,
        )
        self._live = _Live()
        self.registry.register(self._live)

    def watch(
        self, *, mailbox: Mailbox | None = None, links: Sequence[LinkView] | None = None
    ) -> None:
        """What to read at scrape time."""
        if mailbox is not None:
            self._live.mailbox = mailbox
            self._live.read_at = 0.0
        if links is not None:
            self._live.links = links

    def smtp_reply(self, code: str) -> None:
        self.smtp_replies.labels(code).inc()

    async def render(self) -> bytes:
        """The Prometheus text format."""
        await self._live.refresh()
        return generate_latest(self.registry)
