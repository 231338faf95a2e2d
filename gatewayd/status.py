"""What the daemon says of itself to operators: ``gatewayd status``, ``/readyz``, and
the systemd ``STATUS=`` line.

The daemon makes one ``Observer`` and tells it (``watch``) what to look at: its SMPP
links (``LinkView``), its fax dispatcher (``CarrierView``: the carrier's name, how it
is doing, how many jobs it follows) and whether its listeners are up. From those and
the mailbox the observer makes:

- ``snapshot()``: the status document (JSON): the daemon (version, pid, node, uptime),
  readiness and its checks, each link and its state, the fax carrier's state, the
  queue per type (depth, oldest age), the statuses messages entered in the last hour
  per type and direction, the latest failures with their reasons and codes, and the
  nodes sharing the mailbox. The history and failures come from the mailbox's status
  events: every node's, across restarts.
- ``readiness()``: the mailbox answers, the listeners are up and not draining, and
  when SMS links are configured, at least one is bound. ``/readyz`` answers 503 when
  a check fails.
- ``summary()``: one line for ``systemctl status``.

``StatusSocket`` serves the snapshot on the data directory's socket (gatewayd/control.py)
to ``gatewayd status``. With no daemon running, ``offline_snapshot`` makes the same
document from the mailbox alone, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from gatewayd import __version__, control
from gatewayd.config.settings import Settings
from gatewayd.errors import StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import Mailbox, iso
from gatewayd.metrics import QUEUED_TYPES, LinkView

log = get_logger("gatewayd.status")

HISTORY = timedelta(hours=1)
FAILURES = 10
MAILBOX_TIMEOUT = 5.0  # seconds a status read may wait for the mailbox
PING_TIMEOUT = 2.0


class CarrierView(Protocol):
    """What the status reads of the fax dispatcher and its carrier."""

    @property
    def carrier_name(self) -> str: ...

    @property
    def carrier_state(self) -> tuple[str, str | None]:
        """("ok", None), or ("unavailable" | "refused", the last reason)."""
        ...

    @property
    def following(self) -> int:
        """Jobs at the carrier this node follows."""
        ...


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def _no_listeners() -> Mapping[str, bool]:
    return {}


class Observer:
    def __init__(self, mailbox: Mailbox, settings: Settings) -> None:
        self.mailbox = mailbox
        self.settings = settings
        self.node = settings.node.resolved_name
        self.started_at = datetime.now(UTC)
        self._started = time.monotonic()
        self.links: Sequence[LinkView] = ()
        self.carrier: CarrierView | None = None
        self.listening: Callable[[], Mapping[str, bool]] = _no_listeners
        self.stopping = False

    def watch(
        self,
        *,
        links: Sequence[LinkView] | None = None,
        carrier: CarrierView | None = None,
        listening: Callable[[], Mapping[str, bool]] | None = None,
    ) -> None:
        if links is not None:
            self.links = links
        if carrier is not None:
            self.carrier = carrier
        if listening is not None:
            self.listening = listening

    # -- readiness --------------------------------------------------------------------

    async def readiness(self) -> list[Check]:
        checks = [await self._mailbox_check()]
        up = self.listening()
        down = sorted(name for name, ok in up.items() if not ok)
        if self.stopping:
            checks.append(Check("listeners", False, "stopping: draining work in flight"))
        elif down or not up:
            checks.append(Check("listeners", False, f"not listening: {', '.join(down) or '-'}"))
        else:
            checks.append(Check("listeners", True, ", ".join(sorted(up))))
        checks.append(self._links_check())
        return checks

    async def _mailbox_check(self) -> Check:
        try:
            await asyncio.wait_for(self.mailbox.ping(), PING_TIMEOUT)
        except TimeoutError:
            return Check("mailbox", False, f"no answer within {PING_TIMEOUT:g} s")
        except StoreError as exc:
            return Check("mailbox", False, str(exc))
        return Check("mailbox", True, self.mailbox.describe())

    def _links_check(self) -> Check:
        if not self.settings.sms.links:
            return Check("sms", True, "no SMPP link configured")
        bound = [link.name for link in self.links if link.bound]
        if bound:
            return Check("sms", True, f"bound: {', '.join(bound)}")
        states = ", ".join(f"{link.name} {link.state_name}" for link in self.links)
        return Check("sms", False, f"no SMPP link is bound ({states or 'not started'})")

    # -- the status document ----------------------------------------------------------

    async def snapshot(self) -> dict[str, Any]:
        checks = await self.readiness()
        now = self.mailbox.clock.now()
        document = _header("daemon")
        document["daemon"] = {
            "running": True,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "node": self.node,
            "startedAt": iso(self.started_at),
            "uptimeSeconds": round(time.monotonic() - self._started, 1),
            "stopping": self.stopping,
            "listening": dict(self.listening()),
            "api": str(self.settings.api.listen),
            "smtp": [str(listener.address) for listener in self.settings.smtp.listen],
        }
        document["ready"] = all(check.ok for check in checks)
        document["checks"] = [check.to_json() for check in checks]
        document["links"] = [self._link(link) for link in self.links]
        document["fax"] = self._fax()
        document.update(await mailbox_figures(self.mailbox, self.settings, now))
        return document

    def _link(self, link: LinkView) -> dict[str, Any]:
        address = next(
            (str(s.address) for s in self.settings.sms.links if s.name == link.name), None
        )
        return {
            "name": link.name,
            "address": address,
            "state": link.state_name,
            "bound": link.bound,
            "error": link.error,
            "windowInUse": link.window_in_use,
        }

    def _fax(self) -> dict[str, Any]:
        if self.carrier is None:
            return {"carrier": self.settings.fax.carrier, "state": "not started"}
        state, reason = self.carrier.carrier_state
        return {
            "carrier": self.carrier.carrier_name,
            "state": state,
            "reason": reason,
            "following": self.carrier.following,
        }

    async def summary(self) -> str:
        """One line for ``systemctl status`` (STATUS=): links bound, the queue."""
        bound = sum(1 for link in self.links if link.bound)
        parts = [f"SMPP links {bound}/{len(self.links)} bound"]
        try:
            queued = {q.type: q.count for q in await self.mailbox.queue()}
            parts.append(
                "queue " + ", ".join(f"{t.value} {queued.get(t, 0)}" for t in QUEUED_TYPES)
            )
        except StoreError:
            parts.append("the mailbox is unreachable")
        if self.carrier is not None and self.carrier.carrier_state[0] != "ok":
            parts.append(f"fax carrier {self.carrier.carrier_state[0]}")
        smtp = ", ".join(str(listener.address) for listener in self.settings.smtp.listen)
        parts += [f"SMTP on {smtp}", f"API on {self.settings.api.listen}"]
        return f"gatewayd {__version__}: " + "; ".join(parts)


def _header(source: str) -> dict[str, Any]:
    return {"version": __version__, "source": source, "generatedAt": iso(datetime.now(UTC))}


async def mailbox_figures(mailbox: Mailbox, settings: Settings, now: datetime) -> dict[str, Any]:
    """The queue, the last hour, the latest failures and the nodes, as JSON; a mailbox
    that does not answer is said so instead."""
    since = now - HISTORY
    try:
        queue, tallies, failures, nodes = await asyncio.wait_for(
            asyncio.gather(
                mailbox.queue(),
                mailbox.status_tallies(since=since),
                mailbox.recent_failures(limit=FAILURES),
                mailbox.nodes(),
            ),
            MAILBOX_TIMEOUT,
        )
    except (StoreError, TimeoutError) as exc:
        why = str(exc) or f"no answer within {MAILBOX_TIMEOUT:g} s"
        return {"mailbox": {"database": mailbox.describe(), "reachable": False, "error": why}}
    by_type = {item.type: item for item in queue}
    stale = settings.node.stale_after
    return {
        "mailbox": {"database": mailbox.describe(), "reachable": True, "error": None},
        "queue": [
            {
                "type": kind.value,
                "depth": by_type[kind].count if kind in by_type else 0,
                "oldestAgeSeconds": round((now - oldest).total_seconds(), 1)
                if kind in by_type and (oldest := by_type[kind].oldest) is not None
                else None,
            }
            for kind in QUEUED_TYPES
        ],
        "lastHour": {
            "since": iso(since),
            "counts": [
                {
                    "type": t.type.value,
                    "direction": t.direction.value,
                    "status": t.status.value,
                    "count": t.count,
                }
                for t in tallies
            ],
        },
        "failures": [
            {
                "id": f.message_id,
                "type": f.type.value,
                "status": f.status.value,
                "at": iso(f.at),
                "to": f.to_number,
                "extensionId": str(f.extension_id),
                "code": f.code,
                "reason": f.reason,
            }
            for f in failures
        ],
        "nodes": [
            {
                "name": n.name,
                "state": n.state(now, stale),
                "host": n.host,
                "pid": n.pid,
                "version": n.version,
                "startedAt": iso(n.started_at),
                "heartbeatAt": iso(n.heartbeat_at),
                "heartbeatAgeSeconds": round(n.age(now), 1),
                "links": n.info.get("links", {}),
                "held": n.held,
            }
            for n in nodes
        ],
    }


async def offline_snapshot(mailbox: Mailbox, settings: Settings, why: str) -> dict[str, Any]:
    """The status document from the mailbox alone, for when no daemon answers: the
    links as this node's last heartbeat reported them."""
    now = mailbox.clock.now()
    node = settings.node.resolved_name
    document = _header("mailbox")
    document["daemon"] = {"running": False, "node": node, "why": why}
    document["ready"] = False
    figures = await mailbox_figures(mailbox, settings, now)
    mine = next((n for n in figures.get("nodes", ()) if n["name"] == node), None)
    reported = mine["links"] if mine else {}
    document["links"] = [
        {
            "name": link.name,
            "address": str(link.address),
            "state": "unknown",
            "bound": False,
            "lastReported": reported.get(link.name),
            "lastReportedAt": mine["heartbeatAt"] if mine else None,
        }
        for link in settings.sms.links
    ]
    document["fax"] = {"carrier": settings.fax.carrier, "state": "unknown"}
    document.update(figures)
    return document


class StatusSocket:
    """The observer's snapshot for whoever connects to the data directory's socket."""

    def __init__(self, observer: Observer, data_dir: Path) -> None:
        self.observer = observer
        self.path = control.socket_path(data_dir)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        # The data directory's lock is ours: a socket file there is a dead daemon's.
        self.path.unlink(missing_ok=True)
        with control.reachable(self.path) as name:
            self._server = await asyncio.start_unix_server(self._answer, path=name)
        os.chmod(self.path, 0o660)  # bound 0755 & ~umask: nobody else could connect meanwhile
        log.info("status.listening", socket=str(self.path))

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)
        self._server = None
        self.path.unlink(missing_ok=True)

    async def _answer(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                document = await asyncio.wait_for(self.observer.snapshot(), 2 * MAILBOX_TIMEOUT)
            except Exception as exc:  # the asker still gets one line saying what failed
                log.exception("status.failed")
                document = {**_header("daemon"), "error": f"the status failed: {exc}"}
            writer.write(json.dumps(document, ensure_ascii=False).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the asker went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
