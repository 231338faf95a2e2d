"""Prometheus metrics, served at ``/metrics`` on the API port, by Prometheus's
conventions (names, units, ``_total`` counters, label sets known at start present
with 0, no ``_created`` series, enums as one series per state).

The daemon builds one ``Metrics`` and hands it to the parts that count (the SMTP door:
replies by code; the fax dispatcher: render seconds; the mailbox: every status a
message enters, through ``Mailbox.watch_status``) and to the API that serves it.

Counters count what this process did, as Prometheus counters do: each node of a
cluster counts the outcomes it wrote (the SMS its links sent, the receipts its links
got, the faxes its carrier reported), so ``sum()`` over the nodes counts each once,
and a restart starts again from 0, which ``rate()`` and ``increase()`` expect. (Counts
taken from the mailbox's event rows instead would be the whole cluster's on every
node, so a ``sum()`` would count them once per node, and would fall when the sweeper
removes old messages, which Prometheus reads as a restart.) ``gatewayd status`` reads
the event rows, for the cluster's recent history.

Read at scrape time: messages in the mailbox by type and status, queue depth and the age of the
oldest Queued message per type (grouped queries through the mailbox, cached for a few
seconds so that several scrapers do not each cost a scan), the nodes' heartbeats, and
what each SMPP link says of itself (``LinkView``: its state, window in use, PDU counts
and submit_sm answers by command_status).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gatewayd import __version__
from gatewayd.mailbox import Mailbox, Node, StatusCount, StatusEntered
from gatewayd.model import (
    STATUS_TRANSITIONS,
    Direction,
    MessageStatus,
    MessageType,
    TransitionRefused,
    initial_status,
)

CACHE_SECONDS = 5.0
RENDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
QUEUED_TYPES = (MessageType.SMS, MessageType.FAX)  # what the dispatchers send
CANCELLED = "Cancelled"  # the failure code of a message cancelled (it has no other)
NO_CODE = "Unknown"

# The _created series of every counter say when the process started; nobody reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]  # (untyped in prometheus_client)


def reachable() -> list[tuple[MessageType, Direction, MessageStatus]]:
    """Every (type, direction, status) a message can be in, from the status machine."""
    found = []
    for kind in MessageType:
        for direction in Direction:
            try:
                first = initial_status(kind, direction)
            except TransitionRefused:
                continue
            statuses = [first]
            if direction is Direction.OUTBOUND:
                statuses += sorted(
                    {to for _, to in STATUS_TRANSITIONS[kind]} - {first},
                    key=list(MessageStatus).index,
                )
            found += [(kind, direction, status) for status in statuses]
    return found


class LinkView(Protocol):
    """What metrics read of an SMPP link."""

    @property
    def name(self) -> str: ...

    @property
    def state_name(self) -> str: ...

    @property
    def states(self) -> Sequence[str]:
        """Every state the link can be in."""
        ...

    @property
    def bound(self) -> bool: ...

    @property
    def error(self) -> str | None:
        """Why it is down (or its last failure); None when all is well."""
        ...

    @property
    def window_in_use(self) -> int: ...

    @property
    def counts(self) -> Mapping[str, int]:
        """PDUs by command name: submit_sm sent, deliver_sm (and data_sm) received."""
        ...

    @property
    def responses(self) -> Mapping[str, int]:
        """submit_sm answers by command_status name (ESME_ROK, ESME_RTHROTTLED, ...)."""
        ...


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
            "gatewayd_mailbox_messages",
            "Messages in the mailbox now, by type and status",
            labels=["type", "status"],
        )
        depth = GaugeMetricFamily("gatewayd_queue_depth", "Queued messages", labels=["type"])
        oldest = GaugeMetricFamily(
            "gatewayd_queue_oldest_age_seconds",
            "Age of the oldest Queued message (0 when none is)",
            labels=["type"],
        )
        now = self.mailbox.clock.now() if self.mailbox is not None else None
        known = {(item.type, item.status): item for item in self.counts}
        pairs = sorted({(kind, status) for kind, _, status in reachable()} | set(known))
        for kind, status in pairs:
            item = known.get((kind, status))
            by_status.add_metric([kind.value, status.value], item.count if item else 0)
        for kind in QUEUED_TYPES:
            item = known.get((kind, MessageStatus.QUEUED))
            depth.add_metric([kind.value], item.count if item else 0)
            age = 0.0
            if item is not None and item.oldest is not None and now is not None:
                age = max(0.0, (now - item.oldest).total_seconds())
            oldest.add_metric([kind.value], age)
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
        up = GaugeMetricFamily(
            "gatewayd_smpp_link_up", "1 when the SMPP link is bound, else 0", labels=["link"]
        )
        state = GaugeMetricFamily(
            "gatewayd_smpp_link_state",
            "The SMPP link's state: 1 for the state it is in, 0 for the others",
            labels=["link", "state"],
        )
        window = GaugeMetricFamily(
            "gatewayd_smpp_window_in_use", "submit_sm awaiting their answer", labels=["link"]
        )
        pdus = CounterMetricFamily(
            "gatewayd_smpp_pdus",
            "PDUs by command: submit_sm sent, deliver_sm and data_sm received",
            labels=["link", "pdu"],
        )
        responses = CounterMetricFamily(
            "gatewayd_smpp_submit_responses",
            "Answers to submit_sm, by command_status",
            labels=["link", "status"],
        )
        for link in self.links:
            up.add_metric([link.name], 1 if link.bound else 0)
            current = link.state_name
            for name in link.states:
                state.add_metric([link.name, name], 1 if name == current else 0)
            window.add_metric([link.name], link.window_in_use)
            for kind, count in sorted(link.counts.items()):
                pdus.add_metric([link.name, kind], count)
            for status, count in sorted(link.responses.items()):
                responses.add_metric([link.name, status], count)
        yield from (up, state, window, pdus, responses)


class Metrics:
    """One daemon's registry: counters its parts feed, and what is read at scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        build = Gauge(
            "gatewayd_build_info",
            "The running gatewayd: its version in the label, always 1",
            ["version"],
            registry=self.registry,
        )
        build.labels(__version__).set(1)
        self.smtp_replies = Counter(
            "gatewayd_smtp_replies", "SMTP replies sent, by code", ["code"], registry=self.registry
        )
        self._smtp_reply_counters: dict[str, Counter] = {}
        self.render_seconds = Histogram(
            "gatewayd_render_seconds",
            "Time to render one fax into its TIFF",
            buckets=RENDER_BUCKETS,
            registry=self.registry,
        )
        self.messages_total = Counter(
            "gatewayd_messages",
            "Messages that entered a status (outcome), as this process wrote it",
            ["type", "direction", "outcome"],
            registry=self.registry,
        )
        for kind, direction, status in reachable():
            self.messages_total.labels(kind.value, direction.value, status.value)
        self.fax_failures = Counter(
            "gatewayd_fax_failures",
            "Faxes that failed, by faxErrorCode (Cancelled: cancelled or deleted)",
            ["code"],
            registry=self.registry,
        )
        self.sms_failures = Counter(
            "gatewayd_sms_failures",
            "SMS that failed (SendingFailed or DeliveryFailed), by deliveryErrorCode",
            ["code"],
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
        counter = self._smtp_reply_counters.get(code)
        if counter is None:  # labels() takes a lock and builds a key: once per code
            counter = self._smtp_reply_counters[code] = self.smtp_replies.labels(code)
        counter.inc()

    def status_entered(self, item: StatusEntered) -> None:
        """A message entered a status (``Mailbox.watch_status``): count its outcome,
        and a failure by its code."""
        self.count_entered(
            item.type, item.direction, item.status, item.code, cancelled=item.cancelled
        )

    def count_entered(
        self,
        kind: MessageType,
        direction: Direction,
        status: MessageStatus,
        code: str | None,
        *,
        cancelled: bool,
        times: int = 1,
    ) -> None:
        """``times`` messages entered ``status`` (here, or in the SMS process, which
        sends its tallies to the daemon)."""
        self.messages_total.labels(kind.value, direction.value, status.value).inc(times)
        if status not in (MessageStatus.SENDING_FAILED, MessageStatus.DELIVERY_FAILED):
            return
        code = code or (CANCELLED if cancelled else NO_CODE)
        if kind is MessageType.FAX:
            self.fax_failures.labels(code).inc(times)
        elif kind is MessageType.SMS:
            self.sms_failures.labels(code).inc(times)

    async def render(self) -> bytes:
        """The Prometheus text format."""
        await self._live.refresh()
        return generate_latest(self.registry)
