"""The composition root: builds every part from the settings, runs them, stops them.

startup -> serve -> shutdown, as uvicorn's server does it. SIGTERM or SIGINT asks
for a graceful stop: background tasks are told to stop and get ``grace`` seconds to
finish; whatever is left is cancelled and counted in the log. A second signal stops
at once. A startup failure is one log line and exit code EXIT_STARTUP.

The SMS service (links, dispatcher, receipts) runs in a process of its own, the SMS
process, which this daemon starts, watches, starts again when it dies and stops with
itself (gatewayd/sms/supervisor.py and process.py): the front doors and the SMPP hot
path each get a processor core, and the mailbox is what they share. The daemon wakes
it when SMS are queued and reads its links' state for /metrics and the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gatewayd import __version__
from gatewayd.api.app import ApiServer, create_app
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context
from gatewayd.clock import Clock, SystemClock
from gatewayd.cluster import Cluster
from gatewayd.config.loader import load_config
from gatewayd.config.settings import Settings
from gatewayd.errors import ConfigError, GatewayError
from gatewayd.fax.service import FaxService
from gatewayd.ingress.handler import IngressHandler
from gatewayd.ingress.server import SmtpListeners
from gatewayd.logging import get_logger, set_node
from gatewayd.mailbox import Mailbox, Message
from gatewayd.metrics import Metrics
from gatewayd.model import MessageType
from gatewayd.notify import Notifications
from gatewayd.render.office import find_soffice
from gatewayd.sms.supervisor import SmsSupervisor
from gatewayd.systemd import Notifier

log = get_logger("gatewayd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1  # a part failed while running
EXIT_CONFIG = 3  # the config file is invalid
EXIT_STARTUP = 4  # a part could not start (database, port, directory)

DEFAULT_GRACE = 30.0
ORPHAN_SCAN_INTERVAL = 24 * 3600.0
# The mailbox writes from a thread of its own (mailbox/_driver.py). A thread waiting
# for Python's lock while the event loop runs gets it after at most this long (the
# interpreter's default is 5 ms, which a busy loop makes every database trip wait).
SWITCH_INTERVAL = 0.001


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        grace: float = DEFAULT_GRACE,
        clock: Clock | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        self.grace = grace
        self.clock = clock or SystemClock()
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self.mailbox: Mailbox | None = None
        self.smtp: SmtpListeners | None = None
        self.sms: SmsSupervisor | None = None
        self.fax: FaxService | None = None
        self.api: ApiServer | None = None
        self.notifications: Notifications | None = None
        self.cluster: Cluster | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._signals = 0
        self.notifier = Notifier()
        self.metrics = Metrics()

    async def run(self) -> int:
        sys.setswitchinterval(SWITCH_INTERVAL)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            try:
                await self.startup()
            except (GatewayError, OSError) as exc:
                log.error("daemon.startup_failed", error=str(exc))
                self.exit_code = EXIT_STARTUP
                return self.exit_code
            log.info("daemon.started", version=__version__, pid=os.getpid())
            self.notifier.ready(self._status())
            if self.notifier.watchdog_seconds:
                self.spawn("watchdog", self._watchdog)
            await self.stopping.wait()
            return self.exit_code
        finally:
            await self.shutdown()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("daemon.signal", signal=sig.name, action="graceful stop")
            self.stopping.set()
        else:
            log.warning("daemon.signal", signal=sig.name, action="stop now")
            for task in self._tasks:
                task.cancel()

    async def startup(self) -> None:
        set_node(self.settings.node.resolved_name)
        self.mailbox = await Mailbox.open(self.settings.mailbox, clock=self.clock)
        self.metrics.watch(mailbox=self.mailbox)
        # The node's name first: nothing binds or leases under a name another has.
        self.cluster = Cluster(
            self.mailbox, self.settings.node, version=__version__, info=self._node_info
        )
        await self.cluster.join()
        self.spawn("heartbeat", self._heartbeat)
        # In order: the SMS process, fax carrier, dispatchers, sweeper, API, SMTP listeners.
        self.sms = SmsSupervisor(self.settings, grace=self.grace, cluster=self.cluster)
        await self.sms.start()
        self.metrics.watch(links=self.sms.links)
        self.spawn("sms-process", self.sms.run)
        self.fax = FaxService(
            self.mailbox,
            self.settings,
            observe_render=self.metrics.render_seconds.observe,
            cluster=self.cluster,
        )
        await self.fax.start()
        self.spawn("fax-dispatcher", self.fax.dispatcher.run)
        if self.settings.notify.enabled:
            self.notifications = Notifications(self.mailbox, self.settings)
            self.spawn("notifications", self.notifications.run)
        self.spawn("sweeper", self._sweeper)
        office = find_soffice(self.settings.fax) is not None
        context = Context(
            self.mailbox,
            Authenticator(self.settings, self.mailbox),
            office=office,
            on_queued=self._queued,
        )
        self.api = ApiServer(create_app(context, self.metrics), self.settings)
        await self.api.start()
        handler = IngressHandler(self.settings, self.mailbox, office=office, on_queued=self._queued)
        self.smtp = SmtpListeners(self.settings, handler, self.metrics)
        await self.smtp.start()

    async def _heartbeat(self) -> None:
        assert self.cluster is not None
        await self.cluster.run(self.stopping)

    def _node_info(self) -> dict[str, Any]:
        """What this node tells the others in its heartbeat (``gatewayd nodes``)."""
        links = self.sms.links if self.sms is not None else []
        return {
            "links": {link.name: link.state_name for link in links},
            "smtp": [str(listener.address) for listener in self.settings.smtp.listen],
            "api": f"{self.api.host}:{self.api.port}" if self.api is not None else None,
        }

    def _queued(self, messages: Sequence[Message]) -> None:
        if self.sms is not None and any(m.type is MessageType.SMS for m in messages):
            self.sms.wake()
        if self.fax is not None and any(m.type is MessageType.FAX for m in messages):
            self.fax.dispatcher.wake()

    def spawn(self, name: str, body: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``body`` until it returns or the daemon stops; a crash stops the daemon."""
        task = asyncio.create_task(body(), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self.stopping.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("daemon.task_failed", task=task.get_name(), error=repr(exc), exc_info=exc)
            self.exit_code = EXIT_FAILURE
            self.stopping.set()

    def reload(self) -> None:
        """SIGHUP: users, destination policies and the log level from the config file
        again, without dropping a connection. Anything else in the file needs a restart
        (and is said so). An invalid file changes nothing."""
        if self.config_path is None:
            log.warning("daemon.reload_ignored", reason="no config file to read")
            return
        self.notifier.send("RELOADING=1")
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("daemon.reload_failed", problems=list(exc.problems))
            self.notifier.send("READY=1", "STATUS=reload failed: the config is invalid")
            return
        old = self.settings
        merged = replace(
            old,
            users=new.users,
            sms=replace(old.sms, policy=new.sms.policy),
            fax=replace(old.fax, policy=new.fax.policy),
            log=replace(old.log, level=new.log.level),
        )
        restart = [
            name
            for name in ("mailbox", "smtp", "sms", "fax", "api", "notify")
            if getattr(new, name) != getattr(merged, name)
        ]
        self.settings = merged
        for part in (self.smtp, self.sms, self.fax, self.notifications):
            if part is not None:
                part.reload(merged)
        if self.api is not None:
            self.api.auth.reload(merged)
        logging.getLogger().setLevel(merged.log.level.upper())
        log.info(
            "daemon.reloaded",
            users=len(merged.users),
            level=merged.log.level,
            needs_restart=restart,
        )
        self.notifier.send("READY=1", f"STATUS={self._status()}")

    def _status(self) -> str:
        api = f"API on {self.api.host}:{self.api.port}" if self.api else "no API"
        smtp = ", ".join(str(listener.address) for listener in self.settings.smtp.listen)
        sms = f"; SMS process {self.sms.pid}" if self.sms is not None and self.sms.pid else ""
        return f"gatewayd {__version__}: SMTP on {smtp}; {api}{sms}"

    async def _watchdog(self) -> None:
        """WATCHDOG=1 from the event loop itself: if the loop is stuck, no pings."""
        assert self.notifier.watchdog_seconds
        interval = self.notifier.watchdog_seconds / 2
        while not self.stopping.is_set():
            self.notifier.watchdog()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), interval)

    async def shutdown(self) -> None:
        self.notifier.stopping()
        self.stopping.set()
        started = time.monotonic()
        if self.smtp is not None:
            # No new connections; mail being stored gets the grace period; then hang up.
            self.smtp.stop_accepting()
            if not await self.smtp.handler.drained(self.grace):
                log.warning("smtp.drain_timeout", in_flight=self.smtp.handler.in_flight)
            closed = self.smtp.hang_up()
            log.info("smtp.stopped", connections_closed=closed)
            self.smtp = None
        if self.api is not None:
            await self.api.stop(min(self.grace, 5.0))
            self.api = None
        if self.sms is not None:
            self.sms.stop()  # it leases no more; what is in flight gets the grace
        if self.fax is not None:
            self.fax.dispatcher.stop()  # jobs at the carrier are followed after a restart
        if self.notifications is not None:
            self.notifications.stop()  # what is not sent yet goes after a restart
        if self._tasks:
            log.info("daemon.stopping", tasks=len(self._tasks), grace=self.grace)
            _done, pending = await asyncio.wait(set(self._tasks), timeout=self.grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
                log.warning(
                    "daemon.cancelled",
                    tasks=len(pending),
                    names=sorted(t.get_name() for t in pending),
                )
        if self.sms is not None:
            await self.sms.wait_stopped()
            self.sms = None
        if self.fax is not None:
            await self.fax.close()
            self.fax = None
        if self.cluster is not None:
            await self.cluster.leave()
            self.cluster = None
        if self.mailbox is not None:
            await self.mailbox.close()
            self.mailbox = None
        log.info(
            "daemon.stopped", seconds=round(time.monotonic() - started, 3), exit_code=self.exit_code
        )
        self.notifier.close()

    async def _sweeper(self) -> None:
        """The life-cycle sweep every ``sweep_interval``; the orphan scan once a day. In
        a cluster one node sweeps; the others look every few heartbeats whether that
        node is gone, to take over."""
        assert self.mailbox is not None
        interval = self.settings.mailbox.sweep_interval
        standby = min(interval, self.settings.node.heartbeat_interval * 2)
        next_orphan_scan = time.monotonic()
        while not self.stopping.is_set():
            orphans = time.monotonic() >= next_orphan_scan
            wait = interval
            try:
                if await self.mailbox.hold_role("sweeper"):
                    await self.mailbox.sweep(orphans=orphans)
                    if orphans:
                        next_orphan_scan = time.monotonic() + ORPHAN_SCAN_INTERVAL
                else:
                    wait = standby
            except GatewayError as exc:
                log.error("mailbox.sweep_failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=wait)
