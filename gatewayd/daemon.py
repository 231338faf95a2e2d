"""The composition root: builds every part from the settings, runs them, stops them.

startup -> serve -> shutdown, as uvicorn's server does it. SIGTERM or SIGINT asks
for a graceful stop: background tasks are told to stop and get ``grace`` seconds to
finish; whatever is left is cancelled and counted in the log. A second signal stops
at once. A startup failure is one log line and exit code EXIT_STARTUP.

Before anything listens, the process is made to hold (gatewayd.guard): the descriptor
limit raised to the hard limit and the listeners' connection caps fitted into it,
asyncio's own accept errors tallied rather than logged one by one, and a watchdog
thread that logs any stall of the event loop over 100 ms with its stack. (``gatewayd
run`` has set umask 077 before that.)
What the daemon says of itself: the ``Observer`` (gatewayd/status.py) is handed the
links, the fax dispatcher and the listeners; it answers ``gatewayd status`` on the data
directory's socket and ``/readyz``, and makes the systemd STATUS= line, sent again
whenever it changes (looked at every STATUS_INTERVAL). The metrics count every status
a message enters through the mailbox's watcher.
The SMS service (links, dispatcher, receipts) runs in a process of its own, the SMS
process, which this daemon starts, watches, starts again when it dies and stops with
itself (gatewayd/sms/supervisor.py and process.py): the front doors and the SMPP hot
path each get a processor core, and the mailbox is what they share. The daemon wakes
it when SMS are queued and reads its links' state for /metrics and the heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gatewayd import __version__, lockfile
from gatewayd.api.app import ApiServer, create_app
from gatewayd.api.auth import Authenticator
from gatewayd.api.deps import Context, FaxCarrierView
from gatewayd.clock import Clock, SystemClock
from gatewayd.cluster import Cluster
from gatewayd.config.loader import load_config
from gatewayd.config.settings import Settings
from gatewayd.console import mount as mount_console
from gatewayd.errors import ConfigError, GatewayError
from gatewayd.fax.service import FaxService
from gatewayd.guard import process
from gatewayd.guard.listener import Caps
from gatewayd.guard.stalls import LoopWatchdog
from gatewayd.guard.tally import Tally, install_accept_error_filter
from gatewayd.ingress.handler import IngressHandler
from gatewayd.ingress.server import SmtpListeners
from gatewayd.logging import get_logger, set_level, set_node
from gatewayd.mailbox import Mailbox, Message
from gatewayd.metrics import LinkView, Metrics
from gatewayd.model import MessageType
from gatewayd.notify import Notifications
from gatewayd.render.office import find_soffice
from gatewayd.sms.channel import Entered
from gatewayd.sms.supervisor import SmsSupervisor
from gatewayd.status import Observer, StatusSocket
from gatewayd.systemd import Notifier

log = get_logger("gatewayd.daemon")

EXIT_OK = 0
EXIT_FAILURE = 1  # a part failed while running
EXIT_CONFIG = 3  # the config file is invalid
EXIT_STARTUP = 4  # a part could not start (database, port, directory)

DEFAULT_GRACE = 30.0
ORPHAN_SCAN_INTERVAL = 24 * 3600.0
STATUS_INTERVAL = 2.0  # seconds between looks at what the STATUS= line should say
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
        self.lock: lockfile.DataDirLock | None = None
        self.loop_watchdog = LoopWatchdog()
        self._accept_errors: Tally | None = None
        self.observer: Observer | None = None
        self.status_socket: StatusSocket | None = None
        self._said = ""  # the STATUS= line systemd has
        self._note = ""  # added to it (a failed reload) until the next good reload

    async def run(self) -> int:
        sys.setswitchinterval(SWITCH_INTERVAL)
        loop = asyncio.get_running_loop()
        self._accept_errors = install_accept_error_filter(loop)
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
            # What start-up made lives as long as the daemon: out of the collector's full
            # passes, which otherwise walk it all (~70 ms with the loop stopped, now and
            # then, in the middle of serving).
            gc.collect()
            gc.freeze()
            # Stalls are watched from here on, while serving: start-up's own (a new
            # mailbox's migrations, the collection above) keep no client waiting.
            self.loop_watchdog.start()
            self._said = await self._status()
            self.notifier.ready(self._said)
            if self.notifier.watchdog_seconds:
                self.spawn("watchdog", self._watchdog)
            if self.notifier.enabled:
                self.spawn("status-line", self._status_line)
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

    def _caps(self) -> tuple[Caps, Caps]:
        """The SMTP listeners' and the API's connection caps, within the descriptors
        there are (after raising the soft limit to the hard one)."""
        smtp, api = self.settings.smtp, self.settings.api
        wanted = [Caps(smtp.max_connections, smtp.max_connections_per_address)] * len(smtp.listen)
        wanted.append(Caps(api.max_connections, api.max_connections_per_address))
        fitted = process.fit_caps(wanted, process.raise_nofile())
        return fitted[0], fitted[-1]

    async def startup(self) -> None:
        self.lock = lockfile.acquire(self.settings.mailbox.data_dir)  # before anything else
        set_node(self.settings.node.resolved_name)
        smtp_caps, api_caps = self._caps()
        self.mailbox = await Mailbox.open(self.settings.mailbox, clock=self.clock)
        self.metrics.watch(mailbox=self.mailbox)
        self.mailbox.watch_status(self.metrics.status_entered)
        self.observer = Observer(self.mailbox, self.settings)
        self.observer.watch(listening=self._listening)
        # The node's name first: nothing binds or leases under a name another has.
        self.cluster = Cluster(
            self.mailbox, self.settings.node, version=__version__, info=self._node_info
        )
        await self.cluster.join()
        self.spawn("heartbeat", self._heartbeat)
        # In order: the SMS process, fax carrier, dispatchers, sweeper, API, SMTP listeners.
        self.sms = SmsSupervisor(
            self.settings,
            grace=self.grace,
            cluster=self.cluster,
            on_entered=self._count_sms_statuses,
        )
        await self.sms.start()
        self.metrics.watch(links=self.sms.links)
        self.observer.watch(links=self.sms.links)
        self.spawn("sms-process", self.sms.run)
        self.fax = FaxService(
            self.mailbox,
            self.settings,
            observe_render=self.metrics.render_seconds.observe,
            cluster=self.cluster,
        )
        await self.fax.start()
        self.observer.watch(carrier=self.fax.dispatcher)
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
            live=_LiveParts(self),
            renderer=self.fax.renderer,
            status=self.observer,
        )
        app = create_app(context, self.metrics)
        if self.settings.console.enabled:
            mount_console(app, context)
        self.api = ApiServer(app, self.settings, caps=api_caps)
        await self.api.start()
        handler = IngressHandler(self.settings, self.mailbox, office=office, on_queued=self._queued)
        self.smtp = SmtpListeners(self.settings, handler, self.metrics, caps=smtp_caps)
        await self.smtp.start()
        self.status_socket = StatusSocket(self.observer, self.settings.mailbox.data_dir)
        await self.status_socket.start()

    def _listening(self) -> dict[str, bool]:
        """Whether each front door takes new work now."""
        smtp = self.smtp is not None and bool(self.smtp.acceptors) and not self.smtp.draining
        api = self.api is not None and self.api.server.started and not self.stopping.is_set()
        return {"smtp": smtp, "api": api}

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
            self._note = "the last reload failed: the config is invalid"
            self.notifier.send("READY=1")
            self._said = ""  # said again, with the note, at the next look
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
            for name in ("mailbox", "smtp", "sms", "fax", "api", "console", "notify")
            if getattr(new, name) != getattr(merged, name)
        ]
        self.settings = merged
        self._note = ""
        for part in (self.smtp, self.sms, self.fax, self.notifications):
            if part is not None:
                part.reload(merged)
        if self.api is not None:
            self.api.auth.reload(merged)
        set_level(merged.log)
        log.info(
            "daemon.reloaded",
            users=len(merged.users),
            level=merged.log.level,
            needs_restart=restart,
        )
        self.notifier.send("READY=1")

    async def _status(self) -> str:
        if self.observer is None:
            return f"gatewayd {__version__}: starting"
        line = await self.observer.summary()
        if self.sms is not None and self.sms.pid:
            line += f"; SMS process {self.sms.pid}"
        return f"{line}; {self._note}" if self._note else line

    async def _status_line(self) -> None:
        """STATUS= for ``systemctl status``, sent again whenever it changes."""
        while not self.stopping.is_set():
            line = await self._status()
            if line != self._said:
                self.notifier.send(f"STATUS={line}")
                self._said = line
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), STATUS_INTERVAL)

    def _count_sms_statuses(self, entered: Mapping[Entered, int]) -> None:
        """The statuses messages entered in the SMS process, into the metrics."""
        for (kind, direction, status, code, cancelled), times in entered.items():
            self.metrics.count_entered(
                kind, direction, status, code, cancelled=cancelled, times=times
            )

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
        if self.observer is not None:
            self.observer.stopping = True  # /readyz: 503 from now on
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
        if self.status_socket is not None:
            await self.status_socket.close()
            self.status_socket = None
        if self.cluster is not None:
            await self.cluster.leave()
            self.cluster = None
        if self.mailbox is not None:
            await self.mailbox.close()
            self.mailbox = None
        log.info(
            "daemon.stopped", seconds=round(time.monotonic() - started, 3), exit_code=self.exit_code
        )
        self.loop_watchdog.stop()
        if self._accept_errors is not None:
            self._accept_errors.close()
        self.notifier.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None

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


class _LiveParts:
    """The daemon's running parts as the console's dashboard sees them (api LiveView)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    @property
    def links(self) -> Sequence[LinkView]:
        sms = self._daemon.sms
        return sms.links if sms is not None else ()

    @property
    def fax(self) -> FaxCarrierView | None:
        fax = self._daemon.fax
        return _FaxCarrier(fax) if fax is not None else None


class _FaxCarrier:
    def __init__(self, fax: FaxService) -> None:
        self.name = fax.carrier.name
        self.problem = fax.dispatcher.carrier_problem
        self.jobs = fax.dispatcher.jobs
