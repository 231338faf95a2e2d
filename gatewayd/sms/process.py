"""The SMS process: the SMS service (links, dispatcher, receipts and inbound SMS) in a
process of its own, started and watched by the daemon (supervisor.py), so that the
SMPP hot path and the front doors (SMTP, API) each have a processor core.

    python -m gatewayd.sms.process FD

FD is this process's end of the channel (channel.py). Its life:

1. read ``Start`` (the daemon's settings and grace period) from the channel; set up
   logging as the daemon does (the same stdout and log file); ask the kernel to kill
   this process when the daemon dies (PR_SET_PDEATHSIG), so that a daemon killed
   with SIGKILL never leaves an SMS process behind beside its successor's;
2. open the mailbox and start the links and the dispatcher, as the daemon did in its
   own process before: the lease owner is ``sms@<node>``, so a new SMS process takes
   back at once what its previous life held (marked "in flight when the gateway
   stopped unexpectedly ...");
3. serve: ``Wake`` wakes the dispatcher (at most one lease per LEASE_INTERVAL while
   wakes keep coming), ``Reload`` hands new users and policies to the service,
   ``Beat`` tells the node's heartbeat; the links' state goes to the daemon
   (``Links``) within a tenth of a second of a change, and every second, with how
   many messages entered each status here since the last (the daemon's metrics);
4. SIGTERM (or SIGINT): lease no more; what is in flight gets the grace period; unbind;
   exit 0. A second signal cancels what is left. The channel closing (the daemon is
   gone) ends the process at once, as a crash would.

Exit codes as ``gatewayd run``'s: 0 clean stop, 1 a part failed while running, 4 the
mailbox could not be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import uvloop

from gatewayd import __version__
from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings
from gatewayd.errors import GatewayError
from gatewayd.logging import configure_logging, get_logger, set_level, set_node
from gatewayd.mailbox import Mailbox, StatusEntered
from gatewayd.sms.channel import (
    Beat,
    Channel,
    ChannelClosed,
    Entered,
    Links,
    LinkSnapshot,
    Reload,
    Start,
    Wake,
    read_blocking,
)
from gatewayd.sms.service import SmsService

log = get_logger("gatewayd.sms")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_STARTUP = 4
REPORT_INTERVAL = 1.0
REPORT_PAUSE = 0.1
PR_SET_PDEATHSIG = 1
SWITCH_INTERVAL = 0.001  # see gatewayd.daemon: the mailbox's writer thread


def die_with_parent() -> None:
    """SIGKILL when the daemon dies (Linux); elsewhere the channel's end does it."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class SmsProcess:
    def __init__(
        self, settings: Settings, grace: float, channel: Channel, *, beat: float = 0.0
    ) -> None:
        self.settings = settings
        self.grace = grace
        self.beat = beat
        self.channel = channel
        self.stopping = asyncio.Event()
        self.exit_code = EXIT_OK
        self._signals = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._dispatcher: asyncio.Task[None] | None = None
        self._entered: Counter[Entered] = Counter()

    def _tally(self, item: StatusEntered) -> None:
        self._entered[item.type, item.direction, item.status, item.code, item.cancelled] += 1

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: None)  # the daemon sends Reload
        try:
            mailbox = await Mailbox.open(self.settings.mailbox)
        except (GatewayError, OSError) as exc:
            log.error("sms.process_startup_failed", error=str(exc))
            return EXIT_STARTUP
        mailbox.watch_status(self._tally)
        cluster = Cluster(mailbox, self.settings.node, version=__version__)
        cluster.heard(self.beat)  # the daemon's heartbeat when it started this process
        service = SmsService(mailbox, self.settings, cluster=cluster)
        try:
            service.start()
            dispatcher = asyncio.create_task(service.dispatcher.run(), name="sms-dispatcher")
            dispatcher.add_done_callback(self._part_done)
            self._dispatcher = dispatcher
            self._spawn(self._listen(service, cluster), "sms-channel")
            self._spawn(self._report(service), "sms-report")
            log.info("sms.process_started", pid=os.getpid(), links=len(service.links.links))
            await self.stopping.wait()
            service.dispatcher.stop()  # lease no more; what is in flight gets the grace
            done, _ = await asyncio.wait({dispatcher}, timeout=self.grace)
            if not done:
                dispatcher.cancel()
                await asyncio.wait({dispatcher})
                log.warning("sms.process_cancelled", grace=self.grace)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await service.close()
            await mailbox.close()  # the ledger's last batch committed
            self._send_links(service)  # what entered a status since the last report
            log.info("sms.process_stopped", exit_code=self.exit_code)
        return self.exit_code

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals == 1:
            log.info("sms.process_signal", signal=sig.name, action="graceful stop")
            self.stopping.set()
        elif self._dispatcher is not None:
            log.warning("sms.process_signal", signal=sig.name, action="stop now")
            self._dispatcher.cancel()

    def _spawn(self, body: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(body, name=name)
        task.add_done_callback(self._part_done)
        self._tasks.append(task)

    def _part_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.stopping.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("sms.process_failed", task=task.get_name(), error=repr(exc), exc_info=exc)
            self.exit_code = EXIT_FAILURE
            self.stopping.set()

    async def _listen(self, service: SmsService, cluster: Cluster) -> None:
        while True:
            try:
                message = await self.channel.receive()
            except ChannelClosed:
                if self.stopping.is_set():
                    # The daemon's grace ended before ours: its SIGKILL comes after
                    # ours (STOP_MARGIN); until then the stop goes on as it was.
                    return
                # The daemon is gone (PR_SET_PDEATHSIG does this where it can): stop as a
                # crash would, so that the daemon's successor starts clean.
                log.error("sms.process_orphaned", reason="the daemon's channel closed")
                os._exit(EXIT_FAILURE)
            if isinstance(message, Wake):
                service.dispatcher.wake()
            elif isinstance(message, Beat):
                cluster.heard(message.at)
            elif isinstance(message, Reload):
                self.settings = message.settings
                service.reload(message.settings)
                set_level(message.settings.log)

    async def _report(self, service: SmsService) -> None:
        """The links' state to the daemon: at most every REPORT_PAUSE when anything of
        it changed (state, counts, window) or messages entered a status, else every
        REPORT_INTERVAL."""
        last: tuple[LinkSnapshot, ...] | None = None
        next_at = 0.0
        while True:
            now = time.monotonic()
            links = _snapshots(service)
            if links != last or self._entered or now >= next_at:
                self._send_links(service, links)
                last, next_at = links, now + REPORT_INTERVAL
            await asyncio.sleep(REPORT_PAUSE)

    def _send_links(
        self, service: SmsService, links: tuple[LinkSnapshot, ...] | None = None
    ) -> None:
        entered, self._entered = self._entered, Counter()
        with contextlib.suppress(ChannelClosed, OSError):
            self.channel.send(Links(links or _snapshots(service), entered))


def _snapshots(service: SmsService) -> tuple[LinkSnapshot, ...]:
    return tuple(
        LinkSnapshot(
            link.name,
            link.state_name,
            link.bound,
            link.window_in_use,
            dict(link.counts),
            dict(link.responses),
            link.error,
            link.states,
        )
        for link in service.links.links
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m gatewayd.sms.process FD (started by gatewayd run)", file=sys.stderr)
        return 2
    die_with_parent()
    sock = socket.socket(fileno=int(args[0]))
    try:
        start = read_blocking(sock)
    except ChannelClosed as exc:
        print(f"gatewayd sms process: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    if not isinstance(start, Start):
        print("gatewayd sms process: the daemon did not start it", file=sys.stderr)
        return EXIT_STARTUP
    sys.setswitchinterval(SWITCH_INTERVAL)
    stop_logging: Callable[[], None] = configure_logging(start.settings.log, background=True)
    set_node(start.settings.node.resolved_name)
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(start, sock))
    finally:
        stop_logging()


async def _serve(start: Start, sock: socket.socket) -> int:
    channel = await Channel.open(sock)
    try:
        return await SmsProcess(start.settings, start.grace, channel, beat=start.beat).run()
    finally:
        channel.close()


if __name__ == "__main__":
    sys.exit(main())
