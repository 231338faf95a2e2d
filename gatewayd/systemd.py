"""Telling systemd how the daemon is doing (sd_notify(3)), without libsystemd.

With ``Type=notify`` systemd sets ``NOTIFY_SOCKET`` (a path, or ``@name`` for an
abstract socket); the daemon sends ``READY=1`` once everything listens, ``STOPPING=1``
when a stop begins, ``STATUS=...`` lines for ``systemctl status``, and, when
``WatchdogSec`` is set (``WATCHDOG_USEC``, for ``WATCHDOG_PID`` or any pid),
``WATCHDOG=1`` from the event loop at half the interval: a loop that is stuck stops
the pings and systemd restarts the service. Outside systemd every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from gatewayd.logging import get_logger

log = get_logger("gatewayd.daemon")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + path[1:] if path.startswith("@") else path
        self.watchdog_seconds: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_seconds = int(usec) / 1_000_000
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> None:
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:  # systemd went away: nothing to tell
            log.warning("daemon.notify_failed", error=str(exc))

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> None:
        self.send("STOPPING=1", "STATUS=stopping")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
