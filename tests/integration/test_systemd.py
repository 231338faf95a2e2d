"""``gatewayd run`` under a NOTIFY_SOCKET this test owns, as systemd would give it with
Type=notify and WatchdogSec: READY=1 once everything listens, WATCHDOG=1 from the
event loop at half the interval, STOPPING=1 when SIGTERM arrives; and the unit file
passes ``systemd-analyze verify``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.integration.test_daemon import config_for


def receive(server: socket.socket, until: str, within: float = 20) -> list[str]:
    """Datagrams up to (and with) the first that holds ``until``."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        server.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            seen.append(server.recv(4096).decode())
        except TimeoutError:
            break
        if until in seen[-1].splitlines():
            return seen
    raise AssertionError(f"no {until} within {within} s; got {seen}")


def test_ready_watchdog_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NOTIFY_SOCKET": str(path),
               "WATCHDOG_USEC": "400000"}  # fmt: skip
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gatewayd", "run", "--config", str(config_for(tmp_path))],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            first = receive(server, "READY=1")
            ready = first[-1].splitlines()
            assert f"MAINPID={daemon.pid}" in ready
            assert any(line.startswith("STATUS=gatewayd ") and "SMTP on 127.0.0.1:" in line
                       for line in ready)  # fmt: skip
            started = time.monotonic()
            pings = 0
            while time.monotonic() - started < 1.2:
                if "WATCHDOG=1" in receive(server, "WATCHDOG=1", within=1)[-1]:
                    pings += 1
            assert pings >= 4  # every 0.2 s for an interval of 0.4 s
            daemon.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in receive(server, "STOPPING=1")[-1]
        finally:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            _, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err


def test_a_watchdog_for_another_pid_is_not_ours(tmp_path: Path) -> None:
    from gatewayd.systemd import Notifier

    mine = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000",
                     "WATCHDOG_PID": str(os.getpid())})  # fmt: skip
    theirs = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert (mine.watchdog_seconds, theirs.watchdog_seconds) == (1.0, None)
    assert mine.address == "\0x"
    assert not Notifier({}).enabled


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd is not installed")
def test_the_unit_file_verifies(tmp_path: Path) -> None:
    unit = ROOT / "systemd" / "gatewayd.service"
    # verify wants the ExecStart binary to exist: point it at this checkout's venv copy
    here = str(Path(sys.executable).parent / "gatewayd")
    text = unit.read_text().replace("/opt/gatewayd/bin/gatewayd", here)
    assert here in text
    local = tmp_path / "gatewayd.service"
    local.write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                            text=True, check=False)  # fmt: skip
    problems = [line for line in result.stderr.splitlines() if "gatewayd" in line]
    assert result.returncode == 0, result.stderr
    assert problems == [], problems
