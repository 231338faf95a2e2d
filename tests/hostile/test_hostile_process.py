"""The process holding under exhaustion: descriptors running out (logged once per
interval with a count, accepting again when they come back), the descriptor limit
raised at start, the loop watchdog naming what stalled the loop, and the files the
daemon creates private whatever the umask it was started with."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gatewayd.guard.stalls import LoopWatchdog
from tests.conftest import ROOT
from tests.hostile.conftest import Daemon
from tests.smtp_client import free_port, message, send

StartDaemon = Callable[..., Daemon]

# A listener in a process with 40 descriptors: gatewayd.guard's accept loop, and one
# made by asyncio's own create_server with the daemon's accept-error filter.
EXHAUSTED = textwrap.dedent(
    """
    import asyncio, resource, sys
    from gatewayd.config.settings import LogSettings
    from gatewayd.guard.listener import Acceptor, Caps, bind
    from gatewayd.guard.tally import install_accept_error_filter
    from gatewayd.logging import configure_logging

    configure_logging(LogSettings(format="json", file=None))
    resource.setrlimit(resource.RLIMIT_NOFILE, (40, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    class Hello(asyncio.Protocol):
        def __init__(self, slot=None):
            self.slot = slot
        def connection_made(self, transport):
            transport.write(b"hello\\n")
        def connection_lost(self, exc):
            if self.slot is not None:
                self.slot.release()

    async def main():
        install_accept_error_filter(asyncio.get_running_loop(), interval=1.0)
        ours = Acceptor("test", bind("127.0.0.1", int(sys.argv[1])), Hello, Caps(10000, 10000))
        ours.accept_failed.interval = 1.0
        ours.start()
        await asyncio.get_running_loop().create_server(Hello, "127.0.0.1", int(sys.argv[2]))
        print("ready", flush=True)
        await asyncio.sleep(float(sys.argv[3]))

    asyncio.run(main())
    """
)


def _flood(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return held


def test_running_out_of_descriptors_is_logged_once_per_interval_and_recovers() -> None:
    ours, theirs = free_port(), free_port()
    script = subprocess.Popen(
        [sys.executable, "-c", EXHAUSTED, str(ours), str(theirs), "6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    assert script.stdout is not None
    assert script.stdout.readline().strip() == "ready"
    held = _flood(ours, 60) + _flood(theirs, 60)  # 120 connections, 40 descriptors
    time.sleep(2.5)
    for sock in held:
        sock.close()
    time.sleep(1.5)  # descriptors are back: our listener accepts again
    with socket.create_connection(("127.0.0.1", ours), timeout=5) as again:
        again.settimeout(5)
        assert again.recv(10) == b"hello\n"
    output, _ = script.communicate(timeout=30)
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "listener.accept_failed"]
    ours_lines = [f for f in failed if f.get("listener") == "test"]
    theirs_lines = [f for f in failed if f.get("source") == "asyncio"]
    assert ours_lines, output[-2000:]
    assert theirs_lines, output[-2000:]
    # One line at once, then at most one a second, each with its count (the report
    # had 158,919 tracebacks in 38 s).
    assert len(ours_lines) <= 6, failed
    assert len(theirs_lines) <= 6, failed
    assert all(f["by"] == {"EMFILE": f["count"]} for f in failed)
    assert "Traceback" not in output


def test_the_daemon_raises_its_descriptor_limit_and_fits_its_caps(
    start_daemon: StartDaemon,
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def like_systemd() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))

    daemon = start_daemon(preexec=like_systemd)
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    line = next(x for x in limits.splitlines() if x.startswith("Max open files"))
    soft = int(line.split()[3])
    assert soft == hard
    if hard < 4000 + 1000 + 256:
        lowered = daemon.events("daemon.connection_caps_lowered")
        assert lowered
        assert sum(lowered[0]["caps"]) <= hard - 256


async def test_the_loop_watchdog_names_what_stalled_the_loop(
    json_log: Callable[[], list[dict[str, Any]]],
) -> None:
    watchdog = LoopWatchdog(threshold=0.1)
    watchdog.start()
    try:
        await asyncio.sleep(0.1)
        _hold_the_loop(0.3)
        await asyncio.sleep(0.2)
        _hold_the_loop(0.05)  # under the threshold: not a stall
        await asyncio.sleep(0.2)
    finally:
        watchdog.stop()
    stalls = [line for line in json_log() if line["event"] == "loop.stalled"]
    assert len(stalls) == 1, stalls
    assert 0.2 < stalls[0]["seconds"] < 1.0
    assert any("_hold_the_loop" in frame for frame in stalls[0]["stack"])


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_are_private_whatever_the_umask(start_daemon: StartDaemon) -> None:
    daemon = start_daemon(preexec=lambda: os.umask(0o022))
    sms_to, fax_to = "+4915112345678@sms.example.com", "+4940123456@fax.example.com"
    reply = send(daemon.smtp_port, "alice@example.com", [sms_to], message())
    assert reply.code == 250, reply
    pdf = (ROOT / "tests" / "data" / "docs" / "one-page.pdf").read_bytes()
    fax = message(to=fax_to, attachments=[(pdf, "application/pdf", "a.pdf")])
    assert send(daemon.smtp_port, "alice@example.com", [fax_to], fax).code == 250
    outbox = daemon.work / "outbox"
    deadline = time.monotonic() + 60
    while not list(outbox.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    data = daemon.work / "data"
    assert _mode(data) == 0o700
    for name in ("mailbox.sqlite3", "mailbox.sqlite3-wal", "mailbox.sqlite3-shm"):
        assert _mode(data / name) == 0o600, name
    assert _mode(daemon.log_file) == 0o600
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs
    assert all(_mode(p) == 0o600 for p in blobs)
    assert all(_mode(p) & 0o077 == 0 for p in (data / "blobs").rglob("*") if p.is_dir())
    # The spool is shared with the fax system by group, never with others.
    jobs = list(outbox.iterdir())
    assert jobs
    assert all(_mode(p) == 0o640 for p in jobs), [(p, oct(_mode(p))) for p in jobs]
    assert _mode(outbox) == 0o2770
    assert _mode(daemon.work / "results") == 0o2770
