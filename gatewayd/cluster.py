"""This daemon as a node among the daemons sharing one mailbox (docs/scaling.md).

``join`` takes the node's name (``[node] name``, else the host name) in the mailbox's
``nodes`` table, refusing to start while another live node has it. ``run`` writes the
heartbeat every ``heartbeat_interval`` with what the node does (its links, its roles);
it ends the daemon (``NodeFenced``) if another daemon has taken the name meanwhile, and
while heartbeats fail the node is not ``healthy``: its dispatchers take no new work,
since the others may already count it gone. ``gone_peers`` names the nodes that
stopped or went quiet for ``stale_after``: each dispatcher adopts what they held.

A SQLite mailbox has one node, and all of this costs one row and a write every few
seconds. The daemon's SMS process (gatewayd/sms/process.py) has a Cluster that never
joins or beats: the daemon tells it when the heartbeat was written (``heard``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from gatewayd.config.settings import NodeSettings
from gatewayd.errors import GatewayError, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox

log = get_logger("gatewayd.cluster")


class NodeFenced(GatewayError):
    """Another daemon has taken this node's name: this one must stop."""


class Cluster:
    def __init__(
        self,
        mailbox: Mailbox,
        settings: NodeSettings,
        *,
        version: str,
        info: Callable[[], dict[str, Any]] = dict,
    ) -> None:
        self.mailbox = mailbox
        self.settings = settings
        self.name = settings.resolved_name
        self.version = version
        self._info = info
        self.instance = ""
        self._last_beat = 0.0  # monotonic time of the last heartbeat written
        self._peers: list[str] = []
        self._peers_read = -1e9

    def owner(self, kind: str) -> str:
        """The lease owner of this node's ``kind`` worker ("sms", "fax")."""
        return f"{kind}@{self.name}"

    async def join(self) -> None:
        self.instance = await self.mailbox.join_cluster(
            self.name,
            stale_after=self.settings.stale_after,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self.version,
            alive=_gatewayd_alive,
        )
        self._last_beat = time.monotonic()
        log.info("node.joined", node=self.name, instance=self.instance)

    async def leave(self) -> None:
        if not self.instance:
            return
        with contextlib.suppress(StoreError):
            await self.mailbox.leave_cluster(self.name, self.instance)
        log.info("node.left", node=self.name)

    @property
    def last_beat(self) -> float:
        """When the heartbeat was last written (time.monotonic())."""
        return self._last_beat

    def heard(self, at: float) -> None:
        """The heartbeat was written at ``at`` by another process of this node (the
        daemon, for its SMS process, which writes none itself)."""
        self._last_beat = max(self._last_beat, at)

    @property
    def healthy(self) -> bool:
        """Whether the heartbeat is fresh enough that no other node counts us gone."""
        return time.monotonic() - self._last_beat < self.settings.stale_after / 2

    async def run(self, stopping: asyncio.Event) -> None:
        """Heartbeats until ``stopping``; NodeFenced if the name was taken from us."""
        failing = False
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.settings.heartbeat_interval)
            if stopping.is_set():
                return
            try:
                ours = await self.mailbox.heartbeat(self.name, self.instance, self._info())
            except StoreError as exc:
                if not failing:
                    log.error("node.heartbeat_failed", node=self.name, error=str(exc))
                failing = True
                continue
            if not ours:
                log.error("node.fenced", node=self.name, reason="another daemon took the name")
                raise NodeFenced(f"node name {self.name!r} was taken by another daemon")
            if failing:
                log.warning("node.heartbeat_back", node=self.name)
                failing = False
            self._last_beat = time.monotonic()

    async def gone_peers(self) -> list[str]:
        """Other nodes that stopped or went quiet (read at most once a heartbeat)."""
        now = time.monotonic()
        if now - self._peers_read >= self.settings.heartbeat_interval:
            found = await self.mailbox.gone_nodes(stale_after=self.settings.stale_after)
            self._peers = [name for name in found if name != self.name]
            self._peers_read = now
        return self._peers


def _gatewayd_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is (still) a gatewayd."""
    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"gatewayd" in cmdline.read()
    except OSError:
        return False
