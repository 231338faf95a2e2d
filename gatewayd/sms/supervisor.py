"""The daemon's side of its SMS process (process.py): starts it, tells it what it must
know, keeps what it says of its links, starts it again when it dies, stops it.

- ``start``: a socket pair (channel.py), then ``python -m gatewayd.sms.process FD``
  with the daemon's stdout, stderr, working directory and environment (less
  NOTIFY_SOCKET and WATCHDOG_*: only the daemon speaks to systemd), and ``Start``
  (the settings, the grace period) as its first message.
- ``wake``: SMS were queued. A Wake goes WAKE_DELAY later, and at most one waits at a
  time, so a stream of new messages is a wake every few milliseconds, not one each
  (the SMS process leases at most twenty times a second while they keep coming, more
  when a lease fills up).
- ``reload``: new settings after SIGHUP (``Reload``).
- every second while it runs: ``Beat`` with the node's last heartbeat, so that the SMS
  process, like the daemon's own workers, leases nothing while the heartbeat is stale.
- ``links``: what the SMS process last said of each SMPP link (``LinkSnapshot``, for
  /metrics, ``gatewayd status``, the console and the node's heartbeat); ``closed``
  while no SMS process runs. ``on_entered`` is handed the statuses messages entered
  in the SMS process (for the metrics).
- the SMS process ending while the daemon is not stopping: ``sms.process_exited``
  (error, with its exit code or signal), and started again after RESTART_DELAY,
  doubling to RESTART_DELAY_MAX (back to the first once one ran for STABLE_AFTER).
  What it held is taken back at once by the next (its lease owner is the node's).
- ``stop``: SIGTERM (it stops leasing and gives what is in flight the grace period);
  ``wait_stopped`` waits for it, and SIGKILL after the grace and STOP_MARGIN.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping

from gatewayd.cluster import Cluster
from gatewayd.config.settings import Settings
from gatewayd.errors import StartupError
from gatewayd.logging import get_logger
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
)
from gatewayd.sms.link import STATES

log = get_logger("gatewayd.sms")

RESTART_DELAY = 1.0
RESTART_DELAY_MAX = 30.0
STABLE_AFTER = 60.0
BEAT_INTERVAL = 1.0
WAKE_DELAY = 0.005
STOP_MARGIN = 5.0
LAST_WORDS = 1.0  # after it ended: for its last report to be read
START_WAIT = 15.0  # for the SMS process's first word on its links
MAX_BACKLOG = 1 << 20  # bytes unread by the SMS process before wakes are dropped
_PRIVATE_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
OnEntered = Callable[[Mapping[Entered, int]], None]  # how many entered which status


class SmsSupervisor:
    def __init__(
        self,
        settings: Settings,
        *,
        grace: float,
        cluster: Cluster | None,
        on_entered: OnEntered | None = None,
    ) -> None:
        self.settings = settings
        self.on_entered = on_entered
        self.grace = grace
        self.cluster = cluster
        self.links: list[LinkSnapshot] = self._snapshots("closed")
        self._process: asyncio.subprocess.Process | None = None
        self._channel: Channel | None = None
        self._wake_waiting = False
        self._stopping = False
        self._stop_asked = asyncio.Event()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        """The running SMS process's (None while it is down, between restarts)."""
        process = self._process
        return process.pid if process is not None and process.returncode is None else None

    # -- the daemon's calls -------------------------------------------------------------

    async def start(self) -> None:
        """Start the SMS process and wait (at most START_WAIT) for its first word on
        its links, so that what the daemon says of them from its start (``gatewayd
        status``, READY's status line) is the SMS process's, not a guess. StartupError
        when it cannot be executed or ends before it has said anything."""
        try:
            await self._spawn()
        except (OSError, ChannelClosed) as exc:
            raise StartupError(f"the SMS process could not start: {exc}") from exc
        channel, process = self._channel, self._process
        assert channel is not None
        assert process is not None
        try:
            first = await asyncio.wait_for(channel.receive(), START_WAIT)
        except TimeoutError:
            log.warning("sms.process_slow_to_start", pid=process.pid, waited=START_WAIT)
            return
        except ChannelClosed:
            code = await process.wait()
            raise StartupError(
                f"the SMS process ended as it started ({_describe(code)}; its log says why)"
            ) from None
        if isinstance(first, Links):
            self._took(first)

    def wake(self) -> None:
        if self._wake_waiting or self._channel is None:
            return
        self._wake_waiting = True
        asyncio.get_running_loop().call_later(WAKE_DELAY, self._send_wake)

    def reload(self, settings: Settings) -> None:
        self.settings = settings
        self._send(Reload(settings))

    async def run(self) -> None:
        """Watch the SMS process; start it again when it ends unasked. Returns once it
        has ended after ``stop``."""
        loop = asyncio.get_running_loop()
        delay = RESTART_DELAY
        while True:
            process, channel = self._process, self._channel
            if process is not None and channel is not None:
                started = loop.time()
                helpers = [
                    asyncio.create_task(self._listen(channel), name="sms-process-channel"),
                    asyncio.create_task(self._beat(), name="sms-process-beat"),
                ]
                try:
                    code = await process.wait()
                    # Its last report may still be in the socket: read to the end.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(helpers[0]), LAST_WORDS)
                finally:  # also when the daemon cancels this task at the end of its grace
                    for helper in helpers:
                        helper.cancel()
                    await asyncio.gather(*helpers, return_exceptions=True)
                    channel.close()
                    self._channel = None
                    self.links[:] = self._snapshots("closed")
                if self._stopping:
                    return
                if loop.time() - started >= STABLE_AFTER:
                    delay = RESTART_DELAY
                log.error("sms.process_exited", pid=process.pid, **_how(code), restart_in=delay)
            if await self._wait_stopping(delay):
                return
            delay = min(delay * 2, RESTART_DELAY_MAX)
            try:
                await self._spawn()
            except (OSError, ChannelClosed) as exc:
                log.error("sms.process_start_failed", error=str(exc), retry_in=delay)
                self._process = self._channel = None
                continue
            self.restarts += 1

    def stop(self) -> None:
        """Ask the SMS process to stop (SIGTERM); ``run`` returns once it has."""
        self._stopping = True
        self._stop_asked.set()
        if self._process is not None and self._process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)

    async def wait_stopped(self) -> None:
        """After ``stop``: wait for the SMS process (its grace and STOP_MARGIN), then
        SIGKILL it."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await asyncio.wait_for(process.wait(), self.grace + STOP_MARGIN)
        except TimeoutError:
            log.warning("sms.process_killed", pid=process.pid, after=self.grace + STOP_MARGIN)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # -- inside -------------------------------------------------------------------------

    async def _wait_stopping(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the daemon stops meanwhile (then True)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_asked.wait(), seconds)
        return self._stopping

    async def _spawn(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gatewayd.sms.process",
                str(theirs.fileno()),
                pass_fds=(theirs.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        channel = await Channel.open(ours)
        beat = self.cluster.last_beat if self.cluster is not None else 0.0
        channel.send(Start(self.settings, self.grace, beat))
        self._process, self._channel = process, channel
        self.links[:] = self._snapshots("idle")
        log.info("sms.process_starting", pid=process.pid)
        if self._stopping:  # ``stop`` came while it was being started
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)

    def _send(self, message: Start | Wake | Reload | Beat) -> None:
        if self._channel is None:
            return
        with contextlib.suppress(ChannelClosed, OSError):
            self._channel.send(message)

    def _send_wake(self) -> None:
        self._wake_waiting = False
        if self._channel is not None and self._channel.backlog < MAX_BACKLOG:
            self._send(Wake())

    async def _listen(self, channel: Channel) -> None:
        with contextlib.suppress(ChannelClosed):
            while True:
                message = await channel.receive()
                if isinstance(message, Links):
                    self._took(message)

    def _took(self, message: Links) -> None:
        self.links[:] = message.links
        if self.on_entered is not None and message.entered:
            self.on_entered(message.entered)

    async def _beat(self) -> None:
        while True:
            if self.cluster is not None:
                self._send(Beat(self.cluster.last_beat))
            await asyncio.sleep(BEAT_INTERVAL)

    def _snapshots(self, state: str) -> list[LinkSnapshot]:
        """Each configured link, unbound, in ``state`` (before or without a report)."""
        return [
            LinkSnapshot(link.name, state, False, 0, states=STATES)
            for link in self.settings.sms.links
        ]


def _describe(code: int) -> str:
    return ", ".join(f"{key} {value}" for key, value in _how(code).items())


def _how(code: int) -> dict[str, object]:
    """An exit code as asyncio gives it (negative: the signal that ended it)."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return {"signal": signal.Signals(-code).name}
        return {"signal": -code}
    return {"exit_code": code}
